"""``deepalign align``: STAR in, STAR out, poses checked against the truth; clear errors."""
import json

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.io import (
    read_particles_star,
    write_mrc,
    write_particles,
    write_regions_star,
)
from scipion_deepalign.core.regions import nearest_regions, region_centres_deg
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
