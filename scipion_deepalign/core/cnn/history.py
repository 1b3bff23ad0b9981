"""Training histories: THE held-out accuracy and the near-chance warnings.

The functions on history dicts (:func:`best_validation_accuracy`,
:func:`near_chance_warnings`) are defined here once; reading them from a model folder is
:class:`~.model_folder.ModelFolder`'s job, and :func:`read_histories`,
:func:`region_accuracy` and :func:`shared_region_counts` ask it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["read_histories", "region_accuracy", "shared_region_counts",
           "best_validation_accuracy", "near_chance_warnings", "NEAR_CHANCE_FACTOR"]


def _folder(model_dir):
    from .model_folder import ModelFolder  # it imports this module

    return ModelFolder(model_dir)


def read_histories(model_dir) -> dict:
    """Training histories of a model folder (:meth:`.model_folder.ModelFolder.histories`).

    Parameters
    ----------
    model_dir : str or Path

    Returns
    -------
    dict of int to dict
        1-based region number (0 for a shared network) -> the ``history_*.json`` content, for
        the networks actually trained (regions skipped for too few particles are left out).
    """
    return _folder(model_dir).histories()


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
    folder = _folder(model_dir)
    centres_deg, _, _ = folder.read_regions()
    accuracy = np.full(len(centres_deg), np.nan)
    for region, value in folder.best_accuracy().items():
        if 1 <= region <= len(centres_deg):
            accuracy[region - 1] = value
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
    folder = _folder(model_dir)
    history = folder.histories().get(0)
    if history is None:
        return None
    centres_deg, _, _ = folder.read_regions()
    counts = np.zeros(len(centres_deg))
    recorded = history.get("n_particles_per_region") or []
    counts[:min(len(recorded), len(counts))] = recorded[:len(counts)]
    accuracy = best_validation_accuracy(history)
    return np.asarray(centres_deg), counts, accuracy


#: A model whose held-out accuracy is below this multiple of chance is reported as useless.
NEAR_CHANCE_FACTOR = 2.0


def near_chance_warnings(histories: dict, n_regions: int) -> list:
    """One message per model whose held-out accuracy is near chance.

    Chance is ``1/R`` for the shared network (its accuracy is "the highest output is the
    true region") and 0.5 for a regional network (balanced binary accuracy); "near" is
    below :data:`NEAR_CHANCE_FACTOR` times chance (regional: below 0.6).
    """
    messages = []
    for key, history in histories.items():
        accuracy = best_validation_accuracy(history)
        if accuracy is None:
            continue
        shared = key == "shared"
        chance = 1.0 / n_regions if shared else 0.5
        limit = NEAR_CHANCE_FACTOR * chance if shared else 0.6
        if accuracy < limit:
            name = "the shared network" if shared else f"region {key}'s network"
            messages.append(
                f"{name} reached a held-out accuracy of {accuracy:.3f}, near chance "
                f"({chance:.3f}): its region predictions say little about these particles. "
                "Train from projections of the reference map (training source "
                "'projections'), give more training particles, or use a coarser region "
                "spacing")
    return messages


def best_validation_accuracy(history: dict):
    """Held-out accuracy of the kept model: ``val_accuracy`` at the epoch of lowest
    ``val_loss`` (the weights early stopping restores); the highest ``val_accuracy`` when no
    ``val_loss`` was recorded; None without ``val_accuracy``."""
    accuracy = history.get("val_accuracy")
    if not accuracy:
        return None
    losses = history.get("val_loss")
    if not losses:
        return float(np.max(accuracy))
    return float(accuracy[int(np.argmin(losses))])
