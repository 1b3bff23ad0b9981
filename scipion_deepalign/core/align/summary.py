"""The numbers that summarise an alignment, computed once from its result columns.

``deepalign align`` writes them beside its output (``NAME.summary.json``,
:func:`~scipion_deepalign.core.io.summary_path`) and the Align/Refine protocols show them;
an alignment done in parts or stream batches is summarised over its merged columns.
"""
from __future__ import annotations

import numpy as np

from ..io import columns

__all__ = ["alignment_summary"]

#: summary key -> (result column, how its values are reduced)
_REDUCTIONS = {
    "median_score": (columns.SCORE_COLUMN, np.median),
    "median_significance": (columns.SIGNIFICANCE_COLUMN, np.median),
    "regions_searched": (columns.REGIONS_SEARCHED_COLUMN, np.mean),
    "global_search": (columns.GLOBAL_SEARCH_COLUMN, np.mean),
    "median_direction_change_deg": (columns.DIRECTION_CHANGE_COLUMN, np.median),
}


def alignment_summary(extras, *, n_input: int | None = None) -> dict:
    """Summary of the result columns of one or more alignment outputs.

    Parameters
    ----------
    extras : dict or sequence of dict
        :attr:`Particles.extra` of ``deepalign align`` outputs (the columns of
        :mod:`~scipion_deepalign.core.io.columns`), one per part or batch.
    n_input : int, optional
        Particles given to the alignment (some may have been left out as unreadable).

    Returns
    -------
    dict
        ``n_aligned``; ``n_input`` when given; ``median_score`` (None without scores);
        ``median_significance``, ``regions_searched`` and ``global_search`` (means: regions
        searched per particle, fraction searched globally) and
        ``median_direction_change_deg`` (from the input poses), each only when its column is
        there (e.g. no regions in a global search, no change without input poses);
        ``class_sizes`` (particles per class, class 1 first) after a several-map alignment.
    """
    if isinstance(extras, dict):
        extras = [extras]
    out = {"n_aligned": int(sum(len(next(iter(e.values()), ())) for e in extras))}
    if n_input is not None:
        out["n_input"] = int(n_input)
    for key, (column, reduce) in _REDUCTIONS.items():
        values = [np.asarray(e[column], dtype=float) for e in extras if column in e]
        if values:
            out[key] = float(reduce(np.concatenate(values)))
    classes = [columns.class_numbers(e) for e in extras if columns.CLASS_COLUMN in e]
    if classes:
        out["class_sizes"] = np.bincount(np.concatenate(classes)).tolist()
    out.setdefault("median_score", None)
    return out
