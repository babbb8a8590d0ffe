"""The onda compiler: IR -> engine program, weight image and memory map in a ``.onda`` container."""

from __future__ import annotations

from pathlib import Path

from onda.hw.config import EngineConfig, load_config
from onda.hw.container import Container

from .conv_tiling import TilingError
from .errors import CompileError
from .lower import compile_graph


def compile_tflite(path: str | Path, engine: str | Path | EngineConfig, progress: bool = False) -> Container:
    """Compile a .tflite int8 model for an engine configuration (name, YAML path or config)."""
    from onda.host.frontend import read_tflite

    cfg = engine if isinstance(engine, EngineConfig) else load_config(engine)
    path = Path(path)
    graph = read_tflite(path)
    return compile_graph(graph, cfg, source=path.read_bytes(), progress=progress)


__all__ = ["CompileError", "TilingError", "compile_graph", "compile_tflite"]
