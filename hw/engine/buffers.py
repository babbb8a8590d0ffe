"""The engine's on-chip buffers: byte-addressed memories with several n-byte ports.

Every block of the engine reads and writes ACT, WGT, PARAM and OUT at byte addresses, a vector of
bytes at a time, at any alignment (a convolution's kernel row starts wherever its pixel does). A
:class:`ByteBuffer` spreads its bytes over ``banks`` byte-wide block RAMs (byte ``a`` in bank
``a % banks``, row ``a // banks``): an n-byte access at ``a`` touches every bank at most once,
each at its own row (``a // banks``, or the next row for the banks before ``a % banks``), and a
rotation by ``a % banks`` puts the bytes in order. Reads are synchronous (latency 1, the block
RAM's own register), writes are masked per byte.

The engine's four buffers, with the ports ``engine_contract.md`` gives them, come from
:func:`act_buffer`, :func:`wgt_buffer`, :func:`param_buffer` and :func:`out_buffer`.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ByteBuffer", "ByteReadSignature", "ByteWriteSignature", "act_banks", "act_buffer", "addr_bits",
           "out_banks", "out_buffer", "param_buffer", "wgt_buffer"]


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def addr_bits(size: int) -> int:
    """Width of a port address of a ``size``-byte buffer: one bit more than ``size - 1`` needs,
    so an address at or just past the end is representable (those bytes read as 0)."""
    return max(1, size.bit_length())


class ByteReadSignature(wiring.Signature):
    """An n-byte synchronous read port, seen from its user.

    Members
    -------
    addr : Out(unsigned(addr_width))
        Byte address of the first byte (a multiple of the buffer's ``align``).
    en : Out(1)
        Read this cycle; ``data`` shows the bytes the next cycle.
    data : In(ArrayLayout(unsigned(8), n))
        Bytes ``addr .. addr + n - 1`` as of the cycle ``en`` was high; held while ``en`` is low.
    """

    def __init__(self, n: int, addr_width: int):
        self.n, self.addr_width = n, addr_width
        super().__init__({
            "addr": Out(unsigned(addr_width)),
            "en": Out(1),
            "data": In(data.ArrayLayout(unsigned(8), n)),
        })

    def __eq__(self, other):
        return type(other) is ByteReadSignature and (other.n, other.addr_width) == (self.n, self.addr_width)

    def __hash__(self):
        return hash((ByteReadSignature, self.n, self.addr_width))

    def __repr__(self):
        return f"ByteReadSignature({self.n}, {self.addr_width})"


class ByteWriteSignature(wiring.Signature):
    """An n-byte masked write port, seen from its user.

    Members
    -------
    addr : Out(unsigned(addr_width))
        Byte address of byte 0.
    data : Out(ArrayLayout(unsigned(8), n))
    mask : Out(n)
        Byte ``i`` is written to ``addr + i`` iff ``mask[i]`` (and ``en``); bytes past the end of
        the buffer are dropped.
    en : Out(1)
    """

    def __init__(self, n: int, addr_width: int):
        self.n, self.addr_width = n, addr_width
        super().__init__({
            "addr": Out(unsigned(addr_width)),
            "data": Out(data.ArrayLayout(unsigned(8), n)),
            "mask": Out(n),
            "en": Out(1),
        })

    def __eq__(self, other):
        return type(other) is ByteWriteSignature and (other.n, other.addr_width) == (self.n, self.addr_width)

    def __hash__(self):
        return hash((ByteWriteSignature, self.n, self.addr_width))

    def __repr__(self):
        return f"ByteWriteSignature({self.n}, {self.addr_width})"


class ByteBuffer(wiring.Component):
    """A byte-addressed memory of ``size`` bytes with named n-byte read and write ports.

    Byte ``a`` lives in bank ``a % banks`` at row ``a // banks``. The ``align`` banks a read
    takes together (or ``word`` of them) are the byte lanes of one ``lib.memory.Memory`` word
    with byte-enabled writes (``word_bytes``; fewer, wider RAMs, and a row computed once per
    word), unless a write port is so wide that it could wrap around into the word it starts in
    (then each bank is its own RAM of bytes). An n-byte access at ``a`` (``n <= banks``) gives bank ``b``
    the row ``a // banks + (b < a % banks)``; the bytes are rotated by ``a % banks`` (in steps of
    ``align`` bytes on reads). One cycle can serve every port at once.

    Read port ``r_<name>`` (n bytes): ``data`` holds bytes ``addr .. addr + n - 1`` the cycle
    after ``en`` (latency 1) and keeps them while ``en`` is low; bytes at or past ``size`` read
    as 0. The low ``log2(align)`` bits of a read address are taken as zero (callers pass
    multiples of ``align``; the rotation then needs only ``banks / align`` positions).

    Write port ``w_<name>`` (n bytes): when ``en``, byte ``i`` of ``data`` goes to ``addr + i``
    iff ``mask[i]``; bytes at or past ``size`` are dropped. Two write ports writing one byte in
    the same cycle is the caller's error (the result is unspecified).

    A read and a write of the same byte in the same cycle: the read returns the old value.

    Every port has its own path to the banks unless grouped: ports in one ``shared_reads``
    (``shared_writes``) group share one physical read (write) port per bank, which is what a
    block RAM has (a RAM with k read ports is k copies of it). The caller then enables at most
    one port of a group per cycle (if several are, the first listed wins and the others read
    nothing / write nothing); each shared read port still shows its own bytes the cycle after its
    ``en`` and holds them until its next read (a register per port).

    Parameters
    ----------
    size : int
        Bytes (>= 1).
    banks : int
        Byte-wide banks, a power of two >= every port's byte count.
    read_ports, write_ports : dict[str, int]
        Port name -> bytes per access (>= 1); the members are ``r_<name>`` and ``w_<name>``.
    align : int
        Power of two <= ``banks``: every read address is a multiple of it.
    shared_reads, shared_writes : iterable of iterables of port names
        Groups of ports never enabled in the same cycle, each sharing one physical port.
    word : int, optional
        Banks per RAM word, a power of two dividing ``align`` that no write wraps into; a
        narrower word than ``align`` keeps a narrow write's lane choice small.

    Members
    -------
    r_<name> : In(ByteReadSignature(n, addr_bits(size)))
    w_<name> : In(ByteWriteSignature(n, addr_bits(size)))
    """

    def __init__(self, size: int, banks: int, read_ports: dict[str, int], write_ports: dict[str, int],
                 align: int = 1, shared_reads=(), shared_writes=(), word: int | None = None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"ByteBuffer: size must be a positive number of bytes, got {size!r}")
        if not isinstance(banks, int) or banks < 1 or banks & (banks - 1):
            raise ValueError(f"ByteBuffer: banks must be a power of two >= 1, got {banks!r}")
        if not isinstance(align, int) or align < 1 or align & (align - 1) or align > banks:
            raise ValueError(f"ByteBuffer: align must be a power of two <= banks ({banks}), got {align!r}")
        members = {}
        for kind, ports in (("r", read_ports), ("w", write_ports)):
            for name, n in ports.items():
                if not isinstance(name, str) or not name.isidentifier():
                    raise ValueError(f"ByteBuffer: port name must be an identifier, got {name!r}")
                if not isinstance(n, int) or not 1 <= n <= banks:
                    raise ValueError(f"ByteBuffer: port {kind}_{name} is {n!r} bytes wide; ports must be "
                                     f"1..banks ({banks}) bytes")
                sig = (ByteReadSignature if kind == "r" else ByteWriteSignature)(n, addr_bits(size))
                members[f"{kind}_{name}"] = In(sig)
        if not members:
            raise ValueError("ByteBuffer: needs at least one port")
        self.size, self.banks, self.align = size, banks, align
        self.read_groups = self._groups("read", read_ports, shared_reads)
        self.write_groups = self._groups("write", write_ports, shared_writes)
        self.rows = -(-size // banks)
        self.read_ports, self.write_ports = dict(read_ports), dict(write_ports)
        # Banks side by side in one RAM word: the ``align`` banks a read takes together (or the
        # caller's ``word``), unless a write could touch one word at two rows (wrap around into
        # the word it starts in).
        def wrap_free(w):
            return all(n <= banks - w + 1 for n in write_ports.values())
        if word is None:
            word = align if wrap_free(align) else 1
        elif not isinstance(word, int) or word < 1 or word & (word - 1) or align % word or not wrap_free(word):
            raise ValueError(f"ByteBuffer: word must be a power of two dividing align ({align}) that no write "
                             f"wraps into (writes <= banks - word + 1 bytes), got {word!r}")
        self.word_bytes = word
        # RAM w holds banks w * word .. w * word + word - 1 (byte lane k is bank w * word + k);
        # bank b holds the bytes b, b + banks, ...: only the rows with bytes < size.
        self.word_data = [memory.MemoryData(shape=unsigned(8 * word), depth=max(1, self._depth(w * word)), init=[])
                          for w in range(banks // word)]
        super().__init__(members)

    def _depth(self, b: int) -> int:
        """Rows of bank ``b``: those holding bytes < size (0 when the buffer has fewer bytes than banks)."""
        return (self.size - b + self.banks - 1) // self.banks

    @staticmethod
    def _groups(kind, ports, shared):
        groups, seen = [], set()
        for group in shared:
            group = list(group)
            for name in group:
                if name not in ports:
                    raise ValueError(f"ByteBuffer: shared {kind} group {group} names no {kind} port {name!r}")
                if name in seen:
                    raise ValueError(f"ByteBuffer: {kind} port {name!r} is in two shared groups")
                seen.add(name)
            if len(group) < 2:
                raise ValueError(f"ByteBuffer: a shared {kind} group needs two ports or more, got {group}")
            groups.append(group)
        return groups + [[name] for name in ports if name not in seen]

    def sim_peek(self, ctx, addr: int, n: int) -> bytes:
        """Bytes ``addr .. addr + n - 1`` as a simulation testbench sees them now (``ctx`` of an
        Amaranth-sim testbench); for checking a whole buffer without a port."""
        if addr < 0 or addr + n > self.size:
            raise IndexError(f"ByteBuffer.sim_peek: [{addr}, {addr + n}) outside [0, {self.size})")
        B, word = self.banks, self.word_bytes
        return bytes(ctx.get(self.word_data[a % B // word][a // B]) >> (8 * (a % word)) & 0xFF
                     for a in range(addr, addr + n))

    def sim_poke(self, ctx, addr: int, values) -> None:
        """Set bytes from ``addr`` in simulation (a testbench preloading a buffer)."""
        values = bytes(values)
        if addr < 0 or addr + len(values) > self.size:
            raise IndexError(f"ByteBuffer.sim_poke: [{addr}, {addr + len(values)}) outside [0, {self.size})")
        B, word = self.banks, self.word_bytes
        for i, v in enumerate(values):
            a = addr + i
            cell = self.word_data[a % B // word][a // B]
            lane = 8 * (a % word)
            ctx.set(cell, ctx.get(cell) & ~(0xFF << lane) | v << lane)

    def elaborate(self, platform):
        m = Module()
        B, word = self.banks, self.word_bytes
        lb = (B - 1).bit_length()  # log2(banks)
        mems = []
        for w, wd in enumerate(self.word_data):
            mem = memory.Memory(data=wd)
            m.submodules[f"bank{w}" if word == 1 else f"word{w}"] = mem
            mems.append(mem)

        la = (self.align - 1).bit_length()
        for group in self.read_groups:
            ports = [(name, self.read_ports[name], getattr(self, f"r_{name}")) for name in group]
            tag = "_".join(group)
            width = max(n for _, n, _ in ports)
            # One physical read per bank for the group: the first enabled port's address.
            en, addr = Signal(name=f"r_{tag}_en"), Signal(len(ports[0][2].addr), name=f"r_{tag}_a")
            for _, _, port in reversed(ports):
                with m.If(port.en):
                    m.d.comb += addr.eq(port.addr & ~Const((1 << la) - 1, len(port.addr)))
            m.d.comb += en.eq(Cat(*(port.en for _, _, port in ports)).any())
            row, s = addr[lb:], addr[:lb]
            s_q = Signal(max(1, lb), name=f"r_{tag}_rot")  # rotation, as of the read
            with m.If(en):
                m.d.sync += s_q.eq(s if lb else 0)
            bank_data = []
            for w, mem in enumerate(mems):
                # s is a multiple of align (= word, or word is 1): the word's banks share a row.
                rp = mem.read_port(domain="sync")
                r = Signal(len(row) + 1, name=f"r_{tag}_row{w}")
                m.d.comb += [r.eq(row + (w * word < s) if lb else row), rp.addr.eq(r), rp.en.eq(en)]
                oks = {}  # a word's banks have at most two depths
                for k in range(word):
                    b = w * word + k
                    depth = self._depth(b)
                    if depth not in oks:
                        oks[depth] = Signal(name=f"r_{tag}_ok{b}")
                        with m.If(en):
                            m.d.sync += oks[depth].eq(r < depth)
                    byte = Signal(8, name=f"r_{tag}_b{b}")
                    m.d.comb += byte.eq(rp.data[8 * k:8 * k + 8] & oks[depth].replicate(8))
                    bank_data.append(byte)
            # Byte i of the access is bank (i + s) % B: a byte-wide select per output byte among
            # the B / align rotations (narrow muxes, not a shift of all the banks' bits).
            rot = Signal(8 * width, name=f"r_{tag}_data")
            if lb and la < lb:
                pos = s_q >> la
                steps = B >> la
                m.d.comb += rot.eq(Cat(*(Array(bank_data[(i + k * self.align) % B] for k in range(steps))[pos]
                                         for i in range(width))))
            else:
                m.d.comb += rot.eq(Cat(*bank_data)[:8 * width])
            if len(ports) == 1:
                m.d.comb += ports[0][2].data.eq(rot[:8 * ports[0][1]])
                continue
            # Shared: each port shows the RAM's output the cycle after its own read, else holds it.
            earlier = Const(0)
            for name, n, port in ports:
                mine, hold = Signal(name=f"r_{name}_mine"), Signal(8 * n, name=f"r_{name}_hold")
                m.d.sync += mine.eq(port.en & ~earlier)
                earlier = earlier | port.en
                out = Signal(8 * n, name=f"r_{name}_out")
                m.d.comb += [out.eq(Mux(mine, rot[:8 * n], hold)), port.data.eq(out)]
                m.d.sync += hold.eq(out)

        for group in self.write_groups:
            ports = [(name, self.write_ports[name], getattr(self, f"w_{name}")) for name in group]
            tag = "_".join(group)
            # One physical write per bank for the group: the first enabled port.
            en, addr = Signal(name=f"w_{tag}_en"), Signal(len(ports[0][2].addr), name=f"w_{tag}_a")
            width = max(n for _, n, _ in ports)
            dpad = Signal(data.ArrayLayout(unsigned(8), width), name=f"w_{tag}_d")
            mpad = Signal(width, name=f"w_{tag}_m")
            for _, n, port in reversed(ports):
                with m.If(port.en):
                    m.d.comb += [addr.eq(port.addr), dpad.as_value().eq(port.data.as_value()), mpad.eq(port.mask)]
            m.d.comb += en.eq(Cat(*(port.en for _, _, port in ports)).any())
            row, s = addr[lb:], addr[:lb]
            if 1 < word and width <= word:
                self._narrow_writes(m, mems, tag, en, row, s, dpad, mpad, width)
                continue
            for w, mem in enumerate(mems):
                wp = mem.write_port(domain="sync", granularity=8 if word > 1 else None)
                # The word's touched banks share a row (no write wraps into its own word): the
                # next one for the words wholly below s (reached by wrapping around), else row.
                r = Signal(len(row) + 1, name=f"w_{tag}_row{w}")
                m.d.comb += [r.eq(row + ((w + 1) * word - 1 < s) if lb else row), wp.addr.eq(r)]
                lanes, takes = [], []
                for k in range(word):
                    b = w * word + k
                    if lb:
                        # Bank b takes byte (b - s) % B of the access (rotated left by s), if it has it.
                        j = Signal(lb, name=f"w_{tag}_j{b}")
                        m.d.comb += j.eq(b - s)
                        byte = Array(dpad[i] for i in range(width))[j] if width > 1 else dpad[0]
                        take = (j < width) & mpad.bit_select(j, 1) if width > 1 else (j == 0) & mpad[0]
                    else:
                        byte, take = dpad[0], mpad[0]
                    lanes.append(byte)
                    takes.append(en & take & (r < self._depth(b)))
                m.d.comb += [wp.data.eq(Cat(*lanes)), wp.en.eq(Cat(*takes))]
        return m

    def _narrow_writes(self, m, mems, tag, en, row, s, dpad, mpad, width):
        """A write group no wider than a RAM word (the WGT load's P bytes into 16-byte words): it
        touches at most two words, the one holding bank ``s`` from lane ``s % word`` up and the
        next from lane 0 below it, and lane ``k`` of either takes byte ``(k - s) % word``. So one
        word's worth of lane data and lane mask serves every word, and each word only asks
        whether it is one of the two: a ``word``-lane rotation in place of a select per bank."""
        B, word = self.banks, self.word_bytes
        lw = (word - 1).bit_length()
        nwords = B // word
        so, ws = s[:lw], s[lw:]
        data_lanes, lane_mask, upper = [], [], []
        for k in range(word):
            j = Signal(lw, name=f"w_{tag}_j{k}")  # the access's byte for lane k
            m.d.comb += j.eq(k - so)
            data_lanes.append(Array(dpad[i] for i in range(width))[j] if width > 1 else dpad[0])
            lane_mask.append((j < width) & mpad.bit_select(j, 1) if width > 1 else (j == 0) & mpad[0])
            upper.append(so <= k)
        lanes = Signal(8 * word, name=f"w_{tag}_lanes")
        taken = Signal(word, name=f"w_{tag}_taken")  # lanes of the word at s (the rest go to the next)
        mask = Signal(word, name=f"w_{tag}_lane_mask")
        m.d.comb += [lanes.eq(Cat(*data_lanes)), taken.eq(Cat(*upper)), mask.eq(Cat(*lane_mask) & en.replicate(word))]
        for w, mem in enumerate(mems):
            wp = mem.write_port(domain="sync", granularity=8)
            r = Signal(len(row) + 1, name=f"w_{tag}_row{w}")
            here = ws == w if nwords > 1 else Const(1)
            after = ws == (w - 1) % nwords if nwords > 1 else Const(1)
            sel = Mux(here, taken, 0) | Mux(after, ~taken, 0)
            # Rows: a word wholly below s is reached by wrapping around (the next row).
            m.d.comb += [r.eq(row + ((w + 1) * word - 1 < s) if nwords > 1 else row), wp.addr.eq(r), wp.data.eq(lanes)]
            oks = {}  # a word's banks have at most two depths
            for k in range(word):
                d = self._depth(w * word + k)
                if d not in oks:
                    oks[d] = Signal(name=f"w_{tag}_ok{w * word + k}")
                    m.d.comb += oks[d].eq(r < d)
            ok = Cat(*(oks[self._depth(w * word + k)] for k in range(word)))
            m.d.comb += wp.en.eq(mask & sel & ok)


def act_banks(cfg) -> int:
    """ACT's banks: ``max(width, vector_lanes, P)`` rounded up to a power of two."""
    return _pow2_at_least(max(cfg.width, cfg.vector_lanes, cfg.mem_port_bits // 8))


def out_banks(cfg) -> int:
    """OUT's banks: ``max(vector_lanes, P)`` rounded up to a power of two."""
    return _pow2_at_least(max(cfg.vector_lanes, cfg.mem_port_bits // 8))


def act_buffer(cfg) -> ByteBuffer:
    """ACT as the engine instantiates it: write ``load`` (a whole bank row), reads ``gemm``
    (width), ``vec_a``, ``vec_b`` (vector_lanes), ``store`` (P).

    ``gemm`` and ``vec_a`` share one physical read port (``shared_reads``): the compute module
    runs one instruction at a time, GEMM or VEC, so three copies of the RAM serve the four reads."""
    banks = act_banks(cfg)
    return ByteBuffer(cfg.act_bytes, banks,
                      read_ports={"gemm": cfg.width, "vec_a": cfg.vector_lanes, "vec_b": cfg.vector_lanes,
                                  "store": cfg.mem_port_bits // 8},
                      write_ports={"load": banks}, shared_reads=[["gemm", "vec_a"]])


def wgt_buffer(cfg) -> ByteBuffer:
    """WGT: write ``load`` (P), read ``gemm`` (lanes * width at multiples of lanes * width: WGT's
    layout pads every segment of a dot product to whole beats, so a read needs no rotation)."""
    banks = _pow2_at_least(cfg.lanes * cfg.width)
    aligned = banks == cfg.lanes * cfg.width  # lanes and width powers of two
    P = cfg.mem_port_bits // 8
    word = cfg.lanes if aligned else None  # lanes-wide RAMs, as many as width (narrow load lanes)
    while word and word > 1 and P > banks - word + 1:
        word //= 2
    return ByteBuffer(cfg.wgt_bytes, banks, read_ports={"gemm": cfg.lanes * cfg.width},
                      write_ports={"load": P}, align=banks if aligned else 1, word=word)


def param_buffer(cfg) -> ByteBuffer:
    """PARAM: write ``load`` (P), reads ``gemm`` (12 bytes: one channel's record), ``vec`` (4).

    The two reads share one physical read port (``shared_reads``; ``gemm`` first): only the
    compute module reads PARAM, one instruction at a time, so a sequencer keeps its ``en`` low
    while it is not reading. Two read ports would be two copies of the RAM, which neither board
    has room for."""
    return ByteBuffer(cfg.param_bytes, 16, read_ports={"gemm": 12, "vec": 4},
                      write_ports={"load": cfg.mem_port_bits // 8}, shared_reads=[["gemm", "vec"]])


def out_buffer(cfg) -> ByteBuffer:
    """OUT: writes ``gemm`` (1) and ``vec`` (vector_lanes), read ``store`` (P).

    The two writes share one physical write port (``shared_writes``; ``gemm`` first): only the
    compute module writes OUT, one instruction at a time, and a block RAM has one write port
    (two would make the buffer flip-flops)."""
    return ByteBuffer(cfg.out_bytes, out_banks(cfg), read_ports={"store": cfg.mem_port_bits // 8},
                      write_ports={"gemm": 1, "vec": cfg.vector_lanes}, shared_writes=[["gemm", "vec"]])
