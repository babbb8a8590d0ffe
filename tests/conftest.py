"""Fixtures shared by the whole suite.

Expensive artifacts (a quantized ResNet50) are built once per test run and shared by all
pytest-xdist workers through a file lock in the run's base temporary directory.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def shared_artifact(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``name`` in a directory every worker of this run sees, built by the first who asks."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = path.with_suffix(path.suffix + ".partial")
            build(tmp)
            tmp.rename(path)
    return path


@pytest.fixture(scope="session")
def resnet50_tflite(tmp_path_factory) -> Path:
    """ResNet50 featurizer (no top, global average pool, 2048 features), seeded random weights,
    full-int8 quantized with 4 random calibration images: the full-size structure."""

    def build(path: Path) -> None:
        from onda.host.quantizer import build_model, quantize, random_calibration

        model, preprocess = build_model("resnet50", weights="random", seed=0, include_top=False)
        path.write_bytes(quantize(model, random_calibration(model, preprocess, 4, seed=0), progress=lambda s: None))

    return shared_artifact(tmp_path_factory, "resnet50_seed0_int8.tflite", build)


@pytest.fixture(scope="session")
def densenet121_tflite(tmp_path_factory) -> Path:
    """DenseNet-121 as `onda quantize densenet121 --weights random --seed 0 --random-calibration 4`
    builds it (MUL by per-channel constants, CONCATENATION)."""

    def build(path: Path) -> None:
        from onda.host.quantizer import build_model, quantize, random_calibration

        model, preprocess = build_model("densenet121", weights="random", seed=0)
        path.write_bytes(quantize(model, random_calibration(model, preprocess, 4, seed=0), progress=lambda s: None))

    return shared_artifact(tmp_path_factory, "densenet121_seed0_int8.tflite", build)
