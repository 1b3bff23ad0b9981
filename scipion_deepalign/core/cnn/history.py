"""Reading the training histories of a model folder (layout in :mod:`.config`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import REGIONS_FILE

__all__ = ["read_histories", "region_accuracy", "shared_region_counts"]


def read_histories(model_dir) -> dict:
    """Training histories of a model folder.

    Parameters
    ----------
    model_dir : str or Path

    Returns
    -------
    dict of int to dict
        1-based region number (0 for a shared network) -> the ``history_*.json`` content, for
        the networks actually trained (regions skipped for too few particles are left out).
    """
    histories = {}
    for path in sorted(Path(model_dir).glob("history_*.json")):
        history = json.loads(path.read_text())
        if history.get("skipped"):
            continue
        tag = path.stem[len("history_"):]
        histories[int(tag) if tag.isdigit() else 0] = history
    return histories


def region_accuracy(model_dir):
    """Region centres and the best validation accuracy of each region's network.

    Parameters
    ----------
    model_dir : str or Path

    Returns
    -------
    centres_deg : ndarray of shape (R, 2)
    val_accuracy : ndarray of shape (R,)
        NaN for regions without a network of their own (skipped, or a shared network:
        see :func:`shared_region_counts`).
    """
    from ..io import read_regions_star

    centres_deg, _, _ = read_regions_star(Path(model_dir) / REGIONS_FILE)
    accuracy = np.full(len(centres_deg), np.nan)
    for region, history in read_histories(model_dir).items():
        if 1 <= region <= len(centres_deg) and history.get("val_accuracy"):
            accuracy[region - 1] = np.max(history["val_accuracy"])
    return np.asarray(centres_deg), accuracy


def shared_region_counts(model_dir):
    """What a shared network records per region: training particles, and its one accuracy.

    Parameters
    ----------
    model_dir : str or Path

    Returns
    -------
    (centres_deg, counts, val_accuracy) or None
        ``centres_deg`` of shape (R, 2), ``counts`` of shape (R,) (training particles per
        region, zeros when the history does not record them), ``val_accuracy`` the best
        validation accuracy (None if not recorded); None for a model without a shared network.
    """
    from ..io import read_regions_star

    history = read_histories(model_dir).get(0)
    if history is None:
        return None
    centres_deg, _, _ = read_regions_star(Path(model_dir) / REGIONS_FILE)
    counts = np.zeros(len(centres_deg))
    recorded = history.get("n_particles_per_region") or []
    counts[:min(len(recorded), len(counts))] = recorded[:len(counts)]
    accuracy = max(history["val_accuracy"]) if history.get("val_accuracy") else None
    return np.asarray(centres_deg), counts, accuracy
