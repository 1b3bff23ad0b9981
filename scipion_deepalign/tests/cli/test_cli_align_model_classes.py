"""``deepalign align --model MODEL --volume A --volume B`` with a model trained from two maps:
``deepalign predict`` writes each particle's (class, region) pairs, ``align --model`` searches
them as ``deepalign run`` does (the same classes and poses as run on the same particles); a
number of maps other than the model's classes, or particles without the pairs, refused
before any search, naming the option."""
import json

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.io import columns, read_particles_star
from scipion_deepalign.tests.helpers import write_pair_mixture

pytest.importorskip("keras")

SEARCH = ["--step", "10", "--max-shift", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A two-map mixture and ``deepalign run``'s folder on it (model, predicted, aligned)."""
    folder = tmp_path_factory.mktemp("align_model_classes")
    truth = write_pair_mixture(folder, 16, snr=0.5, seed=7, pixel_size_a=4.0)
    assert main(["run", "--particles", str(folder / "in.star"), "--volume",
                 str(folder / "A.mrc"), "--volume", str(folder / "B.mrc"),
                 "--out", str(folder / "run"), "--spacing", "60", "--epochs", "4",
                 "--images-per-epoch", "1024", *SEARCH]) == 0
    return folder, truth


def _align(folder, particles, *volumes, out="aligned.star"):
    words = ["align", "--particles", str(particles), "--model", str(folder / "run" / "model"),
             "--out", str(folder / out), *SEARCH]
    for volume in volumes:
        words += ["--volume", str(folder / volume)]
    return main(words)


def _pairs(path):
    return columns.class_pairs(read_particles_star(path).extra)


def test_predict_writes_the_pairs_run_writes(run_folder, capsys):
    folder, _ = run_folder
    assert main(["predict", "--particles", str(folder / "in.star"), "--model",
                 str(folder / "run" / "model"), "--out", str(folder / "pred.star")]) == 0
    assert "(class, region) pairs of 2 classes" in capsys.readouterr().out
    predicted = read_particles_star(folder / "pred.star")
    classes, regions, probs = columns.class_pairs(predicted.extra)
    assert classes.max() <= 1 and regions.max() < 12  # 2 classes x 12 regions, 0-based
    assert np.all(np.diff(probs, axis=1) <= 1e-7)  # best first
    # the region columns are the regions whatever the class (1..12), as run writes them
    assert np.max(columns.region_hints(predicted.extra)) < 12
    run_classes, run_regions, run_probs = _pairs(folder / "run" / "predicted.star")
    np.testing.assert_array_equal(classes[:, 0], run_classes[:, 0])
    np.testing.assert_array_equal(regions[:, 0], run_regions[:, 0])
    np.testing.assert_allclose(probs[:, 0], run_probs[:, 0], atol=1e-4)


@pytest.mark.parametrize("source", ["run", "predict"])
def test_align_model_of_two_maps_agrees_with_run(run_folder, capsys, source):
    folder, truth = run_folder
    if source == "predict" and not (folder / "pred.star").exists():
        assert main(["predict", "--particles", str(folder / "in.star"), "--model",
                     str(folder / "run" / "model"), "--out", str(folder / "pred.star")]) == 0
    particles = folder / ("run/predicted.star" if source == "run" else "pred.star")
    capsys.readouterr()
    out = f"aligned_{source}.star"
    assert _align(folder, particles, "A.mrc", "B.mrc", out=out) == 0
    printed = capsys.readouterr().out
    assert "comparisons per class: 1: " in printed and "classes searched per particle" in printed
    aligned = read_particles_star(folder / out)
    assigned = columns.class_numbers(aligned.extra)
    assert np.mean(assigned == truth) >= 0.75  # chance: 0.5
    assert set(np.asarray(aligned.extra[columns.CLASS_COLUMN], float)) <= {1.0, 2.0}
    prob = np.asarray(aligned.extra[columns.CLASS_PROB_COLUMN], float)
    assert np.all((prob >= 0.5) & (prob <= 1.0))
    ran = read_particles_star(folder / "run" / "aligned.star")
    assert np.mean(assigned == columns.class_numbers(ran.extra)) >= 0.9
    if source == "run":  # the same pairs, the same search: the same classes and poses
        np.testing.assert_array_equal(assigned, columns.class_numbers(ran.extra))
        np.testing.assert_allclose(aligned.angles_deg, ran.angles_deg, atol=1e-3)
        np.testing.assert_array_equal(aligned.extra[columns.REGIONS_SEARCHED_COLUMN],
                                      ran.extra[columns.REGIONS_SEARCHED_COLUMN])
    summary = json.loads((folder / f"aligned_{source}.summary.json").read_text())
    assert summary["class_sizes"] == np.bincount(assigned, minlength=2).tolist()


@pytest.mark.parametrize("volumes", [("A.mrc",), ("A.mrc", "B.mrc", "A.mrc")],
                         ids=["one", "three"])
def test_invalid_number_of_volumes_names_the_model_classes(run_folder, capsys, volumes):
    folder, _ = run_folder
    assert _align(folder, folder / "run" / "predicted.star", *volumes, out="bad.star") != 0
    err = capsys.readouterr().err
    assert f"--volume: {len(volumes)} map(s) given" in err and "trained on 2 classes" in err
    assert not (folder / "bad.star").exists()


def test_invalid_particles_without_pairs_say_to_predict(run_folder, capsys):
    folder, _ = run_folder
    assert _align(folder, folder / "in.star", "A.mrc", "B.mrc", out="bad.star") != 0
    err = capsys.readouterr().err
    assert "--particles has no deepalignPairClass1 column" in err
    assert "run deepalign predict --model MODEL_DIR" in err
    assert not (folder / "bad.star").exists()
