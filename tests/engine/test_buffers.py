"""ByteBuffer: random unaligned reads and masked writes on every port width, cycle by cycle,
against a Python bytearray; the engine's four buffers as configured; constructor messages."""

import random

import pytest
from amaranth.sim import Simulator

from onda.hw.config import load_config
from onda.hw.engine.buffers import (ByteBuffer, ByteReadSignature, ByteWriteSignature, act_buffer, addr_bits,
                                    out_buffer, param_buffer, wgt_buffer)

# Buffers built only to check their ports are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _bytes(value: int, n: int) -> list[int]:
    return [(value >> (8 * i)) & 0xFF for i in range(n)]


def run_random(buf: ByteBuffer, cycles: int, seed: int, *, p_read=0.6, p_write=0.5, past_end=6):
    """Drive every port at random for ``cycles`` cycles; check each read against the model as it
    was before that cycle's writes, and that ``data`` holds while ``en`` is low."""
    rng = random.Random(seed)
    model = bytearray(buf.size)
    stats = {"reads": 0, "writes": 0, "held": 0}
    limit = min(buf.size + past_end, 1 << addr_bits(buf.size))

    def expect(addr, n):
        return [model[a] if a < buf.size else 0 for a in range(addr, addr + n)]

    def chosen(groups):
        # The ports of a shared group take turns: one of them, picked at random, may go.
        return {rng.choice(g) for g in groups}

    async def bench(ctx):
        held = {name: None for name in buf.read_ports}
        for _ in range(cycles):
            reads = {}
            may_read, may_write = chosen(buf.read_groups), chosen(buf.write_groups)
            for name, n in buf.read_ports.items():
                port = getattr(buf, f"r_{name}")
                en = rng.random() < p_read and name in may_read
                addr = rng.randrange(0, limit) // buf.align * buf.align
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                if en:
                    reads[name] = expect(addr, n)
            taken = set()
            writes = []
            for name, n in buf.write_ports.items():
                port = getattr(buf, f"w_{name}")
                addr = rng.randrange(0, limit)
                mask = rng.getrandbits(n)
                data = [rng.randrange(256) for _ in range(n)]
                span = {addr + i for i in range(n) if mask >> i & 1}
                en = rng.random() < p_write and not (span & taken) and name in may_write  # one writer per byte
                if en:
                    taken |= span
                    writes.append((addr, mask, data))
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                ctx.set(port.mask, mask)
                ctx.set(port.data, data)
            await ctx.tick()
            for name, n in buf.read_ports.items():
                port = getattr(buf, f"r_{name}")
                got = _bytes(ctx.get(port.data.as_value()), n)
                if name in reads:
                    assert got == reads[name], f"r_{name}: got {got}, model {reads[name]}"
                    held[name] = got
                    stats["reads"] += 1
                elif held[name] is not None:
                    assert got == held[name], f"r_{name} did not hold its data while en was low"
                    stats["held"] += 1
            for addr, mask, data in writes:
                for i, d in enumerate(data):
                    if mask >> i & 1 and addr + i < buf.size:
                        model[addr + i] = d
                stats["writes"] += 1
        for name in buf.write_ports:
            ctx.set(getattr(buf, f"w_{name}").en, 0)
        # Read back the whole buffer through the widest read port: every byte as the model says.
        name, n = max(buf.read_ports.items(), key=lambda kv: kv[1])
        port = getattr(buf, f"r_{name}")
        step = n // buf.align * buf.align
        for addr in range(0, buf.size, step):
            ctx.set(port.en, 1)
            ctx.set(port.addr, addr)
            await ctx.tick()
            assert _bytes(ctx.get(port.data.as_value()), n) == expect(addr, n), f"final read at {addr}"

    sim = Simulator(buf)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return stats


def test_every_port_width_random_against_bytearray():
    # 8 banks, size not a multiple of the banks, ports of every width 1..8 on both sides.
    buf = ByteBuffer(203, 8, read_ports={f"r{n}": n for n in range(1, 9)},
                     write_ports={f"w{n}": n for n in range(1, 9)})
    stats = run_random(buf, 180, seed=1)
    assert stats["reads"] > 700 and stats["writes"] > 350 and stats["held"] > 350


def test_shared_ports_take_turns():
    # Shared read ports hold their own bytes while the others of their group read.
    buf = ByteBuffer(203, 8, read_ports={f"r{n}": n for n in range(1, 9)}, write_ports={f"w{n}": n for n in range(1, 9)},
                     shared_reads=[["r1", "r3", "r8"], ["r2", "r5"]], shared_writes=[["w1", "w8", "w4"]])
    assert [len(g) for g in buf.read_groups] == [3, 2, 1, 1, 1] and len(buf.write_groups) == 6
    stats = run_random(buf, 200, seed=6, p_read=0.8)
    assert stats["reads"] > 600 and stats["held"] > 400


def test_aligned_reads_wide_banks():
    # WGT-like: 16 banks, reads of 16 bytes at multiples of 4, writes of 2 (a memory beat).
    buf = ByteBuffer(256, 16, read_ports={"gemm": 16, "b": 4}, write_ports={"load": 2, "w16": 16}, align=4)
    stats = run_random(buf, 400, seed=2)
    assert stats["reads"] > 300 and stats["writes"] > 300


def test_aligned_reads_grouped_banks():
    # Banks a read takes together share a RAM word (byte-enabled writes) when no write can wrap
    # around into the word it starts in: 16 banks, words of 4, writes up to 13 bytes.
    buf = ByteBuffer(250, 16, read_ports={"gemm": 16, "b": 4}, write_ports={"load": 2, "w13": 13}, align=4)
    assert buf.word_bytes == 4 and len(buf.word_data) == 4
    stats = run_random(buf, 400, seed=7)
    assert stats["reads"] > 300 and stats["writes"] > 300


@pytest.mark.parametrize("align, word, writes, words", [
    (4, None, (14,), 1),      # a 14-byte write could wrap into a word of 4: a RAM per bank
    (4, 2, (14,), 2),         # ... not into one of 2
    (16, 4, (4,), 4),         # WGT: reads of all the banks, RAMs a lane group wide
    (16, 8, (3, 5), 8),
])
def test_word_width(align, word, writes, words):
    """The RAM word: the banks a read takes together, or the caller's narrower word; the bytes
    are those of a bytearray either way."""
    buf = ByteBuffer(250, 16, read_ports={"r": 16}, write_ports={f"w{n}": n for n in writes}, align=align, word=word)
    assert buf.word_bytes == words and len(buf.word_data) == 16 // words
    stats = run_random(buf, 300, seed=words)
    assert stats["reads"] > 100 and stats["writes"] > 100


@pytest.mark.parametrize("align, word, writes", [(4, 8, (2,)), (4, 3, (2,)), (16, 4, (14,))])
def test_word_width_refused(align, word, writes):
    """A word wider than a read's alignment, not a power of two, or one a write wraps into."""
    with pytest.raises(ValueError, match="word must be a power of two dividing align"):
        ByteBuffer(250, 16, read_ports={"r": 16}, write_ports={f"w{n}": n for n in writes}, align=align, word=word)


@pytest.mark.parametrize("size, banks, align, widths, word", [
    (250, 16, 4, (1, 2, 3, 4), 4),    # writes up to a word wide: one lane rotation serves every word
    (203, 32, 8, (2, 5, 8), 8),       # rows of two depths in a word
    (100, 16, 16, (1, 3, 4), 4),      # the WGT load's shape: reads of every bank, lane-group words
])
def test_writes_no_wider_than_a_word(size, banks, align, widths, word):
    # Every write at most one RAM word wide, at any alignment, wrapping from the last word to the
    # next row of the first.
    buf = ByteBuffer(size, banks, read_ports={"r": banks}, write_ports={f"w{n}": n for n in widths}, align=align,
                     word=word)
    assert buf.word_bytes == word
    stats = run_random(buf, 300, seed=size + banks)
    assert stats["reads"] > 120 and stats["writes"] > 120


def test_single_bank_and_tiny_buffer():
    buf = ByteBuffer(5, 1, read_ports={"r": 1}, write_ports={"w": 1})
    stats = run_random(buf, 200, seed=3)
    assert stats["reads"] > 50 and stats["writes"] > 50
    # Fewer bytes than banks: the upper banks hold nothing and read as 0.
    buf = ByteBuffer(3, 4, read_ports={"r": 4, "s": 2}, write_ports={"w": 4})
    stats = run_random(buf, 200, seed=4)
    assert stats["reads"] > 100 and stats["writes"] > 50


def test_read_and_write_of_one_byte_return_old_value():
    buf = ByteBuffer(16, 4, read_ports={"r": 4}, write_ports={"w": 4})

    async def bench(ctx):
        ctx.set(buf.w_w.en, 1)
        ctx.set(buf.w_w.addr, 2)
        ctx.set(buf.w_w.mask, 0b1111)
        ctx.set(buf.w_w.data, [1, 2, 3, 4])
        await ctx.tick()
        ctx.set(buf.w_w.data, [9, 9, 9, 9])
        ctx.set(buf.r_r.en, 1)
        ctx.set(buf.r_r.addr, 3)
        await ctx.tick()
        assert _bytes(ctx.get(buf.r_r.data.as_value()), 4) == [2, 3, 4, 0]
        ctx.set(buf.w_w.en, 0)
        await ctx.tick()
        assert _bytes(ctx.get(buf.r_r.data.as_value()), 4) == [9, 9, 9, 0]

    sim = Simulator(buf)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_engine_buffers_as_configured(board):
    cfg = load_config(board)
    P = cfg.mem_port_bits // 8
    act, wgt, param, out = act_buffer(cfg), wgt_buffer(cfg), param_buffer(cfg), out_buffer(cfg)
    assert act.banks >= max(cfg.width, cfg.vector_lanes, P) and act.write_ports == {"load": act.banks}
    assert act.read_ports == {"gemm": cfg.width, "vec_a": cfg.vector_lanes, "vec_b": cfg.vector_lanes, "store": P}
    assert wgt.banks == wgt.align == cfg.lanes * cfg.width and wgt.word_bytes == cfg.lanes
    assert wgt.read_ports == {"gemm": cfg.lanes * cfg.width} and wgt.write_ports == {"load": P}
    assert param.banks == 16 and param.read_ports == {"gemm": 12, "vec": 4} and param.read_groups == [["gemm", "vec"]]
    assert out.read_ports == {"store": P} and out.write_ports == {"gemm": 1, "vec": cfg.vector_lanes}
    assert out.write_groups == [["gemm", "vec"], ] and out.read_groups == [["store"]]
    assert act.signature.members["w_load"].signature.flip() == ByteWriteSignature(act.banks, addr_bits(cfg.act_bytes))
    assert act.signature.members["r_store"].signature.flip() == ByteReadSignature(P, addr_bits(cfg.act_bytes))
    # A short random run on the real PARAM (and OUT where it is small enough to read back whole).
    for buf in (param, out) if out.size <= 2048 else (param,):
        stats = run_random(buf, 60, seed=5)
        assert stats["reads"] > 20


@pytest.mark.parametrize("args, message", [
    ((0, 4, {"r": 1}, {}), "size must be a positive number of bytes, got 0"),
    ((16, 6, {"r": 1}, {}), "banks must be a power of two >= 1, got 6"),
    ((16, 4, {"r": 1}, {}, 3), r"align must be a power of two <= banks \(4\), got 3"),
    ((16, 4, {"r": 1}, {}, 8), r"align must be a power of two <= banks \(4\), got 8"),
    ((16, 4, {"r": 5}, {}), r"port r_r is 5 bytes wide; ports must be 1..banks \(4\) bytes"),
    ((16, 4, {}, {"w": 0}), r"port w_w is 0 bytes wide; ports must be 1..banks \(4\) bytes"),
    ((16, 4, {"2x": 1}, {}), "port name must be an identifier, got '2x'"),
    ((16, 4, {}, {}), "needs at least one port"),
    ((16, 4, {"a": 1, "b": 1}, {}, 1, [["a", "c"]]), r"shared read group \['a', 'c'\] names no read port 'c'"),
    ((16, 4, {"a": 1, "b": 1}, {}, 1, [["a", "b"], ["b", "a"]]), "read port 'b' is in two shared groups"),
    ((16, 4, {"a": 1}, {"w": 1}, 1, (), [["w"]]), r"a shared write group needs two ports or more, got \['w'\]"),
])
def test_constructor_rejects_bad_parameters(args, message):
    with pytest.raises(ValueError, match=message):
        ByteBuffer(*args)


def test_sim_peek_and_poke_see_the_banks():
    buf = ByteBuffer(37, 4, read_ports={"r": 4}, write_ports={"w": 3})

    async def bench(ctx):
        buf.sim_poke(ctx, 5, b"\x11\x22\x33\x44\x55")
        ctx.set(buf.r_r.en, 1)
        ctx.set(buf.r_r.addr, 6)
        ctx.set(buf.w_w.en, 1)
        ctx.set(buf.w_w.addr, 34)
        ctx.set(buf.w_w.mask, 0b101)
        ctx.set(buf.w_w.data, [7, 8, 9])
        await ctx.tick()
        assert _bytes(ctx.get(buf.r_r.data.as_value()), 4) == [0x22, 0x33, 0x44, 0x55]
        assert buf.sim_peek(ctx, 33, 4) == bytes([0, 7, 0, 9])
        with pytest.raises(IndexError, match=r"sim_peek: \[36, 38\) outside \[0, 37\)"):
            buf.sim_peek(ctx, 36, 2)

    sim = Simulator(buf)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
