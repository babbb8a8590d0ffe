"""Enabled registers: how the datapath's pipelines stall.

Every pipelined block in ``onda.hw.datapath`` stalls as a whole: one enable signal
(``en = ~o.valid | o.ready``) clocks every stage, so the output payload is held while the
consumer is not ready and the input is accepted exactly when the pipeline advances.
"""

from __future__ import annotations

from amaranth.hdl import Mux, Signal

__all__ = ["delay", "rated_advance", "rated_output", "stage"]


def stage(m, en, value, shape=None, name=None, init=0, reset_less=True):
    """A register loaded with ``value`` whenever ``en`` is asserted; returns the register.

    Data registers have no reset (``reset_less``): their contents only matter under a valid
    bit, and without a synchronous reset Yosys can absorb them into DSP blocks (SB_MAC16's
    registers have no synchronous reset) and the reset net stays small. Registers that carry
    a valid bit pass ``reset_less=False``.
    """
    reg = Signal(shape if shape is not None else value.shape(), name=name, init=init,
                 reset_less=reset_less)
    with m.If(en):
        m.d.sync += reg.eq(value)
    return reg


def delay(m, en, value, n, name="dly", reset_less=True):
    """``value`` delayed by ``n`` enabled stages (see :func:`stage` for ``reset_less``)."""
    for k in range(n):
        value = stage(m, en, value, name=f"{name}_{k}", reset_less=reset_less)
    return value


def rated_advance(m, o, i, cycles_per_result: int):
    """The enable of a pipeline that stalls as a whole on its output ``o`` and advances at most
    once every ``cycles_per_result`` cycles (a free-running phase: the serial multiplier's rate);
    drives ``i.ready``. Returns ``(en, phase)`` (``phase`` None at rate 1)."""
    free = Signal(name="free")  # the output register can take a new value
    en = Signal(name="en")      # every stage advances
    m.d.comb += free.eq(~o.valid | o.ready)
    phase = None
    if cycles_per_result > 1:
        phase = Signal(range(cycles_per_result), name="phase")
        m.d.sync += phase.eq(Mux(phase == cycles_per_result - 1, 0, phase + 1))
        m.d.comb += en.eq(free & (phase == cycles_per_result - 1))
    else:
        m.d.comb += en.eq(free)
    m.d.comb += i.ready.eq(en)
    return en, phase


def rated_output(m, en, i, o, value, latency: int) -> None:
    """``o`` carries ``value`` with ``i.valid`` delayed by ``latency`` advances of a
    :func:`rated_advance` pipeline; an output taken between two advances is cleared, not repeated."""
    valid = delay(m, en, i.valid, latency - 1, name="valid", reset_less=False)
    o_valid = Signal(name="o_valid")
    with m.If(en):
        m.d.sync += o_valid.eq(valid)
    with m.Elif(o.ready):
        m.d.sync += o_valid.eq(0)
    m.d.comb += [o.payload.eq(value), o.valid.eq(o_valid)]
