"""The ULX3S SDR SDRAM controller: the engine's 16-bit memory port (``hw/ISA.md``, "Memory port")
served from one x16 SDR SDRAM chip (``sdram_chips``).

What it does, and why:

* **Address map** row | bank | column (word address = byte address / 2). A sequential stream
  leaves a row (512 or 1024 words) into the *next bank*, whose row may already be open or opens
  without closing the one just left; strided DMA rows land in different banks, each keeping its
  own row open.
* **Burst length 1, one READ or WRITE a cycle.** Every beat of a command is its own column
  command, so a burst of any length 1..64 at any 2-byte address streams one word a clock and
  crosses row and bank boundaries by itself: the beat whose row is not open waits for
  PRECHARGE + ACTIVATE of its bank, the others do not notice.
* **Open-page policy per bank**: a row stays open until another row of its bank is wanted or a
  refresh closes everything. PRECHARGE, ACTIVATE, READ, WRITE are issued as soon as every timing
  (``tRP, tRCD, tRAS, tRC, tRRD, tWR``, read-to-write bus turnaround) allows, by per-bank and
  global down-counters.
* **Refresh has priority**: every ``tREFI`` cycles a refresh becomes due; no new READ/WRITE is
  issued until the banks are closed (PRECHARGE ALL once ``tRAS``/``tWR`` allow), AUTO REFRESH
  has been issued and ``tRFC`` has passed. The due time counts from the previous due time, so
  refreshes average exactly ``tREFI`` apart and at most one is ever late.
* **Power-up**: ``power_up`` cycles of COMMAND INHIBIT, PRECHARGE ALL, ``init_refreshes`` AUTO
  REFRESH, LOAD MODE REGISTER (burst length 1, sequential, the smallest CAS latency the clock
  allows, programmed write bursts), ``tMRD``; then ``ready`` rises and commands are taken.
* **Read path**: the pins are registered; read data comes back ``CL`` cycles after the READ at
  the pins plus ``read_delay`` register stages on ``dq_i`` (the IO register, as LiteDRAM's
  generic SDR PHY, whose read latency is CL + 1), into a FIFO of ``read_queue`` beats. A READ is
  issued only while the FIFO is sure to have room for it, so ``rdata.ready`` low never loses data.

Every pin is driven from a register, so the board top only adds the tristate buffer on ``dq``
(``dq_o``/``dq_oe``/``dq_i``) and the SDRAM clock.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from onda.hw.boards.sdram_chips import SdramChip, sdram_cycles
from onda.hw.engine.memory_port import MAX_BURST, MemoryPortSignature

__all__ = ["SdramController", "SdramPinsSignature", "sdram_location"]


class SdramPinsSignature(wiring.Signature):
    """An x16 SDR SDRAM's pins, seen from the controller (which drives every ``Out``).

    Members
    -------
    cke, cs_n, ras_n, cas_n, we_n : Out(1)
        Clock enable and the command (active-low chip select, RAS, CAS, WE).
    ba : Out(2)
        Bank address.
    a : Out(13)
        Row address (ACTIVATE), column (READ/WRITE, ``a[10]`` = auto precharge, always 0),
        ``a[10]`` = all banks (PRECHARGE), mode (LOAD MODE REGISTER).
    dqm : Out(2)
        Byte masks: ``dqm[0]`` for ``dq[0:8]``, ``dqm[1]`` for ``dq[8:16]``.
    dq_o : Out(16), dq_oe : Out(1), dq_i : In(16)
        The data bus split for the board's tristate buffer.
    """

    def __init__(self):
        super().__init__({
            "cke": Out(1), "cs_n": Out(1), "ras_n": Out(1), "cas_n": Out(1), "we_n": Out(1),
            "ba": Out(2), "a": Out(13), "dqm": Out(2),
            "dq_o": Out(16), "dq_oe": Out(1), "dq_i": In(16),
        })


def sdram_location(chip: SdramChip, addr: int) -> tuple[int, int, int]:
    """``(bank, row, column)`` of the 16-bit word holding byte ``addr`` in the controller's map
    (row | bank | column); the byte at the even address is ``dq[0:8]``."""
    word = addr >> 1
    col = word & (chip.columns - 1)
    bank = (word >> chip.column_bits) & (chip.banks - 1)
    row = (word >> (chip.column_bits + chip.bank_bits)) & (chip.rows - 1)
    return bank, row, col


# (ras_n, cas_n, we_n) of each command, chip select low.
_NOP, _ACT, _READ, _WRITE, _PRE, _REF, _LMR = 0b111, 0b011, 0b101, 0b100, 0b010, 0b001, 0b000


class _Timer:
    """A down-counter: 0 when the commands it guards may issue. ``load(cond, n)``: the guarded
    command may issue ``n`` cycles after this one, at the earliest (loads take the maximum)."""

    def __init__(self, name: str, limit: int):
        self.value = Signal(range(max(2, limit + 1)), name=name)
        self.loads = []

    @property
    def ready(self):
        return self.value == 0

    def load(self, cond, cycles: int):
        if cycles > 1:
            self.loads.append((cond, cycles - 1))

    def elaborate(self, m: Module):
        nxt = Mux(self.value == 0, 0, self.value - 1)
        for cond, v in self.loads:
            nxt = Mux(cond & (nxt < v), v, nxt)
        m.d.sync += self.value.eq(nxt)


class SdramController(wiring.Component):
    """The memory side of the engine's 16-bit memory port on one x16 SDR SDRAM chip.

    Parameters
    ----------
    chip : SdramChip
        The part (``sdram_chips``): geometry and timings.
    clock_mhz : float
        The controller's (and the SDRAM's) clock.
    read_delay : int
        Register stages on ``dq_i`` before the data is used (>= 0; 1, the IO register, by default).
    read_queue : int
        Read beats buffered when the engine stalls ``rdata`` (> ``CL + read_delay + 1`` so reads
        stream without gaps).

    Members
    -------
    port : In(MemoryPortSignature(2))
        The engine's memory port (cmd, wdata, rdata; in-order; a command is taken as the previous
        one's last beat is issued).
    pins : Out(SdramPinsSignature())
        To the chip, every output registered.
    ready : Out(1)
        Initialisation is complete (no command is taken before).
    """

    port: In(MemoryPortSignature(2))
    pins: Out(SdramPinsSignature())
    ready: Out(1)

    def __init__(self, chip: SdramChip, clock_mhz: float, *, read_delay: int = 1, read_queue: int = 16):
        if chip.width != 16:
            raise ValueError(f"SdramController: the memory port is 16 bits, {chip.name} is x{chip.width}")
        if chip.banks != 4 or chip.row_bits > 13 or chip.column_bits > 10:
            raise ValueError(f"SdramController: {chip.name}'s geometry does not fit the pins (4 banks, A0-A12)")
        if not isinstance(read_delay, int) or read_delay < 0:
            raise ValueError(f"SdramController: read_delay must be an integer >= 0, got {read_delay!r}")
        self.chip, self.clock_mhz, self.read_delay = chip, clock_mhz, read_delay
        self.cycles = cy = sdram_cycles(chip, clock_mhz)
        if not isinstance(read_queue, int) or read_queue < 1:
            raise ValueError(f"SdramController: read_queue must be an integer >= 1, got {read_queue!r}")
        self.read_queue = read_queue
        self.read_latency = cy.cl + read_delay + 1
        """Cycles from a READ decided to its data in the read FIFO's input register."""
        super().__init__()

    @property
    def mode_register(self) -> int:
        """The LOAD MODE REGISTER value: burst length 1 (A2..A0 = 0), sequential (A3 = 0), CAS
        latency ``cl`` (A6..A4), standard operation (A8..A7 = 0), programmed write burst (A9 = 0)."""
        return self.cycles.cl << 4

    def elaborate(self, platform):
        m = Module()
        chip, cy = self.chip, self.cycles
        pins, port = self.pins, self.port
        C, B, R = chip.column_bits, chip.bank_bits, chip.row_bits
        nbanks = chip.banks

        # -- registered pins, a NOP unless a command below says otherwise -----------------------
        cmd_bits = Cat(pins.we_n, pins.cas_n, pins.ras_n)
        m.d.sync += [pins.cke.eq(1), pins.cs_n.eq(0), cmd_bits.eq(_NOP),
                     pins.dq_oe.eq(0), pins.dqm.eq(0)]

        def issue(command, ba=None, a=None):
            m.d.sync += cmd_bits.eq(command)  # the constants read (ras_n, cas_n, we_n), MSB first
            if ba is not None:
                m.d.sync += pins.ba.eq(ba)
            if a is not None:
                m.d.sync += pins.a.eq(a)

        # -- initialisation -------------------------------------------------------------------
        init_wait = Signal(range(max(cy.power_up, cy.tRP, cy.tRFC, cy.tMRD) + 2), init=cy.power_up)
        init_refs = Signal(range(cy.init_refreshes + 1))
        with m.FSM(name="init"):
            with m.State("POWER_UP"):
                with m.If(init_wait == 0):
                    issue(_PRE, a=1 << 10)
                    m.d.sync += init_wait.eq(cy.tRP - 1)
                    m.next = "REFRESH"
                with m.Else():
                    # COMMAND INHIBIT while power and clock settle
                    m.d.sync += [init_wait.eq(init_wait - 1), pins.cs_n.eq(1)]
            with m.State("REFRESH"):
                with m.If(init_wait != 0):
                    m.d.sync += init_wait.eq(init_wait - 1)
                with m.Elif(init_refs != cy.init_refreshes):
                    issue(_REF)
                    m.d.sync += [init_wait.eq(cy.tRFC - 1), init_refs.eq(init_refs + 1)]
                with m.Else():
                    issue(_LMR, ba=0, a=self.mode_register)
                    m.d.sync += init_wait.eq(cy.tMRD - 1)
                    m.next = "MODE"
            with m.State("MODE"):
                with m.If(init_wait != 0):
                    m.d.sync += init_wait.eq(init_wait - 1)
                with m.Else():
                    m.d.sync += self.ready.eq(1)
                    m.next = "READY"
            with m.State("READY"):
                pass

        # -- timers ---------------------------------------------------------------------------
        longest = max(cy.tRP, cy.tRCD, cy.tRAS, cy.tRC, cy.tRRD, cy.tRFC, cy.tWR, cy.cl + 2)
        t_act = [_Timer(f"t_act{b}", longest) for b in range(nbanks)]  # tRP, tRC, tRFC
        t_pre = [_Timer(f"t_pre{b}", longest) for b in range(nbanks)]  # tRAS, tWR
        t_rw = [_Timer(f"t_rw{b}", longest) for b in range(nbanks)]    # tRCD
        t_rrd = _Timer("t_rrd", longest)
        t_wr_turn = _Timer("t_wr_turn", longest)  # READ data off the bus before a WRITE drives it
        is_open = [Signal(name=f"open{b}") for b in range(nbanks)]
        open_row = [Signal(R, name=f"row{b}") for b in range(nbanks)]

        # -- refresh timer --------------------------------------------------------------------
        ref_count = Signal(range(cy.tREFI + 1), init=cy.tREFI - 1)
        ref_due = Signal()
        do_ref, do_pre_all = Signal(), Signal()
        with m.If(self.ready):
            with m.If(ref_count == 0):
                m.d.sync += [ref_count.eq(cy.tREFI - 1), ref_due.eq(1)]
            with m.Else():
                m.d.sync += ref_count.eq(ref_count - 1)
        any_open = Cat(*is_open).any()
        all_pre_ok = Cat(*(~is_open[b] | t_pre[b].ready for b in range(nbanks))).all()
        all_act_ok = Cat(*(t.ready for t in t_act)).all()
        with m.If(self.ready & ref_due):
            with m.If(any_open):
                with m.If(all_pre_ok):
                    m.d.comb += do_pre_all.eq(1)
            with m.Elif(all_act_ok):
                m.d.comb += do_ref.eq(1)
        with m.If(do_pre_all):
            issue(_PRE, a=1 << 10)
            m.d.sync += [o.eq(0) for o in is_open]
        with m.If(do_ref):
            issue(_REF)
            m.d.sync += ref_due.eq(0)
        for b in range(nbanks):
            t_act[b].load(do_pre_all, cy.tRP)
            t_act[b].load(do_ref, cy.tRFC)

        # -- the command being served ---------------------------------------------------------
        cur_valid = Signal()
        cur_write = Signal()
        ptr = Signal(C + B + R)  # word address of the next beat
        remaining = Signal(range(MAX_BURST + 1))
        col, bank, row = ptr[:C], ptr[C:C + B], ptr[C + B:]
        advance = Signal()  # this cycle issues the current beat's READ or WRITE
        last = remaining == 1
        m.d.comb += port.cmd.ready.eq(self.ready & (~cur_valid | (advance & last)))
        with m.If(advance):
            m.d.sync += [ptr.eq(ptr + 1), remaining.eq(remaining - 1)]
            with m.If(last):
                m.d.sync += cur_valid.eq(0)
        with m.If(port.cmd.valid & port.cmd.ready):
            m.d.sync += [cur_valid.eq(1), cur_write.eq(port.cmd.payload.write),
                         ptr.eq(port.cmd.payload.addr[1:]), remaining.eq(port.cmd.payload.beats)]

        # -- read return: CL at the pins + read_delay stages, into a FIFO ---------------------
        m.submodules.rfifo = rfifo = fifo.SyncFIFO(width=16, depth=self.read_queue)
        inflight = Signal(range(self.read_queue + 1))  # READs issued whose beat is not yet taken
        do_read, do_write = Signal(), Signal()
        rtaken = port.rdata.valid & port.rdata.ready
        m.d.sync += inflight.eq(inflight + do_read - rtaken)
        pipe = Signal(self.read_latency)
        m.d.sync += pipe.eq(Cat(do_read, pipe[:-1]))
        dq = pins.dq_i
        for k in range(self.read_delay):
            r = Signal(16, name=f"dq_i_r{k}")
            m.d.sync += r.eq(dq)
            dq = r
        m.d.comb += [rfifo.w_en.eq(pipe[-1]), rfifo.w_data.eq(dq),
                     port.rdata.valid.eq(rfifo.r_rdy), port.rdata.payload.eq(rfifo.r_data),
                     rfifo.r_en.eq(port.rdata.ready)]

        # -- the current beat: READ/WRITE on a hit, else PRECHARGE or ACTIVATE its bank --------
        hit = Signal()
        bank_open = Signal()
        rw_ok, pre_ok, act_ok = Signal(), Signal(), Signal()
        with m.Switch(bank):
            for b in range(nbanks):
                with m.Case(b):
                    m.d.comb += [bank_open.eq(is_open[b]), hit.eq(is_open[b] & (open_row[b] == row)),
                                 rw_ok.eq(t_rw[b].ready), pre_ok.eq(t_pre[b].ready), act_ok.eq(t_act[b].ready)]
        do_act, do_pre = Signal(), Signal()
        serve = self.ready & cur_valid & ~ref_due
        with m.If(serve):
            with m.If(hit):
                with m.If(rw_ok):
                    with m.If(cur_write):
                        m.d.comb += do_write.eq(port.wdata.valid & t_wr_turn.ready)
                    with m.Else():
                        m.d.comb += do_read.eq(inflight < self.read_queue)
            with m.Elif(bank_open):
                m.d.comb += do_pre.eq(pre_ok)
            with m.Else():
                m.d.comb += do_act.eq(act_ok & t_rrd.ready)
        m.d.comb += [advance.eq(do_read | do_write), port.wdata.ready.eq(do_write)]

        with m.If(do_read):
            issue(_READ, ba=bank, a=col)
        with m.If(do_write):
            issue(_WRITE, ba=bank, a=col)
            m.d.sync += [pins.dq_o.eq(port.wdata.payload.data.as_value()), pins.dq_oe.eq(1),
                         pins.dqm.eq(~port.wdata.payload.mask)]
        with m.If(do_pre):
            issue(_PRE, ba=bank, a=0)
        with m.If(do_act):
            issue(_ACT, ba=bank, a=row)
        t_rrd.load(do_act, cy.tRRD)
        t_wr_turn.load(do_read, cy.cl + 2)
        for b in range(nbanks):
            here = bank == b
            with m.If(do_pre & here):
                m.d.sync += is_open[b].eq(0)
            with m.If(do_act & here):
                m.d.sync += [is_open[b].eq(1), open_row[b].eq(row)]
            t_act[b].load(do_pre & here, cy.tRP)
            t_act[b].load(do_act & here, cy.tRC)
            t_pre[b].load(do_act & here, cy.tRAS)
            t_pre[b].load(do_write & here, cy.tWR)
            t_rw[b].load(do_act & here, cy.tRCD)

        for t in (*t_act, *t_pre, *t_rw, t_rrd, t_wr_turn):
            t.elaborate(m)
        return m
