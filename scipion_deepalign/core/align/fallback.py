"""The significance fallback: particles whose best pose in their regions stood out too little
are searched again, globally, and take the poses of that search.

After the regional search, a particle whose best gallery pose has a
:func:`~.search.peak_significance` below ``SearchOptions.fallback_significance`` was probably
searched in the wrong regions (the network was sure, but wrong). The global gallery holds
every regional direction, so the new pose is the best of everything the particle met. The
second pass is the alignment's own global search step (:func:`.align.align_particles` hands
it in), on the same galleries: only the directions the first pass did not meet are projected.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext

import numpy as np

from ..runtime.progress import Progress

__all__ = ["SIGNIFICANCE_SEPARATION", "significance_fallback", "fallback_catches"]

logger = logging.getLogger(__name__)

_SIGNIFICANCE_WARNING = 0.5  # share of particles the significance fallback warns about
#: the significance fallback is used only when the best-posed quarter of the particles stands
#: this many times above its threshold (75th percentile of the significance): measured, the
#: 70S ribosome's quarter is at 1.78-1.94, 8zpm's (where good and bad poses have the same
#: significance) at 0.91 (docs/benchmarks_accuracy.md)
SIGNIFICANCE_SEPARATION = 1.25


def fallback_catches(significance, threshold):
    """The particles the significance fallback sends to the global search: the one rule.

    Parameters
    ----------
    significance : ndarray of shape (N,)
        Each particle's best-pose significance (``AlignmentResult.significance``).
    threshold : float or None
        ``SearchOptions.fallback_significance``; 0 or None: never.

    Returns
    -------
    caught : bool ndarray of shape (N,)
        Significance below ``threshold``, where the significance separates (else none).
    separates : bool or None
        Whether the best-posed quarter stands :data:`SIGNIFICANCE_SEPARATION` times above
        ``threshold``; None without a threshold or particles.
    upper : float or None
        That quarter's significance (its 75th percentile).
    """
    significance = np.asarray(significance, dtype=np.float64)
    threshold = float(threshold or 0.0)
    if threshold <= 0 or len(significance) == 0:
        return np.zeros(len(significance), bool), None, None
    upper = float(np.percentile(significance, 75))
    separates = upper >= SIGNIFICANCE_SEPARATION * threshold
    return (significance < threshold) & separates, separates, upper


def significance_fallback(result, *, threshold, n_regions, search_globally,
                          show_progress=False) -> None:
    """Search globally, again, the particles of ``result`` whose significance is below
    ``threshold``, and take those poses (in place).

    Parameters
    ----------
    result : align.AlignmentResult
        The regional alignment; its ``fallback``, ``n_regions_searched``, ``info`` and the
        poses of the particles searched again are updated.
    threshold : float or None
        ``SearchOptions.fallback_significance``; 0 or None: never.
    n_regions : int
        Regions of the model (what a global search counts as searched).
    search_globally : callable
        ``search_globally(rows, progress)``: the :class:`~.align.AlignmentResult` of the
        global search of particles ``rows`` (0-based, increasing).
    show_progress : bool
        Whether the second pass reports a progress of its own ("align (global fallback)").

    Notes
    -----
    Used only where the significance separates good poses from bad ones: the best-posed
    quarter of the particles must stand :data:`SIGNIFICANCE_SEPARATION` times above the
    threshold (``info["significance_separates"]``).
    """
    result.info["significance_fallback_fraction"] = 0.0
    caught, separates, upper = fallback_catches(result.significance, threshold)
    if separates is None:
        return
    result.info["significance_separates"] = separates
    if not separates:
        logger.info("significance fallback not used: the best-posed quarter of the particles "
                    "has a significance of %.2f or less, too close to the threshold %g for the "
                    "significance to tell good poses from bad ones on these data", upper,
                    threshold)
        return
    redo = np.flatnonzero(caught & ~result.fallback)
    share = result.info["significance_fallback_fraction"] = len(redo) / len(result.score)
    if len(redo) == 0:
        return
    logger.info("searching %d particles (%.1f %%) globally: their best pose in the predicted "
                "regions stood out too little (significance < %g)", len(redo), 100.0 * share,
                threshold)
    if share > _SIGNIFICANCE_WARNING:
        logger.warning(
            "the significance fallback sends %.0f %% of the particles to the global search "
            "(median significance %.2f, threshold %g): on these data the significance does not "
            "tell good poses from bad ones (small particles searched at a coarse resolution "
            "have significances below 1 even when right), and this costs more than the global "
            "search itself; lower --fallback-significance or set it to 0", 100.0 * share,
            float(np.median(result.significance)), threshold)
    shown = (Progress(len(redo), "align (global fallback)") if show_progress
             else nullcontext())
    with shown as progress:
        again = search_globally(redo, progress)
    result.replace_rows(redo, again)
    result.fallback[redo] = True
    result.n_regions_searched[redo] = n_regions
    result.info["fallback_fraction"] = float(result.fallback.mean())
    result.info["mean_regions_searched"] = float(result.n_regions_searched.mean())
