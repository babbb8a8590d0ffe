"""C++ compiled on first use for this machine's CPU, cached by content: what the Verilator harness
and the golden model's int8 GEMM share.

A library is keyed by the SHA-256 of its source, the compiler's version, the flags and the CPU's
instruction sets (``cpu_flags``: code built with -march=native runs only where those exist), and
kept in ``$ONDA_CACHE`` or ``~/.cache/onda``. Concurrent builders (pytest workers) wait on a lock
and the result is renamed into place whole, so a half-written library is never loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


class NativeBuildError(RuntimeError):
    """The compiler failed or is missing; the message says which and how to fix it."""


def cache_root(kind: str) -> Path:
    return Path(os.environ.get("ONDA_CACHE", Path.home() / ".cache" / "onda")) / kind


def cpu_flags() -> str:
    """The instruction sets of this machine's CPU (the ``flags`` line of /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    import platform

    return platform.machine() + platform.processor()


def compiler() -> str | None:
    """The C++ compiler's path (``$CXX`` if it names one), or None (``make setup`` installs g++ from Debian)."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"


def shared_library(source: Path, flags: list[str], kind: str, quiet: bool = False) -> Path:
    """``source`` compiled with ``flags`` into a shared library, built unless cached; its path."""
    cxx = compiler()
    if cxx is None:
        raise NativeBuildError("no C++ compiler (apt-get install g++, or run make setup)")
    text = source.read_bytes()
    h = hashlib.sha256()
    for part in (text, _version(cxx).encode(), " ".join(flags).encode(), cpu_flags().encode()):
        h.update(part + b"\0")
    out = cache_root(kind) / f"{source.stem}-{h.hexdigest()[:16]}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        if not quiet:
            print(f"onda: compiling {source.name} for this CPU (once; cached in {out.parent})...", file=sys.stderr,
                  flush=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        proc = subprocess.run([cxx, *flags, "-shared", "-fPIC", "-o", str(tmp), str(source)], capture_output=True,
                              text=True)
        if proc.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
            raise NativeBuildError(f"compiling {source.name} failed:\n{tail}")
        tmp.rename(out)
    return out
