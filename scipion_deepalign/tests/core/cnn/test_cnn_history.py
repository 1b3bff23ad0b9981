"""Reading training histories back from a model folder (viewer and demo report use it)."""
import json

import numpy as np

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
