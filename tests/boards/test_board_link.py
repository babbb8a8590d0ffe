"""The host link end to end: the board backend over pyserial's ``socket://`` to a simulated board
(the engine RTL in Verilator behind the protocol's reference device, and each board top's
gateware in Verilator), the digits classifier bit-exact with the emulator; through a faulty
cable (dropped, corrupted, duplicated, delayed bytes) still bit-exact with retransmissions; a
cut cable a clear error within the timeout, and recovery once it returns; the protocol's
refusals and an engine error reaching the user."""

import struct
import time

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.models import digits
from onda.host.runtime import BackendError, get_backend
from onda.host.runtime.link import Link, LinkError, wire_bytes
from onda.hw.boards.link_protocol import RESPONSE, Command, Status, decode_frame, encode_frame
from onda.hw.engine.errors import EngineError
from onda.sim.board.link_device import LinkDevice
from onda.sim.board.link_shim import LinkShim
from onda.sim.engine.program_cases import random_inputs
from onda.sim.verilator.build import have_toolchain

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")


def _images(path, n=4, seed=7):
    emu = get_backend("emulator").load(path)
    return emu, random_inputs(emu, n, seed)


def test_digits_on_the_simulated_board(board):
    path, sim = board
    emu, xs = _images(path)
    model = get_backend("board", device=sim.url, timeout=sim.frame_seconds).load(path)
    got, want = model.run(xs)[0], emu.run(xs)[0]
    np.testing.assert_array_equal(got, want)
    assert model.measured_cycles and abs(model.measured_cycles / model.cycle_trace().total - 1) < 0.02
    ident = model.link.identity
    assert ident.board == sim.cfg.name and ident.fingerprint == sim.cfg.fingerprint


@pytest.mark.parametrize("n", [1, 1020, 1021, 5000])
def test_bytes_on_the_cable(board, n):
    """The bench's link time rests on wire_bytes: it must count what the transport carried."""
    _, sim = board
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    with Link(sim.url, timeout=sim.frame_seconds) as link:
        for write in (True, False):
            before = link.stats["bytes_out"], link.stats["bytes_in"]
            back = link.write_memory(64, data) if write else link.read_memory(64, n)
            got = link.stats["bytes_out"] - before[0], link.stats["bytes_in"] - before[1]
            assert got == wire_bytes(n, write)
        assert back == data


def test_faulty_cable_stays_bit_exact(board):
    path, sim = board
    emu, xs = _images(path, n=2, seed=8)
    shim = LinkShim("127.0.0.1", sim.port, drop=0.03, corrupt=0.03, duplicate=0.03, delay_s=0.0005, seed=1)
    try:
        model = get_backend("board", device=shim.url, timeout=1.5 * sim.frame_seconds, retries=40).load(path)
        np.testing.assert_array_equal(model.run(xs)[0], emu.run(xs)[0])
        assert sum(shim.faults.values()) > 0 and model.link.stats["resent"] > 0, (shim.faults, model.link.stats)
    finally:
        shim.close()


def test_cut_cable_is_a_clear_error_then_recovers(board):
    path, sim = board
    emu, xs = _images(path, n=1, seed=9)
    shim = LinkShim("127.0.0.1", sim.port)
    try:
        timeout = sim.frame_seconds
        model = get_backend("board", device=shim.url, timeout=timeout, retries=3).load(path)
        np.testing.assert_array_equal(model.run(xs)[0], emu.run(xs)[0])
        shim.cut()
        t0 = time.monotonic()
        with pytest.raises(BackendError, match=rf"board at {shim.url}: no answer to \w+ after"):
            model.run(xs)
        assert time.monotonic() - t0 < timeout * 5 + 2  # timeout x (retries + 1), and a little
        shim.restore()
        np.testing.assert_array_equal(model.run(xs)[0], emu.run(xs)[0])  # reconnects, reloads
    finally:
        shim.close()


def test_wrong_engine_and_engine_error(board):
    path, sim = board
    other = "ulx3s-85f" if sim.cfg.name == "icebreaker" else "icebreaker"
    wrong = path.with_name(f"digits-for-{other}.onda")
    compile_tflite(digits.TFLITE, other).write(wrong)
    model = get_backend("board", device=sim.url, timeout=sim.frame_seconds).load(wrong)
    with pytest.raises(BackendError, match=rf"runs engine '{sim.cfg.name}'.*compiled for '{other}'"):
        model.run(random_inputs(model, 1, 0))
    # An illegal instruction: the engine stops with its code, the link reports it.
    with Link(sim.url, timeout=sim.frame_seconds) as link:
        at = sim.cfg.mem_size_bytes - 64  # past the loaded model
        link.write_memory(at, bytes([0x0F]) + bytes(31))  # opcode 15
        link.run(at, 1)
        for _ in range(200):
            st = link.status()
            if st.done or st.error:
                break
            time.sleep(0.005)
        assert st.error == EngineError.ILLEGAL_OPCODE and st.error_index == 0 and not st.done
        with pytest.raises(LinkError, match="READ_MEM refused: OUT_OF_RANGE"):
            link.read_memory(sim.cfg.mem_size_bytes - 2, 4)


class _Engine:
    """A memory and registers for the device alone (no engine: the protocol's own behaviour)."""

    def __init__(self):
        self.mem = bytearray(4096)
        self.regs = {"STATUS": 0, "CYCLES_LO": 0, "CYCLES_HI": 0, "ERROR": 0, "ERROR_INDEX": 0}
        self.writes = 0

    def write_memory(self, a, d):
        self.writes += 1
        self.mem[a:a + len(d)] = d

    def read_memory(self, a, n):
        return self.mem[a:a + n]

    def write_register(self, name, v):
        self.regs[name] = v

    def read_register(self, name):
        return self.regs.get(name, 0)


def _answer(dev, seq, cmd, payload=b""):
    out = dev.feed(encode_frame(seq, cmd, payload))
    return decode_frame(out) if out else None


REFUSALS = [  # (cmd, payload, status)
    (0x33, b"", Status.UNKNOWN_COMMAND),
    (Command.WRITE_MEM, b"\0\0\0", Status.BAD_LENGTH),
    (Command.READ_MEM, struct.pack("<IH", 4090, 8), Status.OUT_OF_RANGE),
    (Command.READ_MEM, struct.pack("<I", 0), Status.BAD_LENGTH),
    (Command.WRITE_REG, struct.pack("<II", 1, 5), Status.OUT_OF_RANGE),  # STATUS is read-only
    (Command.READ_REG, struct.pack("<I", 999), Status.OUT_OF_RANGE),
    (Command.STATUS, b"x", Status.BAD_LENGTH),
]


@pytest.mark.parametrize("cmd,payload,status", REFUSALS)
def test_device_refusals(cmd, payload, status):
    dev = LinkDevice(_Engine(), "test", bytes(32), 1, 4096)
    f = _answer(dev, 0, cmd, payload)
    assert f.seq == 0 and f.cmd == cmd | RESPONSE and f.payload == bytes([status])
    assert _answer(dev, 1, Command.STATUS).payload[0] == Status.OK  # the device goes on


def test_device_sequence_rules():
    eng = _Engine()
    dev = LinkDevice(eng, "test", bytes(32), 1, 4096)
    assert _answer(dev, 200, Command.HELLO).seq == 200  # any seq; then 201 is expected
    w = struct.pack("<I", 16) + b"abcd"
    assert _answer(dev, 201, Command.WRITE_MEM, w).payload == b"\0"
    assert _answer(dev, 201, Command.WRITE_MEM, w).payload == b"\0" and eng.writes == 1  # duplicate: not again
    assert _answer(dev, 203, Command.STATUS) is None  # ahead of a lost 202: dropped
    assert _answer(dev, 202, Command.READ_MEM, struct.pack("<IH", 16, 4)).payload == b"\0abcd"
    assert _answer(dev, 202, Command.READ_MEM, struct.pack("<IH", 16, 4)).payload == b"\0abcd"  # re-executed
    broken = bytearray(encode_frame(203, Command.STATUS))
    broken[-1] ^= 1
    assert dev.feed(bytes(broken)) == b"" and dev.dropped >= 2  # CRC: silently dropped
    noise = b"\x5a\xff\xff\xff\xff" + encode_frame(203, Command.STATUS)  # a false SYNC, then a frame
    assert decode_frame(dev.feed(noise)).seq == 203


@pytest.mark.parametrize("flip", [0x01, 0x02])  # the length field's high byte: 257 or 513 bytes claimed
def test_answer_with_a_hit_length_field_costs_one_retry(flip):
    """A corrupted short answer can claim far more bytes than the device's answers to the
    retransmissions would bring in dozens of retries: the host gives up on the half frame after a
    timeout and hunts again, so the next retransmission's answer gets through."""
    import socket
    import threading

    from onda.hw.boards.link_protocol import take_frame

    dev = LinkDevice(_Engine(), "test", bytes(32), 1, 4096)
    srv = socket.create_server(("127.0.0.1", 0))
    hit = []

    def serve():
        conn, _ = srv.accept()
        buf = bytearray()
        with conn:
            while data := conn.recv(4096):
                buf += data
                while (frame := take_frame(buf)[0]) is not None:
                    out = bytearray(dev.feed(encode_frame(frame.seq, frame.cmd, frame.payload)))
                    if frame.cmd == Command.WRITE_REG and not hit:
                        out[4] ^= flip  # len's high byte
                        hit.append(bytes(out))
                    conn.sendall(out)

    threading.Thread(target=serve, daemon=True).start()
    try:
        with Link(f"socket://127.0.0.1:{srv.getsockname()[1]}", timeout=0.2, retries=2) as link:
            link.write_register("PROG_ADDR", 64)
            assert hit and link.stats["timeouts"] == 1 and link.stats["resent"] == 1
            assert link.read_register("PROG_ADDR") == 64  # the link goes on in step
    finally:
        srv.close()
