"""``deepalign train`` -> ``deepalign predict`` round trip and the argument checks."""
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.cli import build_parser, main  # noqa: E402
from scipion_deepalign.core.io import read_json, read_particles_star, write_particles  # noqa: E402
from scipion_deepalign.core.simulate import make_phantom, simulate_particles  # noqa: E402


@pytest.fixture(scope="module")
def stars(tmp_path_factory):
    """(train.star, all.star, all.star without poses) of 160 simulated 32 px particles."""
    folder = tmp_path_factory.mktemp("particles")
    volume = make_phantom(32, symmetry="d2", seed=0)
    images, parts = simulate_particles(volume, 160, pixel_size_a=4.0, snr=1.0, seed=2)
    write_particles(folder / "all.mrcs", folder / "all.star", images, parts)
    write_particles(folder / "train.mrcs", folder / "train.star", images[:120],
                    parts.subset(slice(0, 120)))
    no_poses = parts.subset(slice(0, 20))
    no_poses.angles_deg = None
    no_poses.shifts_px = None
    write_particles(folder / "noposes.mrcs", folder / "noposes.star", images[:20], no_poses)
    return folder / "train.star", folder / "all.star", folder / "noposes.star"


TRAIN_FAST = ["--symmetry", "d2", "--spacing", "90", "--box", "24", "--epochs", "1",
              "--batch-size", "32", "--positives", "64", "--min-particles", "3",
              "--network", "regional", "--training-source", "particles"]


def test_train_then_predict_writes_region_columns(stars, tmp_path, capsys):
    train_star, all_star, _ = stars
    model = tmp_path / "model"
    assert main(["train", "--particles", str(train_star), "--out", str(model),
                 "--loss", "mae", "--learning-rate", "0.002", "--threads", "2",
                 *TRAIN_FAST]) == 0
    assert sorted(p.name for p in model.glob("region_*.keras")) == [
        f"region_{r:04d}.keras" for r in range(1, 5)]
    out = capsys.readouterr().out
    assert "4 trained" in out
    from scipion_deepalign.core.cnn.summary import training_summary

    numbers = training_summary(model)  # the summary's numbers are the Train protocol's
    assert f"held-out accuracy: mean {numbers['accuracy_mean']:.3f} " \
           f"(min {numbers['accuracy_min']:.3f})" in out
    # A second run finds everything done.
    assert main(["train", "--particles", str(train_star), "--out", str(model), "--loss", "mae",
                 "--learning-rate", "0.002", *TRAIN_FAST]) == 0
    assert "0 trained, 4 already there" in capsys.readouterr().out

    out_dir = tmp_path / "pred"
    out_dir.mkdir()
    pred = out_dir / "pred.star"
    assert main(["predict", "--particles", str(all_star), "--model", str(model), "--top-k", "3",
                 "--out", str(pred), "--chunk", "50"]) == 0
    result = read_particles_star(pred)
    source = read_particles_star(all_star)
    assert len(result) == 160
    np.testing.assert_allclose(result.angles_deg, source.angles_deg, atol=1e-4)
    regions = np.stack([result.extra[f"deepalignRegion{i}"] for i in (1, 2, 3)], 1).astype(int)
    probs = np.stack([result.extra[f"deepalignRegionProb{i}"] for i in (1, 2, 3)], 1)
    assert regions.min() >= 1 and regions.max() <= 4
    assert np.all([len(set(row)) == 3 for row in regions])
    assert np.all(np.diff(probs, axis=1) <= 1e-6) and np.all((probs >= 0) & (probs <= 1))
    # The summary's numbers beside the output, as the Predict protocol reads them
    summary = read_json(out_dir / "pred.summary.json")
    assert summary["n_predicted"] == 160
    assert summary["regions_first"] == len(np.unique(regions[:, 0]))
    assert summary["top_probability_median"] == pytest.approx(np.median(probs[:, 0]), abs=1e-5)
    # Image names still point at the stack from the new folder.
    from scipion_deepalign.core.io import load_images
    np.testing.assert_allclose(load_images(result.subset(slice(0, 3))),
                               load_images(source.subset(slice(0, 3))))


def _error(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def test_train_without_poses(stars, tmp_path, capsys):
    code, err = _error(["train", "--particles", str(stars[2]), "--out", str(tmp_path / "m"),
                        "--training-source", "particles"], capsys)
    assert code == 2 and "no poses" in err and "projections" in err
    code, err = _error(["train", "--particles", str(stars[2]), "--out", str(tmp_path / "m")],
                       capsys)  # the default source, projections, needs the map
    assert code == 2 and "--volume" in err
    code, err = _error(["train", "--particles", str(stars[2]), "--out", str(tmp_path / "m"),
                        "--volume", str(tmp_path / "ref.mrc"), "--network", "regional"],
                       capsys)
    assert code == 2 and "--volume" in err  # missing file first
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("pixel, values, words", [
    (8.0, None, "coarse.mrc: pixel size 8 A differs from the particles' 4 A"),
    (4.0, 0.0, "coarse.mrc is constant"),
], ids=["pixel_size", "constant"])
def test_train_refuses_a_flawed_map_naming_it(stars, tmp_path, capsys, pixel, values, words):
    """One --volume is checked as several are (box, pixel size, values), before training."""
    from scipion_deepalign.core.io import write_mrc
    from scipion_deepalign.core.simulate import make_phantom

    volume = make_phantom(32, symmetry="d2", seed=0)
    write_mrc(tmp_path / "coarse.mrc", volume if values is None else volume * values,
              pixel_size_a=pixel)
    code, err = _error(["train", "--particles", str(stars[2]), "--volume",
                        str(tmp_path / "coarse.mrc"), "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and words in err
    assert not (tmp_path / "m").exists()


def test_train_from_projections_needs_no_poses(stars, tmp_path, capsys):
    from scipion_deepalign.core.io import write_mrc
    from scipion_deepalign.core.simulate import make_phantom

    write_mrc(tmp_path / "ref.mrc", make_phantom(32, symmetry="d2", seed=0), pixel_size_a=4.0)
    model = tmp_path / "model"
    assert main(["train", "--particles", str(stars[2]), "--volume", str(tmp_path / "ref.mrc"),
                 "--out", str(model), "--symmetry", "d2", "--spacing", "90", "--box", "16",
                 "--epochs", "2", "--images-per-epoch", "256"]) == 0
    out = capsys.readouterr().out
    assert "trained from projections" in out
    history = json.loads((model / "history_shared.json").read_text())
    assert history["training_source"] == "projections" and len(history["loss"]) == 2


def test_train_from_projections_reads_only_the_noise_sample(stars, tmp_path, monkeypatch):
    """The images read are a spread sample; the CTFs are those of every particle."""
    from scipion_deepalign.cli import common
    from scipion_deepalign.core.cnn import synthetic
    from scipion_deepalign.core.io import write_mrc

    monkeypatch.setattr(synthetic, "NOISE_SAMPLE", 5)
    assert synthetic.noise_sample_rows(20).tolist() == [0, 5, 10, 14, 19]
    assert synthetic.noise_sample_rows(3).tolist() == [0, 1, 2]
    from scipion_deepalign.cli import train as train_cli
    from scipion_deepalign.core import cnn

    read, sizes = [], []
    monkeypatch.setattr(train_cli, "load_particles_images", lambda args, parts, index=None: (
        read.append(list(index)) or common.load_particles_images(args, parts, index)))
    original = cnn.train_regions

    def spy(images, angles, **kw):
        sizes.append((len(images), len(kw["ctf"])))
        return original(images, angles, **kw)

    monkeypatch.setattr(cnn, "train_regions", spy)
    write_mrc(tmp_path / "ref.mrc", make_phantom(32, symmetry="d2", seed=0), pixel_size_a=4.0)
    assert main(["train", "--particles", str(stars[1]), "--volume", str(tmp_path / "ref.mrc"),
                 "--out", str(tmp_path / "model"), "--symmetry", "d2", "--spacing", "90",
                 "--box", "16", "--epochs", "1", "--images-per-epoch", "128"]) == 0
    assert read == [[0, 40, 80, 119, 159]]
    assert sizes == [(5, 160)]


@pytest.mark.parametrize("extra, message", [
    (["--target-resolution", "5"], "--target-resolution"),   # Nyquist of 4 A pixels is 8 A
    (["--box", "40"], "--box"),
    (["--spacing", "200"], "--spacing"),
    (["--symmetry", "x7"], "--symmetry"),
    (["--regions", "1,9", "--symmetry", "d2", "--spacing", "90"], "--regions"),
    (["--regions", "a"], "--regions"),
])
def test_train_bad_arguments(stars, tmp_path, capsys, extra, message):
    code, err = _error(["train", "--particles", str(stars[0]), "--out", str(tmp_path / "m"),
                        "--training-source", "particles", *extra], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "m").exists()


def test_train_missing_file(tmp_path, capsys):
    code, err = _error(["train", "--particles", str(tmp_path / "nope.star"), "--out",
                        str(tmp_path / "m")], capsys)
    assert code == 2 and "--particles" in err and "not found" in err


def test_predict_bad_arguments(stars, tmp_path, capsys):
    code, err = _error(["predict", "--particles", str(stars[1]), "--model", str(tmp_path),
                        "--out", str(tmp_path / "p.star")], capsys)
    assert code == 2 and "--model" in err and "config.json" in err
    code, err = _error(["predict", "--particles", str(stars[1]), "--model", str(tmp_path),
                        "--top-k", "0", "--out", str(tmp_path / "p.star")], capsys)
    assert code == 2 and "--top-k" in err


def test_predict_refuses_particles_of_another_pixel_size(stars, tmp_path, capsys):
    meta = {"n_regions": 4, "box_px": 32, "particle_pixel_size_a": 2.0, "input_box_px": 24,
            "input_pixel_size_a": 2.0 * 32 / 24, "symmetry": "d2", "config": {}}
    (tmp_path / "config.json").write_text(json.dumps(meta))
    code, err = _error(["predict", "--particles", str(stars[1]), "--model", str(tmp_path),
                        "--top-k", "2", "--out", str(tmp_path / "p.star")], capsys)
    assert code == 2, err
    assert (f"the particles have 4 Å/px but the model in {tmp_path} was trained on 2 Å/px "
            "particles") in err


def test_argument_errors_do_not_import_tensorflow(stars, tmp_path):
    code = ("import sys; from scipion_deepalign.cli import main; "
            f"rc = main(['train', '--particles', {str(stars[2])!r}, '--out', "
            f"{str(tmp_path / 'm')!r}]); "
            "assert rc == 2, rc; assert 'tensorflow' not in sys.modules and "
            "'keras' not in sys.modules, 'imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_several_gpus_share_the_regions_between_child_processes(stars, tmp_path, monkeypatch):
    from scipion_deepalign.cli import common as cli_common
    from scipion_deepalign.cli import train as cli_train

    launched = []

    class FakePopen:
        def __init__(self, cmd, env=None):
            launched.append(cmd)

        def wait(self):
            return 0

    monkeypatch.setattr(cli_common.subprocess, "Popen", FakePopen)
    assert main(["train", "--particles", str(stars[0]), "--out", str(tmp_path / "m"),
                 "--gpus", "0,3", "--loss", "mae", *TRAIN_FAST,
                 "--training-source", "particles"]) == 0
    assert len(launched) == 2
    shares = []
    for cmd, gpu in zip(launched, ("0", "3")):
        assert cmd[1:4] == ["-m", "scipion_deepalign.cli", "train"]
        assert cmd[cmd.index("--gpus") + 1] == gpu
        assert cmd[cmd.index("--loss") + 1] == "mae" and cmd[cmd.index("--box") + 1] == "24"
        shares.append(cmd[cmd.index("--regions") + 1])
        parsed = build_parser("train", cli_train).parse_args(cmd[3:])  # a valid command line
        assert parsed.spacing == 90.0 and parsed.symmetry == "d2" and parsed.epochs == 1
    assert shares == ["1,3", "2,4"]
    assert not (tmp_path / "m").exists()  # the parent trains nothing itself
