"""CONCATENATION by memory layout: which inputs become channel slices of the output and which are
copied, and the batch-norm constants of a dense block as a broadcast operand (the values are checked
against BUILTIN_REF by test_small_nets.py)."""

import pytest

from onda.host.compiler import compile_tflite
from onda.host.runtime.emulator import EmulatedModel

from ..numeric.nets import quantized_case


def _model(tmp_path, case, engine="ulx3s-85f"):
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(quantized_case(case))
    return EmulatedModel(compile_tflite(path, engine), case)


@pytest.mark.parametrize("case", ["dense_block_mul_concat", "dense_block_mul_add_concat"])
def test_dense_block_lives_in_one_buffer(case, tmp_path):
    """Every layer of a dense block appends its channels to one buffer: no concatenation copies,
    and each conv writing a slice stores with the block's pixel stride."""
    m = _model(tmp_path, case)
    concats = [layer for layer in m.layers if layer["kind"] == "CONCATENATION"]
    assert len(concats) == 2 and all(layer["tiling"] == "in place" for layer in concats)
    assert all(layer["first"] > layer["last"] for layer in concats)  # no instruction at all
    outer = m.tensors[concats[-1]["output"]]
    slices = [t for t in m.tensors.values() if t.get("pixel_stride")]
    assert slices and all(t["pixel_stride"] == outer["shape"][-1] for t in slices)
    assert all(outer["addr"] <= t["addr"] < outer["addr"] + outer["shape"][-1] for t in slices)
    muls = [layer for layer in m.layers if layer["kind"] == "MUL"]
    assert muls and all("constant operand" in layer["tiling"] for layer in muls)


def test_input_read_by_a_same_conv_is_copied(tmp_path):
    """The first concatenation's first input is also read by a SAME conv (its DMA pads rows, so it
    cannot read a channel slice): copied; everything else is in place."""
    m = _model(tmp_path, "concat_nested_views")
    tilings = [layer["tiling"] for layer in m.layers if layer["kind"] == "CONCATENATION"]
    assert tilings == ["1 of 2 in place, 1 copied", "in place", "in place"]
