"""Access keys: a primary and a secondary, checked on every call whenever any is configured (TLS or not).

A key arrives in the ``authorization`` metadata, raw (Brainwave's first client) or as ``Bearer <key>``
(its later client). Keys live in a small JSON file the workspace rewrites when a key is regenerated; the
server notices the change on the next call (a new inode, modification time or size of the file the path
leads to), so regeneration needs no restart. That covers a Kubernetes Secret mounted as files too: the kubelet
writes the new keys into a new directory and swaps the ``..data`` symlink the file's path goes through.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path

KEY_NAMES = ("primary", "secondary")


def new_key() -> str:
    return secrets.token_urlsafe(32)


def write_keys(path: str | Path, keys: dict[str, str]) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f)
    tmp.replace(path)


class KeyStore:
    """Keys from a list, or from a JSON file ({"primary": ..., "secondary": ...}) re-read when it changes."""

    def __init__(self, keys: list[str] | None = None, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._static = [k for k in (keys or []) if k]
        self._file_keys: list[str] = []
        self._mtime = None
        self._reload()

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            st = self.path.stat()  # follows symlinks: the file a Secret's ..data link leads to now
            mtime = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            self._file_keys, self._mtime = [], None
            return
        if mtime != self._mtime:
            data = json.loads(self.path.read_text())
            self._file_keys = [data[k] for k in KEY_NAMES if data.get(k)]
            self._mtime = mtime

    @property
    def keys(self) -> list[str]:
        self._reload()
        return self._static + self._file_keys

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, authorization: str | None) -> str | None:
        """None when the call may proceed, else the reason it may not (for UNAUTHENTICATED)."""
        keys = self.keys
        if not keys:
            return None
        if not authorization:
            return "missing key: send it in the 'authorization' metadata ('<key>' or 'Bearer <key>')"
        token = authorization.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        ok = False
        for k in keys:  # compare with every key, in constant time each
            ok |= hmac.compare_digest(token.encode(), k.encode())
        return None if ok else "invalid key in the 'authorization' metadata"
