"""A thin synthesis top for the datapath: buffers -> ConvTile, fed by an LFSR, folded to a LED.

Nothing here is meant to compute anything useful; it keeps every part of the datapath alive
through synthesis (all inputs come from registers the tools cannot predict, every output
bit reaches a pin) so the resource and timing numbers are those of the real blocks:
an activation :class:`~onda.hw.datapath.buffers.DoubleBuffer` and a weight
:class:`~onda.hw.datapath.buffers.DoubleBuffer` (block RAM), the
:class:`~onda.hw.datapath.conv_tile.ConvTile` (``lanes x width`` MACs, requantizer), all
in one clock domain.
"""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, wiring

from onda.hw.datapath.buffers import DoubleBuffer
from onda.hw.datapath.conv_tile import ChannelParamLayout, ConvTile

__all__ = ["DatapathSynthTop"]


class DatapathSynthTop(wiring.Component):
    """Board-agnostic synthesis top; ``elaborate`` uses the platform's LEDs and a button.

    Parameters
    ----------
    lanes, width : int
        The MAC array's dimensions.
    depth : int
        Words per buffer bank (activations: ``width`` int8 a word; weights: ``lanes x width``).
    mul_style : "dsp" | "lut"
        The requantizer's multiplier style.
    lut_lanes : int
        MAC-array lanes built in LUTs.
    """

    def __init__(self, lanes: int, width: int, depth: int = 512, mul_style: str = "dsp",
                 lut_lanes: int = 0):
        self.lanes, self.width, self.depth, self.mul_style = lanes, width, depth, mul_style
        self.lut_lanes = lut_lanes
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        lanes, width, depth = self.lanes, self.width, self.depth
        m.submodules.tile = tile = ConvTile(lanes, width, mul_style=self.mul_style, lut_lanes=self.lut_lanes)
        xshape = data.ArrayLayout(signed(8), width)
        wshape = data.ArrayLayout(data.ArrayLayout(signed(8), width), lanes)
        m.submodules.abuf = abuf = DoubleBuffer(xshape, depth)
        m.submodules.wbuf = wbuf = DoubleBuffer(wshape, depth)

        # A 32-bit Galois LFSR, widened by a shift register to feed the widest word.
        lfsr = Signal(32, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], 0) ^ (0xA3000000 * lfsr[0]))
        wide = Signal(wshape.size + xshape.size + 64)
        m.d.sync += wide.eq(Cat(lfsr, wide[:-32]))

        load = Signal()
        if platform is not None:
            # Two-register synchronizer: the button is asynchronous to the clock.
            meta = Signal()
            m.d.sync += [meta.eq(platform.request("button", 0).i), load.eq(meta)]
        waddr = Signal(range(depth))
        m.d.sync += waddr.eq(waddr + 1)
        m.d.comb += [
            abuf.w.valid.eq(load), abuf.w.payload.addr.eq(waddr), abuf.w.payload.data.eq(wide[:xshape.size]),
            wbuf.w.valid.eq(load), wbuf.w.payload.addr.eq(waddr),
            wbuf.w.payload.data.eq(wide[xshape.size:xshape.size + wshape.size]),
            abuf.swap.eq(load & (waddr == 0)), wbuf.swap.eq(load & (waddr == 0)),
        ]
        # Read both banks in lockstep: 16-beat dot products.
        raddr = Signal(range(depth))
        m.d.comb += [abuf.raddr.valid.eq(~load), wbuf.raddr.valid.eq(~load),
                     abuf.raddr.payload.eq(raddr), wbuf.raddr.payload.eq(raddr)]
        with m.If(abuf.raddr.valid & abuf.raddr.ready & wbuf.raddr.ready):
            m.d.sync += raddr.eq(raddr + 1)
        both = abuf.rdata.valid & wbuf.rdata.valid
        beat_first = Signal()
        beat_last = Signal()
        rcount = Signal(4)
        m.d.comb += [beat_first.eq(rcount == 0), beat_last.eq(rcount == 15)]
        m.d.comb += [
            tile.i.valid.eq(both),
            tile.i.payload.x.eq(abuf.rdata.payload), tile.i.payload.w.eq(wbuf.rdata.payload),
            tile.i.payload.first.eq(beat_first), tile.i.payload.last.eq(beat_last),
            abuf.rdata.ready.eq(tile.i.ready & both), wbuf.rdata.ready.eq(tile.i.ready & both),
        ]
        with m.If(tile.i.valid & tile.i.ready):
            m.d.sync += rcount.eq(rcount + 1)
        # Layer and channel parameters from the LFSR, written while loading.
        playout = ChannelParamLayout(lanes)
        cfg = Signal(32)
        with m.If(load):
            m.d.sync += cfg.eq(lfsr)
        m.d.comb += [
            tile.params.valid.eq(load), tile.params.payload.eq(wide[-playout.size:]),
            tile.x_zp.eq(cfg[0:8]), tile.out_zero_point.eq(cfg[8:16]),
            tile.act_min.eq(cfg[16:24]), tile.act_max.eq(cfg[24:32]),
        ]
        # Outputs: XOR-fold into the LEDs; ready toggles so back-pressure logic stays.
        fold = Signal(8)
        m.d.comb += tile.o.ready.eq(lfsr[3] | lfsr[7])
        with m.If(tile.o.valid & tile.o.ready):
            m.d.sync += fold.eq(fold ^ tile.o.payload)
        if platform is not None:
            leds = [platform.request("led", n) for n in range(8) if _has(platform, "led", n)]
            for n, led in enumerate(leds):
                m.d.comb += led.o.eq(fold[n] if n < len(leds) - 1 else fold[n:].xor())
        return m


def _has(platform, name, number):
    try:
        platform.lookup(name, number)
        return True
    except Exception:
        return False
