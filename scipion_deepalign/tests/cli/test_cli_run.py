"""``deepalign run``: train, predict and align in one command, from a training subset or from
the map alone; the model reused by a second call, a mismatched one refused."""

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.io import read_particles_star, write_mrc, write_particles
from scipion_deepalign.core.regions import count_regions, nearest_regions, region_centres_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

PIXEL_A = 4.0


def _assert_poses_inside_the_windows(angles_deg, hints, *, step_deg, follow=None):
    """Every pose lies in a tile the regional search can reach from its hinted regions (their
    windows, and the tiles whose centre is within ``follow`` (default: the default reach)
    around the poses kept there), or within the reach of the local refinement (on by
    default: rotations of step/2 then step/4 about the image's x and y axes, at most
    0.75 * sqrt(2) of a step) of one of their directions."""
    from scipion_deepalign.core.align.search_plan import SearchOptions, build_tiles
    from scipion_deepalign.core.regions import region_distances_deg

    centres = region_centres_deg(60.0, "c1")
    tiles = build_tiles(centres, "c1", step_deg,
                        overlap_deg=SearchOptions.default("overlap_deg"))
    follow = SearchOptions.default("follow_deg") if follow is None else follow
    reach = 0.75 * np.sqrt(2.0) * step_deg + 1e-6
    for i, pose in enumerate(np.asarray(angles_deg)):
        windows = sorted({t for r in hints[i] for t in tiles.windows[r]})
        kept = np.concatenate([tiles.directions_deg[t] for t in windows])
        followed = region_distances_deg(kept, tiles.centres_deg, "c1").min(axis=0) <= follow
        allowed = sorted(set(windows) | set(np.flatnonzero(followed)))
        dirs = np.concatenate([tiles.directions_deg[t] for t in allowed])
        assert region_distances_deg(pose[None], dirs, "c1").min() <= reach, i


def test_run_chains_train_predict_align(tmp_path):
    """deepalign run on a tiny set: a shared CNN trained for one epoch, then alignment."""
    pytest.importorskip("keras")
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 96, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       seed=21)
    write_particles(tmp_path / "train.mrcs", tmp_path / "train.star", images[:72],
                    parts.subset(slice(0, 72)))
    test = parts.subset(slice(72, 96))
    truth = test.angles_deg.copy()
    test.angles_deg = test.shifts_px = None
    write_particles(tmp_path / "all.mrcs", tmp_path / "all.star", images[72:], test)
    write_mrc(tmp_path / "ref.mrc", volume, pixel_size_a=PIXEL_A)
    out = tmp_path / "run"
    code = main(["run", "--train", str(tmp_path / "train.star"), "--particles",
                 str(tmp_path / "all.star"), "--volume", str(tmp_path / "ref.mrc"),
                 "--out", str(out), "--spacing", "60", "--top-k", "3", "--epochs", "1",
                 "--training-source", "particles", "--images-per-epoch", "512",
                 "--network", "shared", "--step", "12", "--max-shift", "1",
                 "--device", "cpu", "--follow", "0"])
    assert code == 0
    assert (out / "model" / "regions.star").exists()
    pred = read_particles_star(out / "predicted.star")
    k = 1
    while f"deepalignRegion{k + 1}" in pred.extra:
        k += 1
    # the adaptive search may use them all (or every region where there are fewer)
    assert k == min(SearchOptions.default("max_regions"), count_regions(60.0))
    hints = np.stack([np.asarray(pred.extra[f"deepalignRegion{j}"]).astype(int)
                      for j in range(1, k + 1)], axis=1)
    aligned = read_particles_star(out / "aligned.star")
    _assert_poses_inside_the_windows(aligned.angles_deg, hints - 1, step_deg=12.0, follow=0)
    # Where the CNN's hints hold the true region, the pose is found.
    centres = region_centres_deg(60.0, "c1")
    true_region = nearest_regions(truth, centres, "c1", k=1)[:, 0] + 1
    hit = (hints == true_region[:, None]).any(axis=1)
    err = symmetric_pose_distance_deg(aligned.angles_deg, truth, "c1")
    assert hit.sum() >= 6
    assert np.median(err[hit]) < 12.0


def test_run_passes_refine_to_the_alignment(tmp_path, monkeypatch):
    """`deepalign run --no-refine` reaches align_particles (--refine used to be accepted and
    ignored; refinement is now on by default, so the test turns it off)."""
    pytest.importorskip("keras")
    from scipion_deepalign.core import pipeline

    seen = {}
    real_align = pipeline.align_particles

    def recording_align(*args, **kwargs):
        seen["refine"] = kwargs.get("refine")
        return real_align(*args, **kwargs)

    monkeypatch.setattr(pipeline, "align_particles", recording_align)
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 48, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       seed=22)
    write_particles(tmp_path / "train.mrcs", tmp_path / "train.star", images[:40],
                    parts.subset(slice(0, 40)))
    write_particles(tmp_path / "all.mrcs", tmp_path / "all.star", images[40:],
                    parts.subset(slice(40, 48)))
    write_mrc(tmp_path / "ref.mrc", volume, pixel_size_a=PIXEL_A)
    code = main(["run", "--train", str(tmp_path / "train.star"), "--particles",
                 str(tmp_path / "all.star"), "--volume", str(tmp_path / "ref.mrc"),
                 "--out", str(tmp_path / "run"), "--spacing", "60", "--top-k", "2",
                 "--epochs", "1", "--positives-per-region", "16", "--step", "15",
                 "--max-shift", "1", "--device", "cpu", "--no-refine"])
    assert code == 0
    assert seen["refine"] is False
    assert (tmp_path / "run" / "aligned.star").exists()


def test_run_without_a_training_subset_trains_from_the_map(tmp_path, capsys):
    """deepalign run --training-source projections (the default) needs no --train."""
    pytest.importorskip("keras")
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 40, pixel_size_a=PIXEL_A, snr=2.0, seed=22)
    truth = parts.angles_deg.copy()
    parts.angles_deg = parts.shifts_px = None
    write_particles(tmp_path / "all.mrcs", tmp_path / "all.star", images, parts)
    write_mrc(tmp_path / "ref.mrc", volume, pixel_size_a=PIXEL_A)
    out = tmp_path / "run"
    assert main(["run", "--particles", str(tmp_path / "all.star"), "--volume",
                 str(tmp_path / "ref.mrc"), "--out", str(out), "--spacing", "60",
                 "--epochs", "3", "--images-per-epoch", "1024", "--step", "12",
                 "--max-shift", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "regions searched per particle" in printed and "global fallback" in printed
    assert "tiles around the kept poses" in printed
    history = (out / "model" / "history_shared.json").read_text()
    assert '"training_source": "projections"' in history
    aligned = read_particles_star(out / "aligned.star")
    pred = read_particles_star(out / "predicted.star")
    hints = np.stack([np.asarray(pred.extra[f"deepalignRegion{j}"]).astype(int)
                      for j in range(1, min(SearchOptions.default("max_regions"),
                                            count_regions(60.0)) + 1)], axis=1)
    _assert_poses_inside_the_windows(aligned.angles_deg, hints - 1, step_deg=12.0)
    err = symmetric_pose_distance_deg(aligned.angles_deg, truth, "c1")
    assert np.mean(err < 15.0) > 0.4, np.mean(err < 15.0)  # chance: a few percent
    # train once, align many: the same command again reuses the model, untouched
    args = ["run", "--particles", str(tmp_path / "all.star"), "--volume",
            str(tmp_path / "ref.mrc"), "--out", str(out), "--epochs", "3",
            "--images-per-epoch", "1024", "--step", "12", "--max-shift", "1", "--device", "cpu"]
    stamp = (out / "model" / "shared.keras").stat().st_mtime_ns
    assert main(args + ["--spacing", "60"]) == 0
    assert "model: reused from" in capsys.readouterr().out
    assert (out / "model" / "shared.keras").stat().st_mtime_ns == stamp
    assert (out / "model" / "history_shared.json").read_text() == history
    np.testing.assert_array_equal(read_particles_star(out / "predicted.star").extra[
        "deepalignRegion1"], pred.extra["deepalignRegion1"])
    # another spacing is refused, naming it, before any training; --retrain trains over it
    assert main(args + ["--spacing", "90"]) == 2
    err_text = capsys.readouterr().err
    assert "region spacing (90 deg against the trained 60 deg)" in err_text
    assert "--retrain" in err_text
    assert (out / "model" / "shared.keras").stat().st_mtime_ns == stamp
    # without --train, training from particles is refused
    code = main(["run", "--particles", str(tmp_path / "all.star"), "--volume",
                 str(tmp_path / "ref.mrc"), "--out", str(tmp_path / "r2"),
                 "--training-source", "particles"])
    assert code == 2 and "--train" in capsys.readouterr().err
