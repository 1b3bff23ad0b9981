"""Reading training histories back from a model folder (viewer and demo report use it)."""
import json

import numpy as np
import pytest

from scipion_deepalign.core.cnn.history import read_histories, region_accuracy
from scipion_deepalign.core.io import write_regions_star


def _write(folder, name, history):
    (folder / name).write_text(json.dumps(history))


def test_regional_histories_skip_regions_without_a_network(tmp_path):
    write_regions_star(tmp_path / "regions.star", np.array([[0, 0], [90, 90], [0, 180.0]]),
                       symmetry="c1", spacing_deg=90.0)
    _write(tmp_path, "history_0001.json", {"loss": [1, 0.5], "val_accuracy": [0.6, 0.8]})
    _write(tmp_path, "history_0002.json", {"skipped": True, "n_particles": 2})
    _write(tmp_path, "history_0003.json", {"loss": [1.0], "val_accuracy": [0.7]})
    histories = read_histories(tmp_path)
    assert sorted(histories) == [1, 3]
    assert histories[1]["val_accuracy"] == [0.6, 0.8]
    centres, accuracy = region_accuracy(tmp_path)
    assert centres.shape == (3, 2)
    np.testing.assert_allclose(accuracy[[0, 2]], [0.8, 0.7])
    assert np.isnan(accuracy[1])


def test_shared_history_is_region_zero_and_has_no_per_region_accuracy(tmp_path):
    write_regions_star(tmp_path / "regions.star", np.array([[0, 0], [0, 180.0]]),
                       symmetry="c1", spacing_deg=90.0)
    _write(tmp_path, "history_shared.json", {"loss": [0.2, 0.1], "accuracy": [0.3, 0.4]})
    assert list(read_histories(tmp_path)) == [0]
    _, accuracy = region_accuracy(tmp_path)
    assert np.isnan(accuracy).all()


def test_region_hit_rate_counts_the_regions_the_search_takes():
    from scipion_deepalign.core.cnn.history import region_hit_rate

    probs = np.array([[0.5, 0.45, 0.05],     # true 1: second, inside a 0.9 mass
                      [0.05, 0.15, 0.8]])    # true 0: third, beyond the 0.9 mass
    assert region_hit_rate(probs, [1, 0], probability_mass=0.9, max_regions=6) == 0.5
    assert region_hit_rate(probs, [1, 0], probability_mass=1.0, max_regions=6) == 1.0
    assert region_hit_rate(probs, [1, 0], probability_mass=1.0, max_regions=1) == 0.0
    assert region_hit_rate(probs, [0, 2]) == 1.0  # HIT_RATE_MASS, ..._MAX_REGIONS: top-1 taken
    with pytest.raises(ValueError, match="true_regions"):
        region_hit_rate(probs, [0, 1, 2])


def test_early_stopping_stops_on_a_plateau_and_keeps_the_best_epoch():
    from scipion_deepalign.core.cnn.history import plateau_epochs

    rising_then_flat = [0.2, 0.5, 0.70, 0.80, 0.803, 0.801, 0.804, 0.9]
    # 0.803 and 0.804 are not gains above 0.005: three flat epochs after epoch 3 stop it
    assert plateau_epochs(rising_then_flat, patience=3) == (3, 6)
    assert plateau_epochs(rising_then_flat, patience=5) == (7, None)  # it ran to the end
    assert plateau_epochs(rising_then_flat, patience=0) == (7, None)  # 0: never stops
    # the noise curriculum's epochs count neither as best nor as waiting
    assert plateau_epochs([0.9, 0.5, 0.6, 0.6, 0.6], patience=2, start_epoch=1) == (2, 4)
    # a history that keeps improving is never stopped
    assert plateau_epochs(np.linspace(0.1, 0.9, 20), patience=2) == (19, None)


def test_kept_epoch_is_the_recorded_best_else_the_lowest_validation_loss():
    from scipion_deepalign.core.cnn.history import (
        best_region_hit_rate,
        best_validation_accuracy,
        kept_epoch,
    )

    shared = {"val_loss": [2.0, 1.0, 1.5], "val_accuracy": [0.1, 0.3, 0.4],
              "val_region_hit": [0.5, 0.7, 0.8], "best_epoch": 2}
    assert kept_epoch(shared) == 2 and best_validation_accuracy(shared) == 0.4
    assert best_region_hit_rate(shared) == 0.8
    older = {k: v for k, v in shared.items() if k not in ("best_epoch", "val_region_hit")}
    assert kept_epoch(older) == 1 and best_validation_accuracy(older) == 0.3
    assert best_region_hit_rate(older) is None


def test_held_out_scores_stop_a_network_that_no_longer_learns():
    """A network that cannot change (learning rate ~0, no normalisation layers) has the same
    hit rate every epoch: training stops ``patience`` epochs after the first counted one."""
    keras = pytest.importorskip("keras")
    from scipion_deepalign.core.cnn.config import TrainConfig
    from scipion_deepalign.core.cnn.fit import fit_model
    from scipion_deepalign.tests.helpers import tiny_region_network

    keras.utils.set_random_seed(0)
    model, batches, x, y = tiny_region_network(keras, learning_rate=1e-12)
    config = TrainConfig(epochs=20, patience=3, noise_ramp_epochs=2)
    history = fit_model(model, batches, (x, y), config, label="test", shared=True)
    assert config.ramp_epochs == 2
    assert history["best_epoch"] == 2 and history["stopped_epoch"] == 5
    assert len(history["loss"]) == len(history["val_region_hit"]) == 6
    assert len(set(history["val_region_hit"])) == 1
