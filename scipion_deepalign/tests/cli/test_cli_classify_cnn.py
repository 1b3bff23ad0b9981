"""``deepalign classify --cnn`` (issue 25): the class network trained on the starting maps in
iteration 1 and fine-tuned from its weights in iteration 2, each particle searched in its
predicted (class, region) pairs; a two-map mixture classed far above chance, the report's
training seconds and comparisons per particle, resuming without retraining, and the network
options refused without --cnn.

Tiny, as test_cli_classify (60 particles of the phantom pair at SNR 1, 40 px) with the
network of test_cli_classes (12 regions of 60 deg, a 24 px input): 2 epochs of 512
projections, then 1 fine-tuning epoch. Measured: 0.82 of the particles in their true class
after iteration 1, 0.83 after iteration 2 (chance 0.5); the whole fixture 27 s on two loaded
cores (load 4), most of it the two trainings' fixed cost (the 2 048 held-out projections).
"""
import json
import os

import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.cli import main  # noqa: E402
from scipion_deepalign.core.io import columns, read_particles_star  # noqa: E402
from scipion_deepalign.tests.helpers import write_pair_mixture  # noqa: E402

NETWORK = ["--cnn", "--spacing", "60", "--epochs", "2", "--images-per-epoch", "512",
           "--finetune-epochs", "1", "--step", "10"]


def _classify(folder, *extra, out="cnn"):
    return main(["classify", "--particles", str(folder / "in.star"), "--volume",
                 str(folder / "A.mrc"), "--volume", str(folder / "B.mrc"), "--max-shift", "3",
                 "--device", "cpu", "--out", str(folder / out), *extra])


@pytest.fixture(scope="module")
def classified(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classify_cnn")
    truth = write_pair_mixture(folder, 60, snr=1.0, seed=11, pixel_size_a=4.0,
                               reference_resolution_a=20)
    assert _classify(folder, *NETWORK, "--iterations", "1") == 0  # killed after it, say
    first = os.path.getmtime(folder / "cnn" / "it001" / "model" / "shared.keras")
    assert _classify(folder, *NETWORK, "--iterations", "2", "--stop-fraction", "0") == 0
    return folder, truth, first


def _report(folder):
    return json.loads((folder / "cnn" / "classify.json").read_text())


def test_classes_far_above_chance(classified):
    folder, truth, _ = classified
    for star in (folder / "cnn" / "it001" / "classes.star", folder / "cnn" / "classes.star"):
        assigned = columns.class_numbers(read_particles_star(star).extra)
        assert np.mean(assigned == truth) >= 0.7, star  # chance 0.5; measured 0.82, 0.83


def test_second_iteration_fine_tunes_the_first_network(classified):
    folder, _, _ = classified
    its = _report(folder)["iterations"]
    assert [r["iteration"] for r in its] == [1, 2]
    first, second = its[0]["network"], its[1]["network"]
    assert first["fine_tuned_from"] is None and first["epochs"] == 2
    assert second["fine_tuned_from"] == str(folder / "cnn" / "it001" / "model")
    assert second["epochs"] == 1 and not second["reused"]
    config = json.loads((folder / "cnn" / "it002" / "model" / "config.json").read_text())
    assert config["fine_tuned_from"] == str(folder / "cnn" / "it001" / "model")
    assert config["n_classes"] == 2 and config["config"]["epochs"] == 1
    history = json.loads((folder / "cnn" / "it002" / "model" / "history_shared.json")
                         .read_text())
    assert history["fine_tuned_from"].endswith(os.path.join("it001", "model", "shared.keras"))
    for r in its:  # the report's numbers per iteration
        assert r["network"]["train_seconds"] > 0 and r["comparisons_per_particle"] > 0
        assert 1 <= r["network"]["pairs_per_particle"] <= 24  # 2 classes x 12 regions
    assert _report(folder)["inputs"]["network"]["finetune_epochs"] == 1


def test_resume_does_not_retrain(classified, capsys):
    folder, _, first = classified
    model = folder / "cnn" / "it001" / "model" / "shared.keras"
    assert os.path.getmtime(model) == first  # iteration 2 resumed after it, not retraining
    capsys.readouterr()
    # killed after iteration 2's training, before its iteration.json: its network is reused
    os.remove(folder / "cnn" / "it002" / "iteration.json")
    second = os.path.getmtime(folder / "cnn" / "it002" / "model" / "shared.keras")
    assert _classify(folder, *NETWORK, "--iterations", "2", "--stop-fraction", "0") == 0
    assert os.path.getmtime(folder / "cnn" / "it002" / "model" / "shared.keras") == second
    assert os.path.getmtime(model) == first
    its = _report(folder)["iterations"]
    assert its[1]["network"]["reused"] and its[1]["network"]["epochs"] == 1
    printed = capsys.readouterr().out
    assert "comparisons/particle  training" in printed and "1 resumed from the folder" in printed
    assert "it 2 reused (resumed)" in printed


def test_other_network_options_are_refused(classified, capsys):
    folder, _, _ = classified
    assert _classify(folder, *NETWORK[:-4], "--finetune-epochs", "2", "--step", "10") == 2
    assert "differs: network" in capsys.readouterr().err


def test_network_option_without_cnn_is_refused_naming_it(classified, capsys):
    folder, _, _ = classified
    assert _classify(folder, "--finetune-epochs", "3", out="plain") == 2
    err = capsys.readouterr().err
    assert "--finetune-epochs" in err and "--cnn" in err
    assert not (folder / "plain" / "it001").exists()
