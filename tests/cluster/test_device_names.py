"""What needs no cluster: the resource names devices are placed by, the ``--cluster`` address check, and a board
actor's claim on one of its node's boards (an exclusive flock per URL, released when the holder dies)."""

from __future__ import annotations

import pytest


def test_resource_names_follow_the_documented_scheme():
    from onda.host.cluster.resources import board_resource, device_resource

    assert [device_resource(b) for b in ("emulator", "golden", "rtl")] == ["emulator", "golden", "rtl"]
    assert board_resource("ulx3s-85f") == "board_ulx3s_85f" and board_resource("icebreaker") == "board_icebreaker"
    assert device_resource("board", "board_icebreaker") == "board_icebreaker"
    with pytest.raises(ValueError, match="--device-resource board_<engine>"):
        device_resource("board")
    for bad in ("CPU", "board-ulx3s", "1x", "memory"):
        with pytest.raises(ValueError, match="plain identifier"):
            device_resource("emulator", bad)


@pytest.mark.parametrize("address", ["auto", "ray://10.0.0.5:10001", "head.example:6379", "[::1]:6379"])
def test_cluster_addresses_accepted(address):
    from onda.host.cluster.connect import check_address

    assert check_address(address) == address


@pytest.mark.parametrize("address", ["", "head", "ray://head", "http://head:6379", "head:0", "head:70000",
                                     "ray://head:port"])
def test_cluster_addresses_refused(address):
    from onda.host.cluster.connect import check_address
    from onda.host.errors import ClusterError

    with pytest.raises(ClusterError, match="expected ray://HOST:PORT"):
        check_address(address)


def test_board_actors_claim_one_board_each_and_a_released_one_is_claimed_again(tmp_path, monkeypatch):
    from onda.host.cluster.actor import claim_device

    monkeypatch.setenv("ONDA_DEVICES", "/dev/ttyUSB0, socket://127.0.0.1:4000")
    first, f1 = claim_device(tmp_path)
    second, f2 = claim_device(tmp_path)
    assert (first, second) == ("/dev/ttyUSB0", "socket://127.0.0.1:4000")
    with pytest.raises(RuntimeError, match="every board of ONDA_DEVICES=.* is taken by another actor"):
        claim_device(tmp_path)
    f1.close()  # the actor holding the first board died
    again, f3 = claim_device(tmp_path)
    assert again == "/dev/ttyUSB0"
    f2.close()
    f3.close()
    monkeypatch.setenv("ONDA_DEVICES", "")
    with pytest.raises(RuntimeError, match="needs its node's boards in ONDA_DEVICES"):
        claim_device(tmp_path)
