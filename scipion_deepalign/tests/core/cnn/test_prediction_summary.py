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
