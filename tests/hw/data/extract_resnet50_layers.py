"""Provenance of ``resnet50_layers.npz``: real quantization parameters of a quantized ResNet50.

Made with::

    cd /tmp && onda quantize resnet50 --weights random --seed 0 --random-calibration 4 -o /tmp/r50.tflite
    python tests/hw/data/extract_resnet50_layers.py /tmp/r50.tflite

Stores, from the first 3x3 convolution (conv2_block1_2_conv, 64 -> 64, SAME, ReLU), the weights of
the first ``CHANNELS`` output channels, its per-channel bias/multiplier/shift, zero points and clamp,
and a real 8x8x64 patch of its input activation (the golden model run on a random int8 image);
from every CONV_2D, the first ``CHANNELS`` channels' bias/multiplier/shift with the layer's output
zero point and clamp; from every ADD, its TFLite fixed-point parameters. All parameters come from
``onda.sim.golden.params`` (TFLite's Prepare), nothing is re-derived here.
"""

import sys
from pathlib import Path

import numpy as np

from onda.host.frontend import read_tflite
from onda.sim.golden import params as P
from onda.sim.golden.model import GoldenModel
from onda.sim.ir import OpKind

CHANNELS = 16
LAYER = "conv2_block1_2_conv"


def main(path: str) -> None:
    g = read_tflite(path)
    convs = [op for op in g.ops if op.kind == OpKind.CONV_2D]
    target = next(op for op in convs if LAYER in g.tensor(op.inputs[1]).name)
    x_in = g.tensor(g.inputs[0])
    rng = np.random.default_rng(0)
    image = rng.integers(-128, 128, (1, *x_in.shape[1:]), dtype=np.int8)
    values = GoldenModel(g).run_all([image])
    act = values[target.inputs[0]]
    p = P.gemm_params(g, target)
    out = {
        "tile_weights": p.weights[:CHANNELS].astype(np.int8),
        "tile_bias": p.bias[:CHANNELS].astype(np.int32),
        "tile_multiplier": p.multiplier[:CHANNELS].astype(np.int32),
        "tile_shift": p.shift[:CHANNELS].astype(np.int8),
        "tile_zp": np.array([p.in_zero_point, p.out_zero_point, p.act_min, p.act_max], dtype=np.int32),
        "tile_input": act[:, 20:28, 20:28, :].astype(np.int8),
        "tile_stride": np.array(target.attrs.stride, dtype=np.int32),
    }
    bias, mult, shift, layer = [], [], [], []
    for op in convs:
        q = P.gemm_params(g, op)
        n = min(CHANNELS, len(q.bias))
        bias.append(q.bias[:n]); mult.append(q.multiplier[:n]); shift.append(q.shift[:n])
        layer.append([q.in_zero_point, q.out_zero_point, q.act_min, q.act_max, n])
    out["conv_bias"] = np.concatenate(bias).astype(np.int32)
    out["conv_multiplier"] = np.concatenate(mult).astype(np.int32)
    out["conv_shift"] = np.concatenate(shift).astype(np.int8)
    out["conv_layer"] = np.array(layer, dtype=np.int32)  # x_zp, out_zp, act_min, act_max, channels
    adds = [P.add_params(g, op) for op in g.ops if op.kind == OpKind.ADD]
    out["add"] = np.array([[a.zp1, a.zp2, *a.rescale, a.out_zero_point, a.act_min, a.act_max]
                           for a in adds], dtype=np.int64)  # zp1 zp2 m1 s1 m2 s2 mo so out_zp min max
    dest = Path(__file__).with_name("resnet50_layers.npz")
    np.savez_compressed(dest, **out)
    print(f"{dest}: {dest.stat().st_size} bytes, {len(convs)} conv layers, {len(adds)} adds")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/r50.tflite")
