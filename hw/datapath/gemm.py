"""The MAC array: ``lanes x width`` int8 multipliers feeding ``lanes`` int32 accumulators."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import DSP_LATENCY, dsp_multiply
from .stall import delay, stage

__all__ = ["MacArray", "MacBeatLayout", "mac_array_latency", "tree_stages"]


class MacBeatLayout(data.StructLayout):
    """One beat of the MAC array's input: a K-slice of one activation vector and of ``lanes``
    weight rows.

    Fields
    ------
    x : ArrayLayout(signed(8), width)
        ``width`` int8 activations (the K-slice of one im2col row).
    w : ArrayLayout(ArrayLayout(signed(8), width), lanes)
        ``w[l][k]``: the weight of output channel ``l`` for the same ``width`` K-elements.
    first : 1
        This beat starts a new dot product: the accumulators restart from its products.
    last : 1
        This beat ends the dot product: the ``lanes`` accumulators are emitted after it.
    """

    def __init__(self, lanes: int, width: int):
        super().__init__({
            "x": data.ArrayLayout(signed(8), width),
            "w": data.ArrayLayout(data.ArrayLayout(signed(8), width), lanes),
            "first": 1,
            "last": 1,
        })


def tree_stages(width: int) -> int:
    """Register stages of the adder tree that sums a lane's ``width`` products."""
    return max(1, ((width - 1).bit_length() + 1) // 2)


def mac_array_latency(width: int) -> int:
    """Cycles from a beat in to the accumulators out, when not stalled."""
    return 3 + DSP_LATENCY + 1 + tree_stages(width)


class MacArray(wiring.Component):
    """``lanes`` dot products of ``width`` int8 pairs a cycle, accumulated in int32.

    For each lane ``l`` it computes ``acc[l] = sum_k (x[k] - x_zp) * w[l][k]`` over the beats
    from ``first`` to ``last`` (TFLite's ``acc = sum((x - x_zp) * w)``, bias excluded: the
    requantizer adds it, which is the same int32 sum), then emits all ``lanes`` accumulators in
    one output beat.

    Zero point: the activation's zero point is subtracted before the multiply, so each
    multiplier sees a 9-bit signed ``x - x_zp`` (in [-255, 255]) times an 8-bit signed
    weight, a 17-bit product. That fits one MULT18X18D (ECP5) or SB_MAC16 (iCE40) per MAC, it
    is exact for padding (padding holds ``x_zp``, so contributes 0) and needs no per-output
    correction term ``x_zp * sum(w)`` to be precomputed, stored and added. Weights are
    symmetric (zero point 0), as TFLite's int8 spec requires, so no weight correction exists.

    Parameters
    ----------
    lanes : int
        Output channels computed in parallel.
    width : int
        K-elements consumed per cycle per lane.
    acc_width : int
        Accumulator width; 32 is TFLite's int32 (sums wrap modulo ``2**acc_width``).
    lut_lanes : int
        Lanes whose multipliers are shift-and-add trees in LUTs rather than DSPs, for devices
        with fewer DSP blocks than MACs (same registers, same latency).

    Members
    -------
    i : In(stream.Signature(MacBeatLayout(lanes, width)))
    o : Out(stream.Signature(ArrayLayout(signed(acc_width), lanes)))
        One beat per ``last`` input beat: the finished accumulators.
    x_zp : In(signed(8))
        The input activation's zero point (static while a layer runs).

    Pipeline: input register, operand register (``x - x_zp``), the multiplier's own operand and
    product registers (:func:`~.dsp.dsp_multiply`: inside the DSP block), a fabric product
    register, adder tree registered every two levels, accumulator; it advances on ``~o.valid | o.ready`` (``i.ready``), so one beat a cycle.
    """

    def __init__(self, lanes: int = 8, width: int = 16, acc_width: int = 32, lut_lanes: int = 0):
        for name, v in (("lanes", lanes), ("width", width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"MacArray: {name} must be a positive integer, got {v!r}")
        if not isinstance(acc_width, int) or acc_width < 17:
            raise ValueError(f"MacArray: acc_width must be an integer >= 17, got {acc_width!r}")
        if not isinstance(lut_lanes, int) or not 0 <= lut_lanes <= lanes:
            raise ValueError(f"MacArray: lut_lanes must be an integer in 0..lanes, got {lut_lanes!r}")
        self.lanes, self.width, self.acc_width, self.lut_lanes = lanes, width, acc_width, lut_lanes
        self.tree_stages = tree_stages(width)
        self.latency = mac_array_latency(width)
        super().__init__({
            "i": In(stream.Signature(MacBeatLayout(lanes, width))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(acc_width), lanes))),
            "x_zp": In(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        p = self.i.payload

        # S0: the input beat, registered before any arithmetic (a block RAM's output has a
        # long clock-to-out: it must feed a register, not a carry chain).
        x0 = [stage(m, en, p.x[k], signed(8), name=f"x0_{k}") for k in range(self.width)]
        w0 = [[stage(m, en, p.w[l][k], signed(8), name=f"w0_{l}_{k}") for k in range(self.width)]
              for l in range(self.lanes)]
        ctl = stage(m, en, p.first | (p.last << 1) | (self.i.valid << 2), 3, name="ctl0",
                    reset_less=False)
        # S1: operands. x - x_zp as 9-bit signed.
        xs = [stage(m, en, x0[k] - self.x_zp, signed(9), name=f"xs{k}") for k in range(self.width)]
        ws = [[stage(m, en, w0[l][k], signed(8), name=f"w{l}_{k}") for k in range(self.width)]
              for l in range(self.lanes)]
        ctl = stage(m, en, ctl, name="ctl1", reset_less=False)
        # S2, S3: the multiplier's operand and product registers (inside MULT18X18D / SB_MAC16);
        # the first `lut_lanes` lanes' products from LUTs, with the same registers.
        def product(l, k):
            name = f"m{l}_{k}"
            if l < self.lut_lanes:
                a = stage(m, en, xs[k], name=f"{name}_a")
                b = stage(m, en, ws[l][k], name=f"{name}_b")
                return stage(m, en, product_lut_signed(a, b), signed(17), name=f"{name}_p")
            return dsp_multiply(m, en, xs[k], ws[l][k], platform, name)
        # S4: the products leave the DSP column into fabric registers before any addition.
        sums = [[stage(m, en, product(l, k), signed(17), name=f"p{l}_{k}")
                 for k in range(self.width)] for l in range(self.lanes)]
        ctl = delay(m, en, ctl, DSP_LATENCY + 1, name="ctl_mul", reset_less=False)
        # Adder tree: two levels of pairwise sums per registered stage.
        level = 0
        while len(sums[0]) > 1:
            nxt = []
            for l, row in enumerate(sums):
                pairs = [row[k] + row[k + 1] if k + 1 < len(row) else row[k] for k in range(0, len(row), 2)]
                nxt.append(pairs)
            level += 1
            if level % 2 == 0 or len(nxt[0]) == 1:
                nxt = [[stage(m, en, v, name=f"t{level}_{l}_{k}") for k, v in enumerate(row)]
                       for l, row in enumerate(nxt)]
            sums = nxt
        if self.width > 1:
            ctl = delay(m, en, ctl, self.tree_stages, name="ctl_tree", reset_less=False)
        else:
            sums = [[stage(m, en, row[0], name=f"t_{l}")] for l, row in enumerate(sums)]
            ctl = stage(m, en, ctl, name="ctl_tree", reset_less=False)
        first, last, valid = ctl[0], ctl[1], ctl[2]

        # Accumulate; emit on the last beat.
        acc = [Signal(signed(self.acc_width), name=f"acc{l}", reset_less=True) for l in range(self.lanes)]
        o_valid = Signal()
        with m.If(en):
            m.d.sync += o_valid.eq(valid & last)
            with m.If(valid):
                for l in range(self.lanes):
                    new = Signal(signed(self.acc_width), name=f"acc_next{l}")
                    m.d.comb += new.eq(sums[l][0] + Mux(first, 0, acc[l]))
                    m.d.sync += acc[l].eq(new)
                    with m.If(last):
                        m.d.sync += self.o.payload[l].eq(new)
        m.d.comb += self.o.valid.eq(o_valid)
        return m


def product_lut_signed(x, w):
    """``x * w`` for small signed operands as a shift-and-add tree (no ``$mul`` cell, so no DSP):
    rows ``w[i] * (x << i)``, the sign bit's row subtracted. Combinational."""
    n = len(w)
    width = len(x) + n
    rows = [Mux(w[i], (x << i), 0) for i in range(n - 1)]
    rows.append(-Mux(w[n - 1], (x << (n - 1)), 0))
    while len(rows) > 1:
        rows = [rows[k] + rows[k + 1] if k + 1 < len(rows) else rows[k] for k in range(0, len(rows), 2)]
    return rows[0][:width].as_signed()
