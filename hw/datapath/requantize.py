"""The requantizer: TFLite's conv / fully-connected epilogue on one int32 accumulator a cycle."""


from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .clamp import CLAMP_LATENCY, clamp_stages
from .mbqm import SERIAL_PHASES, MultiplyByQuantizedMultiplier, mbqm_latency
from .stall import rated_advance, rated_output, stage

__all__ = ["RequantLayout", "Requantizer", "mul_style_for"]


class RequantLayout(data.StructLayout):
    """One accumulator with its output channel's parameters.

    Fields
    ------
    acc : signed(32)
        ``sum((x - x_zp) * w)`` from the MAC array (int32, wrapping).
    bias : signed(32)
        The channel's int32 bias.
    multiplier : signed(32)
        The channel's Q0.31 multiplier ``M0`` (``quantize_multiplier``: 0 or in [2^30, 2^31)).
    shift : signed(6)
        The channel's power-of-two exponent, in [-31, 30].
    """

    def __init__(self):
        super().__init__({
            "acc": signed(32),
            "bias": signed(32),
            "multiplier": signed(32),
            "shift": signed(6),
        })


class Requantizer(wiring.Component):
    """``clamp(out_zp + MultiplyByQuantizedMultiplier(bias + acc, M0, shift), act_min, act_max)``.

    Bit-exact with :func:`onda.sim.golden.fixedpoint.requantize` (TFLite's
    ``reference_integer_ops::ConvPerChannel`` epilogue). Fully pipelined: one result per
    cycle, latency :attr:`latency` cycles when the output is never stalled. The per-channel
    parameters travel with each accumulator (the producer looks them up by channel); the
    per-layer ones are static ports, to be held constant while a layer runs.

    Parameters
    ----------
    mul_style : "dsp" | "lut" | "serial"
        Where the 32x32 multiply's four 16x16 partial products go: four DSP blocks, four LUT
        trees (``mbqm.product16``), or one LUT multiplier shared over ``SERIAL_PHASES``
        cycles (``mbqm.serial_products``; one result per that many cycles).

    Members
    -------
    i : In(stream.Signature(RequantLayout()))
        Accumulators with their channel's bias, multiplier and shift.
    o : Out(stream.Signature(signed(8)))
        The int8 outputs, in input order.
    out_zero_point, act_min, act_max : In(signed(8))
        The output zero point and the clamp range (a fused ReLU is a clamp).

    Handshake: the pipeline advances when ``~o.valid | o.ready``; ``i.ready`` is that
    condition, ``o.valid`` a register (it never depends on ``o.ready``). With
    ``mul_style="serial"`` it advances at most once every :attr:`cycles_per_result` cycles
    (``SERIAL_PHASES``): every stage holds between advances while one LUT multiplier forms the
    four partial products, and an output taken in between is cleared, not repeated.
    :attr:`latency` counts advances.
    """

    @staticmethod
    def latency_for(mul_style: str) -> int:
        """:attr:`latency` of a Requantizer of ``mul_style``, without making one."""
        return 2 + mbqm_latency(mul_style) + 1 + CLAMP_LATENCY

    def __init__(self, mul_style: str = "dsp"):
        self.mul_style = mul_style
        self.latency = self.latency_for(mul_style)
        self.cycles_per_result = SERIAL_PHASES if mul_style == "serial" else 1
        super().__init__({
            "i": In(stream.Signature(RequantLayout())),
            "o": Out(stream.Signature(signed(8))),
            "out_zero_point": In(signed(8)),
            "act_min": In(signed(8)),
            "act_max": In(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        en, phase = rated_advance(m, self.o, self.i, self.cycles_per_result)

        # S0: the input, registered before any arithmetic (it arrives through the producer's
        # lane multiplexer). S1: bias add (int32, wrapping, as TFLite's int32 accumulator).
        p = {f: stage(m, en, getattr(self.i.payload, f), name=f"in_{f}")
             for f in ("acc", "bias", "multiplier", "shift")}
        acc = stage(m, en, (p["acc"] + p["bias"])[:32].as_signed(), signed(32), name="acc_bias")
        mult = stage(m, en, p["multiplier"], name="mult0")
        shift = stage(m, en, p["shift"], name="shift0")
        m.submodules.mbqm = mbqm = MultiplyByQuantizedMultiplier(self.mul_style)
        m.d.comb += [mbqm.en.eq(en), mbqm.x.eq(acc), mbqm.multiplier.eq(mult), mbqm.shift.eq(shift)]
        if self.mul_style == "serial":
            m.d.comb += mbqm.phase.eq(phase)
        # Output zero point (33-bit: int32 + int8 cannot wrap), then the clamp.
        biased = stage(m, en, mbqm.o + self.out_zero_point, signed(34), name="zp_add")
        out = clamp_stages(m, en, biased, self.act_min, self.act_max)

        rated_output(m, en, self.i, self.o, out, self.latency)
        return m


def mul_style_for(cfg) -> str:
    """The requantizer that an engine configuration describes: ``requant_interval`` 1 is the
    one-a-cycle DSP requantizer, ``SERIAL_PHASES`` the serial one; the RTL has one requantizer
    (``requant_units`` 1). The configuration is what the cycle model charges, so the built
    datapath must follow it rather than a second setting."""
    if cfg.requant_units != 1:
        raise ValueError(f"engine config {cfg.name!r}: the datapath has one requantizer, "
                         f"requant_units is {cfg.requant_units}")
    styles = {1: "dsp", SERIAL_PHASES: "serial"}
    if cfg.requant_interval not in styles:
        raise ValueError(f"engine config {cfg.name!r}: no requantizer takes one accumulator every "
                         f"{cfg.requant_interval} cycles (built: {sorted(styles)})")
    return styles[cfg.requant_interval]
