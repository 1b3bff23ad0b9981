"""The numbers summarising a region prediction (core/cnn/summary.py), over parts or batches."""
import numpy as np
import pytest

from scipion_deepalign.core.cnn.summary import prediction_summary
from scipion_deepalign.core.io import columns


def _extra(regions, probs):
    extra = {}
    columns.set_region_hints(extra, np.asarray(regions)[:, None], np.asarray(probs)[:, None])
    return extra


def test_prediction_summary_over_batches():
    summary = prediction_summary([_extra([0, 3, 3], [0.5, 0.9, 0.7]), _extra([3], [0.1])])
    assert summary["n_predicted"] == 4 and summary["regions_first"] == 2
    assert summary["largest_region_count"] == 3  # region 3 (0-based) is first for three
    assert summary["top_probability_mean"] == pytest.approx(0.55)
    assert summary["top_probability_median"] == pytest.approx(0.6)
    assert prediction_summary([]) == {"n_predicted": 0}


def test_training_summary_from_the_model_folder(tmp_path):
    from scipion_deepalign.core.cnn.model_folder import write_json_atomic
    from scipion_deepalign.core.cnn.summary import training_summary

    assert training_summary(tmp_path) == {"n_networks": 0}
    for region, (acc, seconds) in enumerate(((0.9, 10.0), (0.7, 30.0)), start=1):
        write_json_atomic(tmp_path / f"history_{region:04d}.json",
                          {"loss": [1.0, 0.5], "val_loss": [1.0, 0.6],
                           "accuracy": [0.5, acc], "val_accuracy": [0.5, acc],
                           "seconds": seconds, "training_source": "particles"})
    write_json_atomic(tmp_path / "history_0003.json", {"skipped": True})
    summary = training_summary(tmp_path)
    assert summary["n_networks"] == 2 and summary["skipped_regions"] == [3]
    assert summary["seconds_total"] == 40.0 and summary["training_source"] == "particles"
    assert (summary["accuracy_min"], summary["accuracy_mean"]) == pytest.approx((0.7, 0.8))
