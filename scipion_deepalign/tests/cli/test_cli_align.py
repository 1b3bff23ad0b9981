"""``deepalign align``: STAR in, STAR out, poses checked against the truth; clear errors."""
import json

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.io import (
    read_particles_star,
    write_mrc,
    write_particles,
    write_regions_star,
)
from scipion_deepalign.core.regions import count_regions, nearest_regions, region_centres_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

PIXEL_A = 4.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Noiseless particles with oracle top-2 region columns, a reference and regions.star."""
    folder = tmp_path_factory.mktemp("align_cli")
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 8, pixel_size_a=PIXEL_A, snr=np.inf, ctf=True,
                                       max_shift_px=2.0, seed=11)
    centres = region_centres_deg(30.0, "c1")
    hints = nearest_regions(parts.angles_deg, centres, "c1", k=2)
    truth = parts.angles_deg.copy(), parts.shifts_px.copy()
    parts.extra = {"deepalignRegion1": hints[:, 0] + 1, "deepalignRegion2": hints[:, 1] + 1}
    parts.angles_deg = parts.shifts_px = None  # as after deepalign predict on new particles
    write_particles(folder / "particles.mrcs", folder / "pred.star", images, parts)
    write_mrc(folder / "ref.mrc", volume, pixel_size_a=PIXEL_A)
    model = folder / "model"
    model.mkdir()
    write_regions_star(model / "regions.star", centres, symmetry="c1", spacing_deg=30.0)
    return folder, truth, hints


def _run(folder, *extra):
    return main(["align", "--particles", str(folder / "pred.star"), "--volume",
                 str(folder / "ref.mrc"), "--step", "10", "--max-shift", "3",
                 "--device", "cpu", *extra])


def test_regional_round_trip(inputs):
    folder, (angles, shifts), hints = inputs
    out = folder / "aligned.star"
    assert _run(folder, "--model", str(folder / "model"), "--out", str(out)) == 0
    aligned = read_particles_star(out)
    err = symmetric_pose_distance_deg(aligned.angles_deg, angles, "c1")
    assert np.median(err) < 10.0
    assert np.max(np.abs(aligned.shifts_px - shifts)) < 0.75
    score = np.asarray(aligned.extra["deepalignScore"], dtype=float)
    assert np.all((score > 0.5) & (score <= 1.0 + 1e-6))
    assert np.all(np.asarray(aligned.extra["deepalignSignificance"], dtype=float) > 0)
    region = np.asarray(aligned.extra["deepalignBestRegion"]).astype(int) - 1
    assert np.all((region == hints[:, 0]) | (region == hints[:, 1]))
    assert aligned.ctf is not None  # input columns are kept


def test_direction_change_from_input_poses(inputs, tmp_path, capsys):
    """Input poses: each particle's direction change is a column, its median in the summary."""
    from scipion_deepalign.core.io import write_particles_star
    from scipion_deepalign.core.symmetry import symmetric_direction_distance_deg

    folder, (angles, shifts), _ = inputs
    posed = read_particles_star(folder / "pred.star")
    posed.angles_deg, posed.shifts_px = angles + [0.0, 20.0, 0.0], shifts
    write_particles_star(folder / "posed.star", posed)
    out = tmp_path / "aligned.star"
    capsys.readouterr()
    assert main(["align", "--particles", str(folder / "posed.star"), "--volume",
                 str(folder / "ref.mrc"), "--step", "10", "--max-shift", "3", "--device",
                 "cpu", "--global", "--out", str(out)]) == 0
    aligned = read_particles_star(out)
    change = np.asarray(aligned.extra["deepalignDirectionChange"], float)
    np.testing.assert_allclose(change, symmetric_direction_distance_deg(
        posed.angles_deg, aligned.angles_deg, "c1"), atol=1e-3)
    assert f"direction change from the input poses: median {np.median(change):.1f} deg" \
        in capsys.readouterr().out
    # the summary's numbers beside the output, as the protocols read them
    summary = json.loads((tmp_path / "aligned.summary.json").read_text())
    assert summary["median_direction_change_deg"] == pytest.approx(np.median(change))
    assert summary["n_aligned"] == summary["n_input"] == len(aligned)
    assert summary["median_score"] == pytest.approx(
        np.median(np.asarray(aligned.extra["deepalignScore"], float)), abs=1e-5)


def test_global_with_regions_file_and_top_k(inputs, capsys):
    folder, (angles, _), _ = inputs
    out = folder / "global.star"
    assert _run(folder, "--global", "--out", str(out)) == 0
    err = symmetric_pose_distance_deg(read_particles_star(out).angles_deg, angles, "c1")
    assert np.median(err) < 10.0
    out1 = folder / "top1.star"
    assert _run(folder, "--regions", str(folder / "model" / "regions.star"), "--top-k", "1",
                "--refine", "--out", str(out1)) == 0
    region = np.asarray(read_particles_star(out1).extra["deepalignBestRegion"]).astype(int)
    assert np.all(region == inputs[2][:, 0] + 1)
    # a significance no pose of this smooth phantom reaches: the fallback is not used (it
    # would search every particle again) and the summary says so
    out2 = folder / "not_again.star"
    capsys.readouterr()
    assert _run(folder, "--regions", str(folder / "model" / "regions.star"), "--top-k", "1",
                "--fallback-significance", "9", "--out", str(out2)) == 0
    assert "significance fallback: not used" in capsys.readouterr().out
    again = read_particles_star(out2)
    assert not np.asarray(again.extra["deepalignGlobalSearch"]).astype(int).any()


@pytest.mark.parametrize("extra, message", [
    (["--out", "x.txt", "--global"], "--out must be a .star file"),
    (["--out", "a.star"], "needs --model MODEL_DIR or --regions"),
    (["--out", "a.star", "--global", "--device", "tpu"], "--device must be one of"),
    (["--out", "a.star", "--global", "--symmetry", "q2"], "--symmetry"),
    (["--out", "a.star", "--regions", "missing.star"], "--regions: file not found"),
    (["--out", "a.star", "--model", "MODEL", "--top-k", "3"], "--top-k must be between 1 and"),
    (["--out", "a.star", "--model", "MODEL", "--symmetry", "c2"], "differs from the model"),
    (["--out", "a.star", "--model", "MODEL", "--fallback-significance", "-1"],
     "--fallback-significance: the fallback significance must be in [0, 10)"),
    (["--out", "a.star", "--model", "MODEL", "--follow", "-5"],
     "--follow: the reach around the kept poses must be in [0, 180] degrees, got -5"),
], ids=["out", "no-regions", "device", "symmetry", "regions-file", "top-k", "model-symmetry",
        "significance", "follow"])
def test_bad_arguments_exit_2(inputs, capsys, extra, message):
    folder = inputs[0]
    extra = [str(folder / "model") if e == "MODEL" else e for e in extra]
    assert _run(folder, *extra) == 2
    assert message in capsys.readouterr().err


def test_particles_without_region_columns(inputs, tmp_path, capsys):
    folder = inputs[0]
    parts = read_particles_star(folder / "pred.star")
    parts.extra = {}
    from scipion_deepalign.core.io import write_particles_star
    write_particles_star(tmp_path / "plain.star", parts)
    code = main(["align", "--particles", str(tmp_path / "plain.star"), "--volume",
                 str(folder / "ref.mrc"), "--model", str(folder / "model"), "--out",
                 str(tmp_path / "o.star")])
    assert code == 2
    assert "no deepalignRegion1 column" in capsys.readouterr().err


def test_volume_box_mismatch(inputs, tmp_path, capsys):
    folder = inputs[0]
    write_mrc(tmp_path / "small.mrc", np.zeros((24, 24, 24), np.float32), pixel_size_a=PIXEL_A)
    code = main(["align", "--particles", str(folder / "pred.star"), "--volume",
                 str(tmp_path / "small.mrc"), "--global", "--out", str(tmp_path / "o.star")])
    assert code == 2
    assert "small.mrc: box 24 px differs from the particle box 32 px" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "align"])
@pytest.mark.parametrize("flaw", ["pixel_size", "constant", "nan"])
def test_a_flawed_map_stops_the_command_before_any_training(inputs, tmp_path, capsys,
                                                            monkeypatch, command, flaw):
    """One map of another pixel size than the particles', or one without structure: refused
    with the file named, before the network is trained (deepalign run found the pixel size
    after training and prediction, and named no file for a constant map)."""
    from scipion_deepalign.core import cnn

    folder = inputs[0]
    volume = make_phantom(32, seed=0)
    if flaw == "constant":
        volume[:] = 1.0
    elif flaw == "nan":
        volume[3, 4, 5] = np.nan
    write_mrc(tmp_path / "flawed.mrc", volume,
              pixel_size_a=2 * PIXEL_A if flaw == "pixel_size" else PIXEL_A)
    monkeypatch.setattr(cnn, "train_regions", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / ("o.star" if command == "align" else "o")
    extra = ["--global"] if command == "align" else []
    code = main([command, "--particles", str(folder / "pred.star"), "--volume",
                 str(tmp_path / "flawed.mrc"), "--out", str(out), *extra])
    assert code == 2
    err = capsys.readouterr().err
    words = {"pixel_size": f"flawed.mrc: pixel size {2 * PIXEL_A:g} A differs from the "
                           f"particles' {PIXEL_A:g} A",
             "constant": "flawed.mrc is constant", "nan": "flawed.mrc contains NaN"}[flaw]
    assert words in err
    assert flaw != "pixel_size" or "--pixel-size" in err
    assert not out.exists()


def test_particles_without_ctf_are_said_to_be_compared_without_one(inputs, tmp_path, capsys):
    """A STAR without defocus columns aligns (simulated or CTF-corrected images), and the
    command says that it compares them without a CTF; --no-ctf asked for it: no word."""
    folder = inputs[0]
    images, parts = simulate_particles(make_phantom(32, seed=0), 4, pixel_size_a=PIXEL_A,
                                       snr=np.inf, ctf=False, seed=3)
    write_particles(tmp_path / "p.mrcs", tmp_path / "noctf.star", images, parts)
    argv = ["align", "--particles", str(tmp_path / "noctf.star"), "--volume",
            str(folder / "ref.mrc"), "--global", "--step", "20", "--max-shift", "1",
            "--device", "cpu", "--out", str(tmp_path / "o.star")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "noctf.star (--particles) has no CTF (no rlnDefocusU column)" in err
    assert main(argv + ["--no-ctf"]) == 0
    assert "has no CTF" not in capsys.readouterr().err
    assert main(argv[:2] + [str(folder / "pred.star")] + argv[3:]) == 0  # with a CTF
    assert "has no CTF" not in capsys.readouterr().err


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



def test_align_reads_the_particles_block_by_block(inputs, monkeypatch):
    """The command hands align_particles a reader over the stacks, not every image, and
    gets the poses of the images in memory."""
    from scipion_deepalign.core.align import align as core_align
    from scipion_deepalign.core.io import ParticleImages, load_images

    folder, _, _ = inputs
    seen = {}
    real = core_align.align_particles

    def recording(images, volume, **kwargs):
        seen.update(images=images, volume=volume, kwargs=kwargs)
        seen["result"] = real(images, volume, **kwargs)
        return seen["result"]

    monkeypatch.setattr(core_align, "align_particles", recording)
    out = folder / "lazy.star"
    assert _run(folder, "--model", str(folder / "model"), "--out", str(out)) == 0
    assert isinstance(seen["images"], ParticleImages)
    kwargs = dict(seen["kwargs"], progress=None)
    in_memory = real(load_images(seen["images"].particles), seen["volume"], **kwargs)
    np.testing.assert_allclose(seen["result"].angles_deg, in_memory.angles_deg, rtol=0,
                               atol=1e-9)
    np.testing.assert_allclose(read_particles_star(out).angles_deg, in_memory.angles_deg,
                               atol=1e-5)  # as written in the STAR file


def _with_one_nan_image(inputs, tmp_path):
    from scipion_deepalign.core.io import read_mrc_stack

    folder, _, _ = inputs
    images = read_mrc_stack(folder / "particles.mrcs")[0].copy()
    images[3, 0, 0] = np.nan
    (tmp_path / "pred.star").write_text((folder / "pred.star").read_text())
    with pytest.warns(RuntimeWarning):  # mrcfile's NaN warning
        write_mrc(tmp_path / "particles.mrcs", images, pixel_size_a=PIXEL_A, stack=True)
    (tmp_path / "ref.mrc").write_bytes((folder / "ref.mrc").read_bytes())
    return folder


def test_skip_bad_drops_non_finite_particles_before_the_alignment(inputs, tmp_path, capsys):
    folder = _with_one_nan_image(inputs, tmp_path)
    out = tmp_path / "aligned.star"
    assert _run(tmp_path, "--model", str(folder / "model"), "--out", str(out),
                "--skip-bad") == 0
    assert "1 of 8 particle images hold NaN or Inf" in capsys.readouterr().err
    assert len(read_particles_star(out)) == 7


def test_a_non_finite_image_stops_the_alignment_before_it_starts(inputs, tmp_path, capsys,
                                                                 monkeypatch):
    import scipion_deepalign.core.align.align as core_align

    def never(*args, **kwargs):
        raise AssertionError("the alignment started")

    monkeypatch.setattr(core_align, "align_particles", never)
    folder = _with_one_nan_image(inputs, tmp_path)
    out = tmp_path / "aligned.star"
    assert _run(tmp_path, "--model", str(folder / "model"), "--out", str(out)) != 0
    err = capsys.readouterr().err
    assert "1 of 8 particle images hold NaN or Inf" in err and "#4 000004@" in err
    assert not out.exists()
