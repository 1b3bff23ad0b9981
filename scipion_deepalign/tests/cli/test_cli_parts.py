"""``deepalign align --part I/N`` / ``--jobs N`` and ``deepalign merge``: parts give the
poses of one run, bit for bit; broken sets are refused naming the files; done parts are
not recomputed."""
import os

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.io import read_particles_star, write_mrc, write_particles
from scipion_deepalign.core.simulate import make_phantom, simulate_particles

PIXEL_A = 4.0
N = 7


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts_cli")
    volume = make_phantom(16, seed=0)
    images, parts = simulate_particles(volume, N, pixel_size_a=PIXEL_A, snr=np.inf, ctf=True,
                                       max_shift_px=1.0, seed=3)
    parts.angles_deg = parts.shifts_px = None
    write_particles(folder / "particles.mrcs", folder / "in.star", images, parts)
    write_mrc(folder / "ref.mrc", volume, pixel_size_a=PIXEL_A)
    assert _align(folder, "--out", str(folder / "whole.star")) == 0
    return folder


def _align(folder, *extra):
    return main(["align", "--particles", str(folder / "in.star"), "--volume",
                 str(folder / "ref.mrc"), "--global", "--step", "30", "--max-shift", "1",
                 "--device", "cpu", *extra])


def _same_poses(a, b):
    a, b = read_particles_star(a), read_particles_star(b)
    assert a.image_names == b.image_names
    np.testing.assert_array_equal(a.angles_deg, b.angles_deg)
    np.testing.assert_array_equal(a.shifts_px, b.shifts_px)
    np.testing.assert_array_equal(a.extra["deepalignScore"], b.extra["deepalignScore"])


def _parts(folder, name, n):
    paths = [str(folder / name / f"p{i}.star") for i in range(1, n + 1)]
    for i, path in enumerate(paths, 1):
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            assert _align(folder, "--part", f"{i}/{n}", "--out", path) == 0
    return paths


def test_three_parts_merged_equal_one_run(folder):
    paths = _parts(folder, "three", 3)
    assert [len(read_particles_star(p)) for p in paths] == [2, 2, 3]
    out = folder / "merged.star"
    assert main(["merge", "--inputs", *paths[::-1], "--out", str(out)]) == 0
    _same_poses(out, folder / "whole.star")


def test_jobs_run_parts_and_merge(folder):
    out = folder / "jobs.star"
    assert _align(folder, "--jobs", "2", "--out", str(out)) == 0
    _same_poses(out, folder / "whole.star")
    assert sorted(os.listdir(folder / "jobs_parts")) == [
        f"part_00{i}_of_002.{kind}" for i in (1, 2) for kind in ("star", "summary.json")]


def test_done_part_is_not_recomputed(folder, capsys):
    path = _parts(folder, "three", 3)[1]
    before = os.stat(path).st_mtime_ns
    assert _align(folder, "--part", "2/3", "--out", path) == 0
    assert "part 2/3 already done, not recomputed" in capsys.readouterr().out
    assert os.stat(path).st_mtime_ns == before


def test_killed_jobs_run_resumes(folder, capsys):
    out = folder / "resume.star"
    kept = os.path.join(folder, "resume_parts", "part_001_of_002.star")
    _parts(folder, "resume_src", 2)
    os.makedirs(os.path.dirname(kept))
    os.replace(folder / "resume_src" / "p1.star", kept)  # as left by a killed run
    before = os.stat(kept).st_mtime_ns
    assert _align(folder, "--jobs", "2", "--out", str(out)) == 0
    assert os.stat(kept).st_mtime_ns == before
    _same_poses(out, folder / "whole.star")


def test_part_made_with_other_options_is_recomputed(folder, capsys):
    path = str(folder / "options_part.star")
    assert _align(folder, "--part", "1/2", "--out", path) == 0
    capsys.readouterr()
    assert _align(folder, "--part", "1/2", "--out", path, "--psi-step", "20") == 0
    assert "already done" not in capsys.readouterr().out
    assert _align(folder, "-v", "--part", "1/2", "--out", path, "--psi-step", "20") == 0
    assert "already done" in capsys.readouterr().out  # verbosity changes no result


def test_part_of_another_input_is_recomputed(folder):
    path = folder / "other_part.star"
    assert _align(folder, "--part", "1/2", "--out", str(path)) == 0
    assert _align(folder, "--part", "2/2", "--out", str(path)) == 0
    assert len(read_particles_star(path)) == 4


def test_merge_refuses_a_missing_part(folder, capsys):
    paths = _parts(folder, "three", 3)
    code = main(["merge", "--inputs", paths[0], paths[2], "--out", str(folder / "x.star")])
    err = capsys.readouterr().err
    assert code == 2
    assert "part(s) 2 of 3 missing" in err and "p1.star" in err and "p3.star" in err
    assert not os.path.exists(folder / "x.star")


@pytest.mark.parametrize("extra, message", [
    (["--part", "4/3"], "--part: part I/N needs 1 <= I <= N"),
    (["--part", "1/9"], "--part 1/9: 9 parts for 7 particles"),
    (["--part", "1/2", "--jobs", "2"], "--part runs one part"),
])
def test_bad_part_options(folder, capsys, extra, message):
    assert _align(folder, *extra, "--out", str(folder / "bad.star")) == 2
    assert message in capsys.readouterr().err


def test_predict_in_parts_equals_one_run(tmp_path):
    volume = make_phantom(16, symmetry="d2", seed=0)
    images, parts = simulate_particles(volume, 30, pixel_size_a=PIXEL_A, snr=1.0, seed=2)
    write_particles(tmp_path / "all.mrcs", tmp_path / "all.star", images, parts)
    model = str(tmp_path / "model")
    assert main(["train", "--particles", str(tmp_path / "all.star"), "--out", model,
                 "--training-source", "particles", "--network", "regional",
                 "--symmetry", "d2", "--spacing", "90", "--epochs", "1", "--batch-size", "16",
                 "--positives", "16", "--min-particles", "1", "--threads", "1"]) == 0
    predict = ["predict", "--particles", str(tmp_path / "all.star"), "--model", model,
               "--top-k", "2", "--threads", "1"]
    assert main([*predict, "--out", str(tmp_path / "whole.star")]) == 0
    paths = [str(tmp_path / f"p{i}.star") for i in (1, 2)]
    for i, path in enumerate(paths, 1):
        assert main([*predict, "--part", f"{i}/2", "--out", path]) == 0
    assert main(["merge", "--inputs", *paths, "--out", str(tmp_path / "merged.star")]) == 0
    whole = read_particles_star(tmp_path / "whole.star")
    merged = read_particles_star(tmp_path / "merged.star")
    assert merged.image_names == whole.image_names
    for column in ("deepalignRegion1", "deepalignRegion2"):
        np.testing.assert_array_equal(merged.extra[column], whole.extra[column])
    # the network's batches differ between a part and the whole: allow float rounding
    np.testing.assert_allclose(merged.extra["deepalignRegionProb1"],
                               whole.extra["deepalignRegionProb1"], atol=1e-5)
