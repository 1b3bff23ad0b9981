"""Atomic writes: outputs get the umask's permissions, not mkstemp's 0600."""
import json
import os
import stat

import numpy as np
import pytest

from scipion_deepalign.core.io import write_mrc, write_particles_star
from scipion_deepalign.core.particles import Particles
from scipion_deepalign.core.runtime.atomic import atomic_open, current_umask, default_file_mode


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing(umask_022):
    assert current_umask() == 0o022 and current_umask() == 0o022
    assert default_file_mode() == 0o644


def test_star_mrc_json_are_0644_under_umask_022(tmp_path, umask_022):
    write_particles_star(tmp_path / "p.star",
                         Particles(image_names=["1@a.mrcs"], pixel_size_a=1.0, box_px=16))
    write_mrc(tmp_path / "m.mrc", np.zeros((4, 4, 4)), pixel_size_a=1.0)
    with atomic_open(tmp_path / "c.json") as handle:
        json.dump({"a": 1}, handle)
    for name in ("p.star", "m.mrc", "c.json"):
        assert _mode(tmp_path / name) == 0o644, name
    assert sorted(os.listdir(tmp_path)) == ["c.json", "m.mrc", "p.star"]


def test_stricter_umask_is_respected(tmp_path):
    old = os.umask(0o077)
    try:
        write_mrc(tmp_path / "m.mrc", np.zeros((4, 4)), pixel_size_a=None)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.mrc") == 0o600


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "x.json") as handle:
            handle.write("{")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
