"""The device end of the host link (``hw/boards/LINK.md``) in gateware: frames in from the UART,
commands executed on the engine's register bus and memory port, answers out to the UART.

``onda.sim.board.link_device.LinkDevice`` is the reference: for the same bytes in, this endpoint
sends the same bytes out and leaves the same memory and registers, including every refusal
(bad length, out of range, busy, unknown command), the sequence window, retransmitted requests
and HELLO.

How it works, one request at a time:

1. **Ring.** Every byte received goes into a 2 KiB ring buffer (``lib.memory.Memory``, four
   iCE40 EBRs) the clock it arrives, whatever the rest is doing, so the UART never has to wait.
   The parser reads the ring one byte a clock. The ring keeps every byte from just after the
   SYNC of the frame being judged (``base``): a frame whose length field exceeds
   ``MAX_PAYLOAD`` or whose CRC is wrong is dropped and the parser reads again from the byte
   after its SYNC, exactly as ``link_protocol.take_frame`` rescans its buffer, so a valid frame
   hidden inside a corrupted one (or in its length field's reach) is still found. A whole
   frame (at most 1030 bytes after its SYNC) always fits, so the parser can always finish
   judging the frame that the bytes in the ring belong to. A begun frame whose next byte has not
   come for ``gap`` clocks is given up the same way (LINK.md: ``GAP_BITS``). ``rx.ready`` falls only when the
   ring is full (behind ``UartRx`` the byte is then lost, an overrun, and the host resends);
   a host keeping to the window cannot fill it: bytes arrive no faster than an answer leaves,
   so while the longest answer (1031 bytes) is sent at most as many arrive.
2. **Parse.** Header fields into registers, the CRC (``crc16.crc16_next``) a byte a clock, and
   the payload's first 8 bytes (every command's fixed fields) into ``args``. WRITE_MEM's data
   stays in the ring until the CRC has been checked.
3. **Sequence.** HELLO always; ``seq == expected`` executes; one of the ``hist`` (at most
   ``WINDOW``) numbers executed just before ``expected`` is a retransmission (idempotent
   commands run again, the others get the status remembered in ``statuses``, 3 bits a slot,
   slot ``seq % WINDOW``); anything else is dropped.
4. **Check** (one clock): the command's refusals in the reference's order. The three memory
   ranges (WRITE_MEM, READ_MEM, RUN's program) share one adder, ``addr + n <= mem_size`` in
   ``k = max(bits of mem_size, 11)`` bits (a field with a bit above is out of range anyway); the
   same adder then steps the request's own address field a byte at a time for the memory
   commands, so there is no separate address register or incrementer.
5. **Execute and answer.** Register writes go out on the CSR bus (RUN: PROG_ADDR, PROG_COUNT,
   CTRL = 1); WRITE_MEM replays its data bytes from the ring into a beat register and writes
   each beat with a byte mask (one-beat commands: any address, any length); the answer is
   sent a byte at a time with its CRC, the body coming from the identity ROM, a register read
   (READ_REG; STATUS reads STATUS, ERROR, ERROR_INDEX, CYCLES_LO, CYCLES_HI as their bytes
   are sent, so CYCLES_LO is read before CYCLES_HI and the two halves agree), or one-beat
   memory reads (READ_MEM).

The memory port is only used between a request's check and its answer, one beat at a time, and
``rdata`` is taken as soon as it arrives, so the port is never held while the UART is slow.

Size (Yosys ``synth_ice40``, P = 2, 128 KiB): about 890 LUTs, 160 carries, 330 flip-flops and the
ring's four EBRs; the 60-byte identity ROM is left to Yosys, which builds it from LUTs (about 65;
a block RAM instead would be a fifth EBR).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw.boards.crc16 import CRC_INIT, crc16_next
from onda.hw.boards.link_protocol import (IDENTIFY_FORMAT, MAX_PAYLOAD, RESPONSE, STATUS_FORMAT, SYNC, WINDOW,
                                          Command, Status, is_idempotent)
from onda.hw.engine.csr import ADDR_BITS, CsrBusSignature
from onda.hw.engine.memory_port import MemoryPortSignature
from onda.hw.engine.registers import REGISTERS, address_of

__all__ = ["LinkEndpoint", "RING_BYTES", "identity_bytes"]

RING_BYTES = 2048
"""Receive ring: a whole frame after its SYNC (``HEADER.size - 1 + MAX_PAYLOAD + CRC.size`` =
1030 bytes) with room for as many more to arrive while it executes."""

_STATUS_REGS = ("STATUS", "ERROR", "ERROR_INDEX", "CYCLES_LO", "CYCLES_HI")  # STATUS_FORMAT's fields in order
_IDENTITY_LEN = IDENTIFY_FORMAT.size
_WORD_BODY = {Command.READ_REG: 4, Command.STATUS: STATUS_FORMAT.size}


def identity_bytes(board: str, fingerprint: bytes, version: int, mem_size: int) -> bytes:
    """The IDENTIFY (and HELLO) answer after its status byte, as ``LinkDevice`` builds it."""
    return IDENTIFY_FORMAT.pack(board.encode()[:16], fingerprint[:32], version, mem_size, MAX_PAYLOAD, WINDOW)


class LinkEndpoint(wiring.Component):
    """The link's device end between the UART and the engine.

    Parameters
    ----------
    board : str
        Board name IDENTIFY reports (16 bytes at most are sent).
    fingerprint : bytes
        The engine configuration's SHA-256 (32 bytes are sent).
    version : int
        Gateware version (u32).
    mem_size : int
        Bytes of memory on the port (1 .. 2**32 - 1, a multiple of ``P``): the range every
        memory request and RUN's program is checked against.
    P : int
        Bytes per memory beat.
    gap : int
        Clocks a begun frame may wait for its next byte before it is given up (dropped, hunted
        again after its SYNC, as a bad CRC is): ``GAP_BITS`` bit times on a board, so a request
        whose length field was hit does not wait for bytes the host will not send; 0: never.

    Members
    -------
    rx : In(stream.Signature(8))
        Received bytes (from ``UartRx``); ``ready`` is low only while the ring is full.
    tx : Out(stream.Signature(8))
        Bytes to send (to ``UartTx``).
    csr : Out(CsrBusSignature())
        The engine's register bus. ``addr`` is 0 (CTRL, whose read is 0 and harmless) except in
        the clock of an access, so a register with a read side effect (CYCLES_LO) sees exactly
        the reads the protocol makes.
    mem : Out(MemoryPortSignature(P))
        One-beat reads and masked writes.
    running : In(1)
        The engine runs (STATUS bit 0): WRITE_MEM, READ_MEM, WRITE_REG and RUN answer BUSY.
    frames_dropped : Out(16)
        SYNCs skipped (length over ``MAX_PAYLOAD`` or a bad CRC) and valid frames dropped out of
        sequence, as ``LinkDevice.dropped`` counts them (wrapping).
    idle : Out(1)
        Waiting for bytes: every byte received has been parsed and nothing is being executed or
        sent.
    """

    def __init__(self, board: str, fingerprint: bytes, version: int, mem_size: int, P: int, gap: int = 0):
        if not isinstance(mem_size, int) or not 0 < mem_size < 2 ** 32 or mem_size % P:
            raise ValueError(f"LinkEndpoint: mem_size must be 1 .. 2**32 - 1 bytes and a multiple of the "
                             f"{P}-byte beat, got {mem_size!r}")
        self.identity = identity_bytes(board, fingerprint, version, mem_size)
        if not isinstance(gap, int) or gap < 0:
            raise ValueError(f"LinkEndpoint: gap must be a number of clocks >= 0, got {gap!r}")
        self.mem_size, self.P, self.gap = mem_size, P, gap
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "csr": Out(CsrBusSignature()),
            "mem": Out(MemoryPortSignature(P)),
            "running": In(1),
            "frames_dropped": Out(16),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P, mem_size = self.P, self.mem_size
        lp = (P - 1).bit_length()
        # Range arithmetic in k bits: an address or length with a bit at k or above is past
        # mem_size (< 2**k); k >= 11 keeps every payload length (<= 1024) below that.
        k = max(mem_size.bit_length(), MAX_PAYLOAD.bit_length())
        pbits = MAX_PAYLOAD.bit_length()  # 0 .. MAX_PAYLOAD
        rx, tx, csr, port = self.rx, self.tx, self.csr, self.mem

        # -- the ring: written from rx, read by the parser and WRITE_MEM one byte a clock -------------
        m.submodules.ring = ring = memory.Memory(shape=8, depth=RING_BYTES, init=[])
        wr = ring.write_port()
        rd = ring.read_port(transparent_for=())
        pos = RING_BYTES.bit_length() - 1
        wp, rp = Signal(pos), Signal(pos)  # next byte written, next byte read
        base = Signal(pos)  # oldest byte still needed: just after the SYNC of the frame being judged
        fend = Signal(pos)  # just after the accepted frame's CRC
        dstart = Signal(pos)  # the accepted frame's payload byte 4 (WRITE_MEM's first data byte)
        m.d.comb += [rx.ready.eq((wp + 1)[:pos] != base),  # full: RING_BYTES - 1 bytes from base
                     wr.addr.eq(wp), wr.data.eq(rx.payload), wr.en.eq(rx.valid & rx.ready)]
        with m.If(wr.en):
            m.d.sync += wp.eq(wp + 1)
        dv = Signal()  # rd.data is the byte at rp - 1
        take = Signal()  # the FSM consumes it
        byte = rd.data
        m.d.comb += [rd.addr.eq(rp), rd.en.eq((~dv | take) & (rp != wp))]
        with m.If(rd.en):
            m.d.sync += [rp.eq(rp + 1), dv.eq(1)]
        with m.Elif(take):
            m.d.sync += dv.eq(0)

        def reread(at):  # statements: the next byte read is the one at ``at``
            return [rp.eq(at), dv.eq(0)]

        # -- the identity ROM: the status byte's place (0), then IDENTIFY_FORMAT ----------------------
        m.submodules.rom = rom = memory.Memory(shape=8, depth=1 + _IDENTITY_LEN, init=b"\x00" + self.identity)
        rom_rd = rom.read_port()

        # -- the request and the answer ---------------------------------------------------------------
        seq, cmd = Signal(8), Signal(8)
        plen = Signal(pbits)  # the request's payload length; from CHECK on, the answer's
        pidx = Signal(pbits)  # payload byte being parsed, written or sent
        pidx_n = Signal(pbits)  # its next value (the ROM is read a clock ahead)
        m.d.comb += [pidx_n.eq(pidx), rom_rd.addr.eq(pidx_n)]
        m.d.sync += pidx.eq(pidx_n)
        args = Signal(64)  # payload bytes 0..7
        m.d.comb += csr.w_data.eq(args[32:])  # WRITE_REG's value, RUN's count (PROG_ADDR and CTRL below)
        crc, crc_lo = Signal(16, init=CRC_INIT), Signal(8)
        crc_byte, crc_en = Signal(8), Signal()
        m.d.comb += crc_byte.eq(byte)
        with m.If(crc_en):
            m.d.sync += crc.eq(crc16_next(crc, crc_byte))
        status = Signal(3)
        expected = Signal(8)
        hist = Signal(range(WINDOW + 1))  # requests executed since reset or HELLO, at most WINDOW
        statuses = Signal(3 * WINDOW)  # slot seq % WINDOW: the status that request got

        a = args[:k]  # the request's address field, stepped a byte at a time by the memory commands
        lane = a[:lp] if lp else Const(0, 1)
        beat_addr = Cat(Const(0, lp), a[lp:]) if lp else a  # the beat holding byte a
        last_lane = lane == P - 1
        beat = Signal(8 * P)
        mask = Signal(P)
        have = Signal()  # beat holds the read beat of a's bytes
        word = Signal(24)  # the rest of a register read, sent a byte at a time

        # -- the answer's byte stream ----------------------------------------------------------------
        can = Signal()
        m.d.comb += can.eq(~tx.valid | tx.ready)
        out, send = Signal(8), Signal()
        with m.If(tx.ready):
            m.d.sync += tx.valid.eq(0)
        with m.If(send):
            m.d.sync += [tx.payload.eq(out), tx.valid.eq(1)]

        # -- the shared adder: addr + n <= mem_size in CHECK, then a + 1 for each memory byte --------
        addr = args[:32]
        n_op = Signal(37)
        step = Signal()  # the adder steps a
        with m.Switch(cmd):
            with m.Case(Command.WRITE_MEM):  # n = plen - 4: compared with mem_size + 4 below
                m.d.comb += n_op.eq(plen)
            with m.Case(Command.READ_MEM):  # n < 1024 by the length check before
                m.d.comb += n_op.eq(args[32:42])
            with m.Case(Command.RUN):  # 32 bytes an instruction
                m.d.comb += n_op.eq(Cat(Const(0, 5), args[32:64]))
        total = Signal(k + 1)
        m.d.comb += total.eq(addr[:k] + Mux(step, 1, n_op[:k]))
        over = (addr[k:] != 0) | (n_op[k:] != 0)
        in_range = ~over & Mux(cmd == Command.WRITE_MEM, total <= mem_size + 4, total <= mem_size)
        with m.If(step):
            m.d.sync += a.eq(total)

        reg = args[:32]
        known = reg < len(REGISTERS)
        writable = Signal()
        with m.Switch(reg[:ADDR_BITS]):
            for r in REGISTERS:
                if r.writable:
                    with m.Case(r.address):
                        m.d.comb += writable.eq(1)
        count = args[32:48]  # READ_MEM's

        check = Signal(3)
        ok = Status.OK
        with m.Switch(cmd):
            with m.Case(Command.IDENTIFY, Command.STATUS):
                m.d.comb += check.eq(Mux(plen != 0, Status.BAD_LENGTH, ok))
            with m.Case(Command.WRITE_MEM):
                m.d.comb += check.eq(Mux(plen <= 4, Status.BAD_LENGTH, Mux(~in_range, Status.OUT_OF_RANGE,
                                                                           Mux(self.running, Status.BUSY, ok))))
            with m.Case(Command.READ_MEM):
                bad = (plen != 6) | (count == 0) | (count >= MAX_PAYLOAD)
                m.d.comb += check.eq(Mux(bad, Status.BAD_LENGTH, Mux(~in_range, Status.OUT_OF_RANGE,
                                                                     Mux(self.running, Status.BUSY, ok))))
            with m.Case(Command.WRITE_REG):
                m.d.comb += check.eq(Mux(plen != 8, Status.BAD_LENGTH, Mux(~(known & writable), Status.OUT_OF_RANGE,
                                                                           Mux(self.running, Status.BUSY, ok))))
            with m.Case(Command.READ_REG):
                m.d.comb += check.eq(Mux(plen != 4, Status.BAD_LENGTH, Mux(~known, Status.OUT_OF_RANGE, ok)))
            with m.Case(Command.RUN):
                m.d.comb += check.eq(Mux(plen != 8, Status.BAD_LENGTH, Mux(~in_range, Status.OUT_OF_RANGE,
                                                                           Mux(self.running, Status.BUSY, ok))))
            with m.Default():
                m.d.comb += check.eq(Status.UNKNOWN_COMMAND)
        body_len = Signal(pbits)  # the answer's payload when the check passes: status byte and body
        with m.Switch(cmd):
            with m.Case(Command.IDENTIFY):
                m.d.comb += body_len.eq(1 + _IDENTITY_LEN)
            with m.Case(Command.READ_MEM):
                m.d.comb += body_len.eq(count[:10] + 1)
            for c, n in _WORD_BODY.items():
                with m.Case(c):
                    m.d.comb += body_len.eq(1 + n)
            with m.Default():
                m.d.comb += body_len.eq(1)

        is_rom = (cmd == Command.IDENTIFY) | (cmd == Command.HELLO)
        is_word = (cmd == Command.READ_REG) | (cmd == Command.STATUS)
        is_mem = cmd == Command.READ_MEM
        idempotent = Cat(*(cmd == c for c in Command if is_idempotent(c))).any()
        behind = Signal(8)
        m.d.comb += behind.eq(expected - seq)
        slot = seq[:(WINDOW - 1).bit_length()]

        parsing = Signal()
        m.d.comb += self.idle.eq(parsing & ~dv & (rp == wp) & ~tx.valid)

        def reject():
            return [*reread(base), self.frames_dropped.eq(self.frames_dropped + 1)]

        # A begun frame's next byte has not come for ``gap`` clocks: give the frame up.
        if self.gap:
            waiting = Signal()  # in a begun frame, no byte to take
            wait = Signal(range(self.gap))
            m.d.sync += wait.eq(Mux(waiting, wait + 1, 0))

        def give_up():  # in a begun frame's parse states, while no byte is there
            if self.gap:
                m.d.comb += waiting.eq(1)
                with m.If(wait == self.gap - 1):
                    m.d.sync += reject()
                    m.next = "HUNT"

        with m.FSM():
            # -- parse ------------------------------------------------------------------------------
            with m.State("HUNT"):
                m.d.comb += [parsing.eq(1), take.eq(dv)]
                with m.If(dv):
                    m.d.sync += base.eq(rp)
                    with m.If(byte == SYNC):
                        m.d.sync += crc.eq(CRC_INIT)
                        m.next = "SEQ"
            for state, field, nxt in (("SEQ", seq, "CMD"), ("CMD", cmd, "LEN0"), ("LEN0", plen[:8], "LEN1")):
                with m.State(state):
                    m.d.comb += [parsing.eq(1), take.eq(dv), crc_en.eq(dv)]
                    with m.If(dv):
                        m.d.sync += field.eq(byte)
                        m.next = nxt
                    with m.Else():
                        give_up()
            with m.State("LEN1"):
                m.d.comb += [parsing.eq(1), take.eq(dv), crc_en.eq(dv)]
                with m.If(dv):
                    with m.If((byte > MAX_PAYLOAD >> 8) | ((byte == MAX_PAYLOAD >> 8) & (plen[:8] != 0))):
                        m.d.sync += reject()
                        m.next = "HUNT"
                    with m.Else():
                        m.d.sync += plen[8:].eq(byte)
                        m.d.comb += pidx_n.eq(0)
                        m.next = "PAYLOAD"
                with m.Else():
                    give_up()
            with m.State("PAYLOAD"):
                m.d.comb += parsing.eq(1)
                with m.If(pidx == plen):
                    m.next = "CRC0"
                with m.Elif(dv):
                    m.d.comb += [take.eq(1), crc_en.eq(1), pidx_n.eq(pidx + 1)]
                    with m.If(pidx < 8):
                        m.d.sync += args.word_select(pidx[:3], 8).eq(byte)
                    with m.If(pidx == 3):
                        m.d.sync += dstart.eq(rp)
                with m.Else():
                    give_up()
            with m.State("CRC0"):
                m.d.comb += [parsing.eq(1), take.eq(dv)]
                with m.If(dv):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC1"
                with m.Else():
                    give_up()
            with m.State("CRC1"):
                m.d.comb += [parsing.eq(1), take.eq(dv)]
                with m.If(dv):
                    with m.If(Cat(crc_lo, byte) == crc):
                        m.d.sync += fend.eq(rp)
                        m.next = "DISPATCH"
                    with m.Else():
                        m.d.sync += reject()
                        m.next = "HUNT"
                with m.Else():
                    give_up()

            # -- sequence ---------------------------------------------------------------------------
            with m.State("DISPATCH"):
                m.d.sync += have.eq(0)
                with m.If(cmd == Command.HELLO):
                    m.d.sync += [expected.eq(seq + 1), hist.eq(0), status.eq(Status.OK), plen.eq(1 + _IDENTITY_LEN)]
                    m.next = "T_SYNC"
                with m.Elif(behind == 0):
                    m.next = "CHECK"
                with m.Elif((behind[4:] == 0) & (behind[:4] <= hist)):
                    with m.If(idempotent):
                        m.next = "CHECK"
                    with m.Else():
                        m.d.sync += [status.eq(statuses.word_select(slot, 3)), plen.eq(1)]
                        m.next = "T_SYNC"
                with m.Else():
                    m.d.sync += self.frames_dropped.eq(self.frames_dropped + 1)
                    m.next = "DONE"

            # -- check and execute ------------------------------------------------------------------
            with m.State("CHECK"):  # expected and seq as in DISPATCH: behind == 0 is a fresh request
                m.d.sync += status.eq(check)
                with m.If((check != ok) | (cmd != Command.WRITE_MEM)):  # WRITE_MEM needs its length until done
                    m.d.sync += plen.eq(Mux(check == ok, body_len, 1))
                with m.If(behind == 0):
                    m.d.sync += [statuses.word_select(slot, 3).eq(check), expected.eq(seq + 1),
                                 hist.eq(Mux(hist == WINDOW, WINDOW, hist + 1))]
                with m.If(check == ok):
                    m.next = "EXECUTE"
                with m.Else():
                    m.next = "T_SYNC"
            with m.State("EXECUTE"):
                with m.Switch(cmd):
                    with m.Case(Command.WRITE_MEM):
                        m.d.sync += [*reread(dstart), mask.eq(0)]
                        m.d.comb += pidx_n.eq(4)
                        m.next = "W_FILL"
                    with m.Case(Command.WRITE_REG):
                        m.d.comb += [csr.addr.eq(reg[:ADDR_BITS]), csr.w_en.eq(1)]
                        m.next = "T_SYNC"
                    with m.Case(Command.RUN):
                        m.d.comb += [csr.addr.eq(address_of("PROG_ADDR")), csr.w_data.eq(args[:32]), csr.w_en.eq(1)]
                        m.next = "RUN_COUNT"
                    with m.Default():
                        m.next = "T_SYNC"
            with m.State("RUN_COUNT"):
                m.d.comb += [csr.addr.eq(address_of("PROG_COUNT")), csr.w_en.eq(1)]
                m.next = "RUN_GO"
            with m.State("RUN_GO"):
                m.d.comb += [csr.addr.eq(address_of("CTRL")), csr.w_data.eq(1), csr.w_en.eq(1)]
                m.next = "T_SYNC"

            # WRITE_MEM: the data bytes from the ring into beats, each written with its byte mask.
            # plen still holds the request's length here (the answer's, 1, is set when done).
            with m.State("W_FILL"):
                with m.If(pidx == plen):
                    with m.If(mask != 0):
                        m.next = "W_CMD"
                    with m.Else():
                        m.d.sync += plen.eq(1)
                        m.next = "T_SYNC"
                with m.Elif(dv):
                    m.d.comb += [take.eq(1), pidx_n.eq(pidx + 1)]
                    m.d.sync += [beat.word_select(lane, 8).eq(byte), mask.bit_select(lane, 1).eq(1)]
                    with m.If(last_lane):
                        m.next = "W_CMD"
                    with m.Else():
                        m.d.comb += step.eq(1)
            with m.State("W_CMD"):
                m.d.comb += [port.cmd.valid.eq(1), port.cmd.payload.addr.eq(beat_addr),
                             port.cmd.payload.beats.eq(1), port.cmd.payload.write.eq(1)]
                with m.If(port.cmd.ready):
                    m.next = "W_DATA"
            with m.State("W_DATA"):
                m.d.comb += [port.wdata.valid.eq(1), port.wdata.payload.data.eq(beat),
                             port.wdata.payload.mask.eq(mask)]
                with m.If(port.wdata.ready):
                    m.d.comb += step.eq(1)
                    m.d.sync += mask.eq(0)
                    m.next = "W_FILL"

            # -- the answer -------------------------------------------------------------------------
            header = (("T_SYNC", SYNC, "T_SEQ"), ("T_SEQ", seq, "T_CMD"), ("T_CMD", cmd | RESPONSE, "T_LEN0"),
                      ("T_LEN0", plen[:8], "T_LEN1"), ("T_LEN1", plen[8:], "T_BODY"))
            for state, value, nxt in header:
                with m.State(state):
                    m.d.comb += [out.eq(value), crc_byte.eq(out), send.eq(can)]
                    with m.If(can):
                        if state == "T_SYNC":
                            m.d.sync += crc.eq(CRC_INIT)
                        else:
                            m.d.comb += crc_en.eq(1)
                        if state == "T_LEN1":
                            m.d.comb += pidx_n.eq(0)
                        m.next = nxt
            with m.State("T_BODY"):
                m.d.comb += crc_byte.eq(out)
                with m.If(pidx == plen):
                    m.next = "T_CRC0"
                with m.Elif(is_mem & (pidx != 0) & ~have):
                    m.next = "R_CMD"
                with m.Elif(can):
                    m.d.comb += [send.eq(1), crc_en.eq(1), pidx_n.eq(pidx + 1)]
                    with m.If(pidx == 0):
                        m.d.comb += out.eq(status)
                    with m.Elif(is_rom):
                        m.d.comb += out.eq(rom_rd.data)
                    with m.Elif(is_word):
                        with m.If(pidx[:2] == 1):  # a register's first byte: read it
                            with m.If(cmd == Command.READ_REG):
                                m.d.comb += csr.addr.eq(reg[:ADDR_BITS])
                            with m.Else():
                                with m.Switch(pidx[2:5]):
                                    for k, name in enumerate(_STATUS_REGS):
                                        with m.Case(k):
                                            m.d.comb += csr.addr.eq(address_of(name))
                            m.d.comb += out.eq(csr.r_data[:8])
                            m.d.sync += word.eq(csr.r_data[8:])
                        with m.Else():
                            m.d.comb += out.eq(word[:8])
                            m.d.sync += word.eq(word >> 8)
                    with m.Else():  # READ_MEM
                        m.d.comb += [out.eq(beat.word_select(lane, 8)), step.eq(1)]
                        with m.If(last_lane):
                            m.d.sync += have.eq(0)
            with m.State("R_CMD"):
                m.d.comb += [port.cmd.valid.eq(1), port.cmd.payload.addr.eq(beat_addr),
                             port.cmd.payload.beats.eq(1)]
                with m.If(port.cmd.ready):
                    m.next = "R_DATA"
            with m.State("R_DATA"):
                m.d.comb += port.rdata.ready.eq(1)
                with m.If(port.rdata.valid):
                    m.d.sync += [beat.eq(port.rdata.payload), have.eq(1)]
                    m.next = "T_BODY"
            with m.State("T_CRC0"):
                m.d.comb += [out.eq(crc[:8]), send.eq(can)]
                with m.If(can):
                    m.next = "T_CRC1"
            with m.State("T_CRC1"):
                m.d.comb += [out.eq(crc[8:]), send.eq(can)]
                with m.If(can):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += [*reread(fend), base.eq(fend)]
                m.next = "HUNT"
        return m
