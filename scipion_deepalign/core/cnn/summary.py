"""The numbers that summarise a training and a region prediction, computed once.

``deepalign predict`` writes a prediction's beside its output (``NAME.summary.json``,
:func:`~scipion_deepalign.core.io.summary_path`) and the Predict protocol shows them; a
prediction done in parts or stream batches is summarised over its merged columns. A
training's come from its model folder (:func:`training_summary`). Light: no Keras.
"""
from __future__ import annotations

import numpy as np

from ..io import columns

__all__ = ["prediction_summary", "training_summary"]


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


def training_summary(model_dir) -> dict:
    """What the model folder says of its training.

    Returns
    -------
    dict
        ``n_networks`` (trained), ``skipped_regions`` (1-based, too few particles),
        ``accuracy_mean`` / ``accuracy_min`` (held-out accuracy of the networks that have
        one; absent without), ``training_source`` (when recorded), ``seconds_mean`` /
        ``seconds_total`` (per network; absent when not recorded) and ``warnings`` (networks
        near chance). ``{"n_networks": 0}`` before any network is trained.
    """
    from .model_folder import ModelFolder

    folder = ModelFolder(model_dir)
    trained = list(folder.histories().values())
    if not trained:
        return {"n_networks": 0}
    out = {"n_networks": len(trained), "skipped_regions": folder.skipped_regions(),
           "warnings": folder.near_chance_warnings()}
    accuracy = list(folder.best_accuracy().values())
    if accuracy:
        out.update(accuracy_mean=float(np.mean(accuracy)), accuracy_min=float(np.min(accuracy)))
    if trained[0].get("training_source"):
        out["training_source"] = trained[0]["training_source"]
    seconds = [h["seconds"] for h in trained if "seconds" in h]
    if seconds:
        out.update(seconds_mean=float(np.mean(seconds)), seconds_total=float(np.sum(seconds)))
    return out
