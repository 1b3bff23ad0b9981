"""``deepalign reconstruct``, ``fsc`` and ``consensus`` on tiny simulated particles."""
import csv
from dataclasses import replace

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.geometry import random_angles_deg
from scipion_deepalign.core.io import (
    load_images,
    read_particles_star,
    read_volume,
    write_mrc,
    write_particles,
    write_particles_star,
)
from scipion_deepalign.core.judge.fsc import fsc_curve
from scipion_deepalign.core.simulate import make_phantom, simulate_particles

BOX, PIXEL_A, N = 24, 5.0, 240


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("judging")
    volume = make_phantom(BOX, seed=1)
    images, parts = simulate_particles(volume, N, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       max_shift_px=2.0, seed=5)
    write_mrc(root / "reference.mrc", volume, pixel_size_a=PIXEL_A)
    parts = write_particles(root / "particles.mrcs", root / "particles.star", images, parts)
    # a second assignment with 30 % of the poses scrambled, in another folder
    (root / "other").mkdir()
    rng = np.random.default_rng(6)
    scrambled = rng.random(N) < 0.3
    angles = parts.angles_deg.copy()
    angles[scrambled] = random_angles_deg(scrambled.sum(), rng)
    other = replace(parts, angles_deg=angles,
                    image_names=[n.replace("@", "@../") for n in parts.image_names])
    write_particles_star(root / "other" / "scrambled.star", other)
    write_particles_star(root / "noposes.star", replace(parts, angles_deg=None, shifts_px=None))
    return root, images, parts, scrambled


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_reconstruct_halves_and_fsc(data, capsys, tmp_path):
    root, _, _, _ = data
    out = tmp_path / "map.mrc"
    code, text, err = _run(capsys, "reconstruct", "--particles", root / "particles.star",
                           "--out", out, "--halves")
    assert code == 0, err
    assert "FSC 0.143 resolution:" in text
    ref, _ = read_volume(root / "reference.mrc")
    full, px = read_volume(out)
    assert px == pytest.approx(PIXEL_A)
    assert np.all(fsc_curve(full, ref, pixel_size_a=PIXEL_A).fsc[:8] > 0.9)
    h1, _ = read_volume(tmp_path / "map_half1.mrc")
    h2, _ = read_volume(tmp_path / "map_half2.mrc")
    assert np.all(fsc_curve(h1, h2, pixel_size_a=PIXEL_A).fsc[:6] > 0.9)

    # deepalign fsc against the reference: table, plot and printed resolution
    code, text, err = _run(capsys, "fsc", out, root / "reference.mrc", "--csv",
                           tmp_path / "fsc.csv", "--plot", tmp_path / "fsc.png",
                           "--mask-radius", 50)
    assert code == 0, err
    expected = fsc_curve(full, ref, pixel_size_a=PIXEL_A, mask_radius_a=50)
    assert f"FSC 0.143 resolution: {expected.resolution_0143_a:.2f} A" in text
    with open(tmp_path / "fsc.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == BOX // 2 + 1
    np.testing.assert_allclose([float(r["fsc"]) for r in rows], expected.fsc, atol=1e-5)
    assert (tmp_path / "fsc.png").stat().st_size > 1000


def test_fsc_map_with_itself(data, capsys):
    root = data[0]
    code, text, _ = _run(capsys, "fsc", root / "reference.mrc", root / "reference.mrc")
    assert code == 0
    assert f"FSC 0.143 resolution: {2 * PIXEL_A:.2f} A" in text


def test_fsc_maps_of_different_shape(data, capsys, tmp_path):
    root = data[0]
    write_mrc(tmp_path / "small.mrc", np.zeros((16,) * 3, np.float32), pixel_size_a=PIXEL_A)
    code, _, err = _run(capsys, "fsc", root / "reference.mrc", tmp_path / "small.mrc")
    assert code == 2
    assert "differ in shape" in err and "(24, 24, 24)" in err and "(16, 16, 16)" in err


def test_consensus(data, capsys, tmp_path):
    root, images, parts, scrambled = data
    out = tmp_path / "cons"
    code, text, err = _run(capsys, "consensus", "--inputs", root / "particles.star",
                           root / "other" / "scrambled.star", "--out", out, "--max-angle", 10,
                           "--plot", tmp_path / "diff.png")
    assert code == 0, err
    agree = read_particles_star(out / "agree.star")
    disagree = read_particles_star(out / "disagree.star")
    assert len(agree) + len(disagree) == N
    kept = np.array([int(n.split("@")[0]) - 1 for n in agree.image_names])
    assert np.sum(scrambled[kept]) <= 0.05 * np.sum(scrambled)
    assert len(kept) >= 0.95 * np.sum(~scrambled)
    # the poses are those of input 1, the image paths still resolve from the new folder
    np.testing.assert_allclose(agree.angles_deg, parts.angles_deg[kept], atol=1e-4)
    np.testing.assert_array_equal(load_images(agree, slice(0, 3)), images[kept[:3]])
    with open(out / "differences.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == N and "direction_deg_1_2" in rows[0]
    assert sum(int(r["agree"]) for r in rows) == len(agree)
    assert f"{len(agree)} agree" in text
    assert (tmp_path / "diff.png").stat().st_size > 1000
    # the reader of the one CSV schema, and the summary's numbers as JSON
    import json

    from scipion_deepalign.core.io import read_differences_csv

    table = read_differences_csv(out / "differences.csv")
    assert table["image_name"] == [r["image_name"] for r in rows]
    assert table["agree"].sum() == len(agree) and table["pairs"].tolist() == [[0, 1]]
    np.testing.assert_allclose(table["direction_diff_deg"][:, 0],
                               [float(r["direction_deg_1_2"]) for r in rows])
    assert table["shift_diff_px"].shape == (N, 1)
    with open(out / "summary.json") as fh:
        stats = json.load(fh)
    assert stats["n_common"] == N and stats["n_agree"] == len(agree)
    assert stats["pairs"] == [[1, 2]] and set(stats["fraction_under_deg"]) == {"5", "10", "15"}
    assert f"{stats['median_angle_diff_deg'][0]:.2f} deg" in text


def test_consensus_no_particles_in_common(data, capsys, tmp_path):
    root, _, parts, _ = data
    renamed = replace(parts, image_names=[n.replace("particles.mrcs", "other.mrcs")
                                          for n in parts.image_names])
    write_particles_star(tmp_path / "renamed.star", renamed)
    code, _, err = _run(capsys, "consensus", "--inputs", root / "particles.star",
                        tmp_path / "renamed.star", "--out", tmp_path / "c")
    assert code == 2 and "no particles in common" in err


@pytest.mark.parametrize("command", ["reconstruct", "consensus"])
def test_particles_without_poses(data, capsys, tmp_path, command):
    root = data[0]
    if command == "reconstruct":
        argv = ["reconstruct", "--particles", root / "noposes.star", "--out", tmp_path / "m.mrc"]
    else:
        argv = ["consensus", "--inputs", root / "particles.star", root / "noposes.star",
                "--out", tmp_path / "c"]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "no poses" in err and "noposes.star" in err
    assert not (tmp_path / "m.mrc").exists()


def test_consensus_bad_min_agree(data, capsys, tmp_path):
    root = data[0]
    code, _, err = _run(capsys, "consensus", "--inputs", root / "particles.star",
                        root / "particles.star", "--out", tmp_path / "c", "--min-agree", 3)
    assert code == 2 and "--min-agree must be between 2 and 2" in err


def test_reconstruct_bad_symmetry(data, capsys, tmp_path):
    code, _, err = _run(capsys, "reconstruct", "--particles", data[0] / "particles.star",
                        "--out", tmp_path / "m.mrc", "--symmetry", "q3")
    assert code == 2 and "--symmetry" in err


def test_consensus_min_agree_keeps_poses_of_agreeing_inputs(data, capsys, tmp_path):
    root, _, parts, scrambled = data
    # inputs: scrambled, truth, truth -> with --min-agree 2 every particle agrees, and the
    # scrambled particles take their poses from input 2 (the first of the agreeing pair)
    code, text, err = _run(capsys, "consensus", "--inputs", root / "other" / "scrambled.star",
                           root / "particles.star", root / "particles.star", "--out",
                           tmp_path / "c", "--min-agree", 2)
    assert code == 0, err
    agree = read_particles_star(tmp_path / "c" / "agree.star")
    assert len(agree) == N
    np.testing.assert_allclose(agree.angles_deg, parts.angles_deg, atol=1e-4)
    np.testing.assert_allclose(agree.shifts_px, parts.shifts_px, atol=1e-4)
    assert "1:particles.star" not in text and "2:particles.star vs 3:particles.star" in text


def test_reconstruct_threads_and_fsc_json_match_the_core_in_memory(data, capsys, tmp_path):
    """Images read per batch from the stack, halves on 2 threads: the in-memory maps."""
    import json

    from scipion_deepalign.core.judge.reconstruct import half_subsets, reconstruct_half_maps

    root, images, parts, _ = data
    out = tmp_path / "map.mrc"
    code, text, err = _run(capsys, "reconstruct", "--particles", root / "particles.star",
                           "--out", out, "--halves", "--threads", "2", "--fsc-json",
                           tmp_path / "fsc.json")
    assert code == 0, err
    h1, h2, full = reconstruct_half_maps(images, parts.angles_deg, shifts_px=parts.shifts_px,
                                         pixel_size_a=PIXEL_A, subsets=half_subsets(N, seed=0))
    for path, expected in ((out, full), (tmp_path / "map_half1.mrc", h1),
                           (tmp_path / "map_half2.mrc", h2)):
        np.testing.assert_allclose(read_volume(path)[0], expected,
                                   atol=1e-5 * np.abs(expected).max())
    with open(tmp_path / "fsc.json") as fh:
        fsc = json.load(fh)
    expected = fsc_curve(h1, h2, pixel_size_a=PIXEL_A)
    assert fsc["n_particles"] == N
    assert fsc["resolution_0143_a"] == pytest.approx(expected.resolution_0143_a, rel=1e-4)
    np.testing.assert_allclose(fsc["fsc"], expected.fsc, atol=1e-4)
    assert f"wrote {tmp_path / 'fsc.json'}" in text


def test_reconstruct_fsc_json_needs_halves(data, capsys, tmp_path):
    code, _, err = _run(capsys, "reconstruct", "--particles", data[0] / "particles.star",
                        "--out", tmp_path / "m.mrc", "--fsc-json", tmp_path / "f.json")
    assert code == 2 and "--fsc-json needs --halves" in err
