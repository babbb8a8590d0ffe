"""The activation clamp (``fixedpoint.clamp``) as enabled pipeline stages."""

from __future__ import annotations

from amaranth.hdl import Mux, signed

from .stall import stage

__all__ = ["CLAMP_LATENCY", "clamp_stages"]

CLAMP_LATENCY = 2


def clamp_stages(m, en, x, lo, hi, name="clamp"):
    """``min(max(x, lo), hi)`` (``fixedpoint.clamp``) to int8 in ``CLAMP_LATENCY`` stages: both
    comparisons of the wide ``x`` in parallel, then an 8-bit select (one carry chain per stage)."""
    below = stage(m, en, x < lo, name=f"{name}_below")
    above = stage(m, en, x > hi, name=f"{name}_above")
    low8 = stage(m, en, x[:8].as_signed(), signed(8), name=f"{name}_x")
    lo_r = stage(m, en, Mux(lo > hi, hi, lo), signed(8), name=f"{name}_lo")
    hi_r = stage(m, en, hi, signed(8), name=f"{name}_hi")
    return stage(m, en, Mux(below, lo_r, Mux(above, hi_r, low8)), signed(8), name=f"{name}_out")
