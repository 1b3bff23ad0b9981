"""``deepalign align|run|train --volume A --volume B``: a two-class mixture in, rlnClassNumber
out, the classes right; a second map of another box or pixel size refused naming its file;
train and run teach one network both maps (its folder records 2 classes and refuses other
maps)."""
import json

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.io import columns, read_particles_star, write_mrc
from scipion_deepalign.tests.helpers import write_pair_mixture

PIXEL_A = 4.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classes_cli")
    classes = write_pair_mixture(folder, 16, snr=0.5, seed=7, pixel_size_a=PIXEL_A)
    return folder, classes


def _align(folder, *volumes, out="aligned.star", options=()):
    words = ["align", "--particles", str(folder / "in.star"), "--global", "--step", "10",
             "--max-shift", "3", "--device", "cpu", "--out", str(folder / out), *options]
    for volume in volumes:
        words += ["--volume", str(folder / volume)]
    return main(words)


def test_two_classes_end_to_end(inputs, capsys):
    folder, truth = inputs
    capsys.readouterr()
    assert _align(folder, "A.mrc", "B.mrc") == 0
    printed = capsys.readouterr().out
    aligned = read_particles_star(folder / "aligned.star")
    classes = columns.class_numbers(aligned.extra)
    assert np.mean(classes == truth) >= 0.9
    assert set(np.asarray(aligned.extra[columns.CLASS_COLUMN], float)) <= {1.0, 2.0}
    prob = np.asarray(aligned.extra[columns.CLASS_PROB_COLUMN], float)
    assert np.all((prob >= 0.5) & (prob <= 1.0))
    assert aligned.angles_deg is not None and columns.SCORE_COLUMN in aligned.extra
    sizes = np.bincount(classes, minlength=2)
    assert f"1 ({folder / 'A.mrc'}): {sizes[0]}" in printed
    assert "comparisons per class: 1: " in printed
    summary = json.loads((folder / "aligned.summary.json").read_text())
    assert summary["class_sizes"] == sizes.tolist()


def test_class_search_mean_and_auto(inputs, capsys):
    """``--class-search mean``: one search against the maps' mean (said in the summary), the
    classes still told apart; ``auto`` keeps each map's own search for these maps (a third of
    the mass removed: they correlate 0.79, below the mean map's least correlation)."""
    folder, truth = inputs
    capsys.readouterr()
    assert _align(folder, "A.mrc", "B.mrc", out="mean.star",
                  options=("--class-search", "mean")) == 0
    printed = capsys.readouterr().out
    assert "one search against the classes' mean map" in printed
    assert "class search: mean\n" in printed
    classes = columns.class_numbers(read_particles_star(folder / "mean.star").extra)
    assert np.mean(classes == truth) >= 0.75  # chance 0.5
    assert _align(folder, "A.mrc", "B.mrc", out="auto.star",
                  options=("--class-search", "auto")) == 0
    printed = capsys.readouterr().out
    assert "comparisons per class: 1: " in printed
    assert "class search: each (auto: two maps correlate only 0.7" in printed  # said, and why


def test_one_volume_writes_no_class(inputs):
    folder, _ = inputs
    assert _align(folder, "A.mrc", out="one.star") == 0
    assert columns.CLASS_COLUMN not in read_particles_star(folder / "one.star").extra


@pytest.mark.parametrize("box, pixel, words", [
    (24, PIXEL_A, "box 24 px differs from the particle box 32 px"),
    (32, 5.0, "pixel size 5 A differs from the particles' 4 A"),
], ids=["box", "pixel_size"])
def test_invalid_second_volume_names_its_file(inputs, capsys, box, pixel, words):
    folder, _ = inputs
    write_mrc(folder / "bad.mrc", np.random.default_rng(0).random((box,) * 3, np.float32),
              pixel_size_a=pixel)
    assert _align(folder, "A.mrc", "bad.mrc", out="bad.star") != 0
    err = capsys.readouterr().err
    assert "bad.mrc" in err and words in err
    assert not (folder / "bad.star").exists()


def test_run_with_two_volumes(inputs, capsys):
    """deepalign run --volume A --volume B: one network of both maps' projections, each
    particle searched in its predicted (class, region) pairs, the classes right."""
    pytest.importorskip("keras")
    folder, truth = inputs
    out = folder / "run"
    assert main(["run", "--particles", str(folder / "in.star"), "--volume",
                 str(folder / "A.mrc"), "--volume", str(folder / "B.mrc"), "--out", str(out),
                 "--spacing", "60", "--epochs", "4", "--images-per-epoch", "1024",
                 "--step", "10", "--max-shift", "3", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "comparisons per class" in printed and "comparisons per particle" in printed
    assert "2 classes x 12 regions" in printed and "held-out class accuracy" in printed
    assert "classes searched per particle" in printed
    assert json.loads((out / "model" / "config.json").read_text())["n_classes"] == 2
    aligned = read_particles_star(out / "aligned.star")
    assigned = columns.class_numbers(aligned.extra)
    assert np.mean(assigned == truth) >= 0.75
    # the fractions the network's outputs gave (estimated, before alignment) beside the
    # fractions the alignment assigned, read back from the printed summary
    line = next(text for text in printed.splitlines()
                if "class fractions (network estimate -> assigned): " in text)
    shown = np.array([[float(v) for v in item.split(": ")[1].split(" -> ")]
                      for item in line.split("assigned): ")[1].split(", ")])
    assert shown.shape == (2, 2) and shown[:, 0].sum() == pytest.approx(1.0, abs=0.002)
    np.testing.assert_allclose(shown[:, 1], np.bincount(assigned, minlength=2) / len(truth),
                               atol=5e-4)
    assert columns.CLASS_COLUMN not in read_particles_star(out / "predicted.star").extra


def _train(folder, *volumes, out="model2"):
    words = ["train", "--particles", str(folder / "in.star"), "--out", str(folder / out),
             "--spacing", "60", "--epochs", "1", "--images-per-epoch", "128", "--box", "16"]
    for volume in volumes:
        words += ["--volume", str(folder / volume)]
    return main(words)


def test_train_with_two_volumes_records_the_classes_and_refuses_other_maps(inputs, capsys):
    pytest.importorskip("keras")
    folder, _ = inputs
    assert _train(folder, "A.mrc", "B.mrc") == 0
    assert "2 classes x 12 regions" in capsys.readouterr().out
    assert json.loads((folder / "model2" / "config.json").read_text())["n_classes"] == 2
    assert _train(folder, "A.mrc", "B.mrc") == 0
    assert "model: reused from" in capsys.readouterr().out
    assert _train(folder, "B.mrc", "A.mrc") != 0  # another order: other classes
    assert "map (the reference map's values differ)" in capsys.readouterr().err


def test_two_volumes_train_from_projections_only(inputs, capsys):
    folder, _ = inputs
    words = ["train", "--particles", str(folder / "in.star"), "--out", str(folder / "m3"),
             "--volume", str(folder / "A.mrc"), "--volume", str(folder / "B.mrc"),
             "--training-source", "both"]
    assert main(words) != 0
    assert "use --training-source projections, not both" in capsys.readouterr().err
