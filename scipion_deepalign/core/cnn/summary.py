"""The numbers that summarise a region prediction, computed once from its result columns.

``deepalign predict`` writes them beside its output (``NAME.summary.json``,
:func:`~scipion_deepalign.core.io.summary_path`) and the Predict protocol shows them; a
prediction done in parts or stream batches is summarised over its merged columns. Light: no
Keras.
"""
from __future__ import annotations

import numpy as np

from ..io import columns

__all__ = ["prediction_summary"]


def prediction_summary(extras) -> dict:
    """Summary of the region columns of one or more ``deepalign predict`` outputs.

    Parameters
    ----------
    extras : dict or sequence of dict
        :attr:`Particles.extra` of the outputs (the first region column and its
        probability at least, :mod:`~scipion_deepalign.core.io.columns`), one per part or
        batch.

    Returns
    -------
    dict
        ``n_predicted``; and when there is any particle: ``top_probability_mean`` and
        ``top_probability_median`` (of each particle's most probable region),
        ``regions_first`` (distinct regions predicted first) and ``largest_region_count``
        (particles of the most frequent first region).
    """
    if isinstance(extras, dict):
        extras = [extras]
    extras = [e for e in extras if e]
    top = [columns.region_hints(e, 1)[:, 0] for e in extras]
    prob = [np.asarray(e[columns.PROB_COLUMN % 1], dtype=float) for e in extras]
    n = int(sum(len(t) for t in top))
    if not n:
        return {"n_predicted": 0}
    top, prob = np.concatenate(top), np.concatenate(prob)
    counts = np.bincount(top)
    return {"n_predicted": n, "top_probability_mean": float(np.mean(prob)),
            "top_probability_median": float(np.median(prob)),
            "regions_first": int(np.count_nonzero(counts)),
            "largest_region_count": int(counts.max())}
