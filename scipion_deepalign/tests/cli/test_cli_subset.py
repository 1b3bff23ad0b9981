"""`deepalign subset` and core.subset: sizes, seeds, view balance, readable outputs, errors."""
import numpy as np
import pytest

from scipion_deepalign import cli
from scipion_deepalign.core.io import load_images, read_particles_star, write_particles_star
from scipion_deepalign.core.particles import Particles, split_image_name
from scipion_deepalign.core.regions import assign_regions, region_centres_deg
from scipion_deepalign.core.subset import balanced_subset, random_subset, subset_size


def _skewed_angles(n=600, seed=0):
    """Half the particles near the north pole (a preferred view), the rest uniform."""
    rng = np.random.default_rng(seed)
    angles = np.column_stack([rng.uniform(0, 360, n), np.degrees(np.arccos(rng.uniform(-1, 1, n))),
                              rng.uniform(0, 360, n)])
    angles[: n // 2, 1] = rng.uniform(0, 5, n // 2)
    return angles


def test_random_subset_is_distinct_sorted_and_seeded():
    rows = random_subset(100, 10, seed=3)
    assert len(np.unique(rows)) == 10 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, random_subset(100, 10, seed=3))
    assert not np.array_equal(rows, random_subset(100, 10, seed=4))
    assert subset_size(300, 0.1) == 30 and subset_size(5, 0.01) == 1


def test_balanced_subset_takes_equal_numbers_per_region():
    angles = _skewed_angles()
    rows, per_region = balanced_subset(angles, 84, spacing_deg=30.0, seed=1)
    centres = region_centres_deg(30.0)
    labels, _ = assign_regions(angles[rows], centres)
    counts = np.bincount(labels, minlength=len(centres))
    np.testing.assert_array_equal(counts, per_region)
    assert len(rows) == 84 and len(np.unique(rows)) == 84
    full = np.bincount(assign_regions(angles, centres)[0], minlength=len(centres))
    capped = per_region < full
    assert per_region[capped].max() - per_region[capped].min() <= 1
    random_counts = np.bincount(assign_regions(angles[random_subset(600, 84)], centres)[0])
    assert counts.max() < random_counts.max() / 3  # the preferred view no longer dominates


def test_balanced_subset_gives_small_regions_all_they_have():
    angles = _skewed_angles(200)
    rows, per_region = balanced_subset(angles, 190, spacing_deg=30.0)
    assert len(rows) == 190 and per_region.sum() == 190


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    assert cli.main(["simulate", "--out", str(folder), "--n", "300", "--box", "32"]) == 0
    return folder / "particles.star"


def test_cli_subset_random_writes_a_readable_fraction(simulated, tmp_path, capsys):
    out = tmp_path / "train.star"
    assert cli.main(["subset", "--particles", str(simulated), "--fraction", "0.1",
                     "--seed", "2", "--out", str(out)]) == 0
    assert f"wrote {out} (30 of 300 particles" in capsys.readouterr().out
    sub, full = read_particles_star(out), read_particles_star(simulated)
    rows = np.array([split_image_name(name)[0] - 1 for name in sub.image_names])
    assert len(sub) == 30 and len(set(rows)) == 30
    np.testing.assert_array_equal(rows, random_subset(300, 30, seed=2))
    np.testing.assert_allclose(load_images(sub), load_images(full, rows))  # names valid from out
    np.testing.assert_allclose(sub.angles_deg, full.angles_deg[rows])


def test_cli_subset_balanced_reports_regions(simulated, tmp_path, capsys):
    out = tmp_path / "train.star"
    assert cli.main(["subset", "--particles", str(simulated), "--count", "84", "--balanced",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "balanced over 42 regions of 30 deg" in text and "particles per region" in text
    assert len(read_particles_star(out)) == 84


def _error(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_cli_subset_balanced_without_poses_is_refused(tmp_path, simulated, capsys):
    full = read_particles_star(simulated)
    bare = Particles(image_names=full.image_names, pixel_size_a=full.pixel_size_a,
                     box_px=full.box_px, root=full.root)
    write_particles_star(simulated.parent / "bare.star", bare)
    assert cli.main(["subset", "--particles", str(simulated.parent / "bare.star"),
                     "--fraction", "0.1", "--balanced", "--out", str(tmp_path / "t.star")]) == 2
    assert "--balanced needs poses" in _error(capsys)


@pytest.mark.parametrize("option, value, words", [("--fraction", "1.5", "--fraction must be"),
                                                  ("--count", "301", "--count must be")])
def test_cli_subset_bad_size_is_refused(simulated, tmp_path, capsys, option, value, words):
    assert cli.main(["subset", "--particles", str(simulated), option, value,
                     "--out", str(tmp_path / "t.star")]) == 2
    assert words in _error(capsys)
