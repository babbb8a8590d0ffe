"""The keys file is re-read when it changes, also when it is a Kubernetes Secret mounted as files: the kubelet
writes new contents into a new timestamped directory and swaps the ``..data`` symlink the key file's path goes
through (its AtomicWriter), so the file the path names changes without the path being written."""

from __future__ import annotations

import json
import os

from onda.host.service.keys import KeyStore, write_keys


def _secret_version(mount, version: str, keys: dict) -> None:
    """What the kubelet does on a Secret update: new directory, new ..data link, swapped in one rename."""
    d = mount / f"..{version}"
    d.mkdir()
    (d / "keys.json").write_text(json.dumps(keys))
    os.symlink(d.name, mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")
    if not (mount / "keys.json").is_symlink():
        os.symlink("..data/keys.json", mount / "keys.json")


def test_keys_follow_a_secret_mount_swapped_by_the_kubelet(tmp_path):
    mount = tmp_path / "keys"
    mount.mkdir()
    _secret_version(mount, "2026_12_03_10_00_00.1", {"primary": "k-one", "secondary": "k-two"})
    store = KeyStore(path=mount / "keys.json")
    assert store.check("Bearer k-one") is None and store.check("k-two") is None
    # same size, same second: only the file behind the link differs
    _secret_version(mount, "2026_12_03_10_00_00.2", {"primary": "k-ONE", "secondary": "k-two"})
    assert store.check("Bearer k-one") == "invalid key in the 'authorization' metadata"
    assert store.check("Bearer k-ONE") is None


def test_keys_file_rewritten_and_removed(tmp_path):
    path = tmp_path / "keys.json"
    write_keys(path, {"primary": "a", "secondary": ""})
    store = KeyStore(["static"], path)
    assert store.keys == ["static", "a"]
    write_keys(path, {"primary": "b", "secondary": "c"})
    assert store.keys == ["static", "b", "c"]
    path.unlink()
    assert store.keys == ["static"]
