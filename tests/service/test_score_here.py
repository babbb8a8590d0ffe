"""`onda score PIPELINE.zip IMAGE...`: a pipeline scored in this process, without a service, against the
expected answers computed apart from it (conftest's Reference: LiteRT's reference kernels, then Keras)."""

import re

import numpy as np
import pytest

from .conftest import CLASSES


@pytest.mark.parametrize("backend", ["golden", "emulator"])
def test_score_a_pipeline_zip_here(pipeline_zips, reference, photos, tmp_path, capsys, backend):
    from onda.host.cli import main

    cat, bad = tmp_path / "cat.jpg", tmp_path / "bad.jpg"
    cat.write_bytes(photos["chelsea.jpg"])
    bad.write_bytes(b"not an image at all")
    rc = main(["score", str(pipeline_zips["tiny"]), str(bad), str(cat), "--backend", backend])
    out, err = capsys.readouterr()
    assert rc == 1  # the corrupt image is reported and the next one is still scored
    assert "bad.jpg" in err and f"cat.jpg: " in out and f"here on {backend}" in out
    rows = re.findall(r"^\s+([0-9.]+)\s+(\d+)\s+label-(\d+)$", out, flags=re.M)
    assert len(rows) == 5
    want = reference.scores_images([photos["chelsea.jpg"]])[0]
    best = np.argsort(-want, kind="stable")[:5]
    assert [int(i) for _, i, _ in rows] == list(best) and all(i == j for _, i, j in rows)
    np.testing.assert_allclose([float(p) for p, _, _ in rows], want[best], atol=1e-4)
    assert want.shape == (CLASSES,)


def test_score_here_refuses_a_broken_zip(tmp_path, capsys):
    from onda.host.cli import main

    z = tmp_path / "broken.zip"
    z.write_bytes(b"PK\x03\x04 truncated")
    assert main(["score", str(z), "x.jpg"]) == 1
    assert "broken.zip" in capsys.readouterr().err
