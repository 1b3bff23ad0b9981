"""The numbers summarising an alignment (core/align/summary.py), over parts or batches."""
import numpy as np
import pytest

from scipion_deepalign.core.align.summary import alignment_summary
from scipion_deepalign.core.io import columns


def test_summary_over_batches_is_over_all_their_particles():
    batches = [{columns.SCORE_COLUMN: np.array([0.2, 0.4]),
                columns.DIRECTION_CHANGE_COLUMN: np.array([1.0, 3.0])},
               {columns.SCORE_COLUMN: np.array([0.9]),
                columns.DIRECTION_CHANGE_COLUMN: np.array([50.0])}]
    summary = alignment_summary(batches, n_input=4)
    assert summary["median_score"] == pytest.approx(0.4)
    assert summary["median_direction_change_deg"] == pytest.approx(3.0)
    assert (summary["n_aligned"], summary["n_input"]) == (3, 4)
    assert "regions_searched" not in summary  # a global search has no such column


def test_regional_columns_are_averaged():
    extra = {columns.SCORE_COLUMN: np.array([0.5, 0.7, 0.6, 0.1]),
             columns.REGIONS_SEARCHED_COLUMN: np.array([1, 2, 1, 4]),
             columns.GLOBAL_SEARCH_COLUMN: np.array([0, 0, 0, 1])}
    summary = alignment_summary(extra)
    assert summary["regions_searched"] == pytest.approx(2.0)
    assert summary["global_search"] == pytest.approx(0.25)
    assert "n_input" not in summary and alignment_summary([]) == {"n_aligned": 0,
                                                                  "median_score": None}
