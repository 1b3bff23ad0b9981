"""Training histories: THE held-out accuracy, the region hit rate, early stopping on it, and
the near-chance warnings.

The functions on history dicts (:func:`best_validation_accuracy`,
:func:`best_region_hit_rate`, :func:`near_chance_warnings`) and the early-stopping rule
(:class:`PlateauStop` on :func:`region_hit_rate`) are defined here once; reading them from
a model folder is :class:`~.model_folder.ModelFolder`'s job, and :func:`read_histories`,
:func:`region_accuracy` and :func:`shared_region_counts` ask it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["read_histories", "region_accuracy", "shared_region_counts",
           "best_validation_accuracy", "best_region_hit_rate", "kept_epoch",
           "near_chance_warnings", "NEAR_CHANCE_FACTOR", "HIT_RATE_MIN_DELTA", "HIT_RATE_MASS",
           "HIT_RATE_MAX_REGIONS",
           "region_hit_rate", "PlateauStop", "plateau_epochs"]


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


def kept_epoch(history: dict):
    """0-based epoch whose weights the model kept: ``best_epoch`` when training recorded it
    (the shared network, early stopping on the region hit rate), else the epoch of lowest
    ``val_loss`` (the regional networks' early stopping); None without either."""
    if history.get("best_epoch") is not None:
        return int(history["best_epoch"])
    losses = history.get("val_loss")
    return int(np.argmin(losses)) if losses else None


def best_validation_accuracy(history: dict):
    """Held-out accuracy of the kept model: ``val_accuracy`` at :func:`kept_epoch`; the
    highest ``val_accuracy`` when no epoch was recorded as kept; None without
    ``val_accuracy``."""
    accuracy = history.get("val_accuracy")
    if not accuracy:
        return None
    epoch = kept_epoch(history)
    if epoch is None or epoch >= len(accuracy):
        return float(np.max(accuracy))
    return float(accuracy[epoch])


def best_region_hit_rate(history: dict):
    """Held-out region hit rate (:func:`region_hit_rate`) of the kept model, None when the
    history has none (regional networks, folders written before it was recorded)."""
    hits = history.get("val_region_hit")
    if not hits:
        return None
    epoch = kept_epoch(history)
    return float(hits[epoch] if epoch is not None and epoch < len(hits) else np.max(hits))

#: Early stopping of the shared network: an epoch improves on the best when its held-out
#: region hit rate is higher by more than this (about the sampling error of a rate near 0.9
#: measured on the 2 048 validation projections).
HIT_RATE_MIN_DELTA = 0.005
#: the regions the hit rate counts: best first until their probabilities reach this mass,
#: at most HIT_RATE_MAX_REGIONS (the search's defaults when the stopping rule was measured,
#: docs/benchmarks_cnn.md; kept when the search's own became 0.75 and 16, which would move
#: every training's stopping epoch: docs/benchmarks_accuracy.md, "Regions searched")
HIT_RATE_MASS = 0.9
HIT_RATE_MAX_REGIONS = 6


def region_hit_rate(probabilities, true_regions, *, probability_mass=None,
                    max_regions=None) -> float:
    """Fraction of images whose true region is among the regions a search would take.

    The regions taken are those a search of mass :data:`HIT_RATE_MASS` and at most
    :data:`HIT_RATE_MAX_REGIONS` regions would take
    (:func:`~scipion_deepalign.core.align.search_plan.select_regions`), best first.

    Parameters
    ----------
    probabilities : ndarray of shape (N, R)
        The network's region probabilities.
    true_regions : int ndarray of shape (N,)
        0-based true region of each image.
    probability_mass, max_regions : float, int, optional
        Default: :data:`HIT_RATE_MASS` and :data:`HIT_RATE_MAX_REGIONS`.

    Returns
    -------
    float
        In [0, 1]; NaN for no image.
    """
    # imported here: reading a model folder needs no alignment code
    from ..align.search_plan import select_regions

    probs = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(true_regions, dtype=np.int64)
    if probs.ndim != 2 or truth.shape != (len(probs),):
        raise ValueError(f"probabilities must have shape (N, R) and true_regions (N,), got "
                         f"{probs.shape} and {truth.shape}")
    if not len(probs):
        return float("nan")
    mass = HIT_RATE_MASS if probability_mass is None else probability_mass
    limit = HIT_RATE_MAX_REGIONS if max_regions is None else max_regions
    k = min(probs.shape[1], int(limit or probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    taken = select_regions(order, np.take_along_axis(probs, order, axis=1),
                           probability_mass=mass, max_regions=limit)
    return float(np.mean((taken == truth[:, None]).any(axis=1)))


class PlateauStop:
    """Early stopping on a score that should rise (the held-out region hit rate).

    Feed it one score per epoch (:meth:`update`); it says which epoch is the best so far
    (the weights to keep) and when to stop: after ``patience`` epochs without a score
    higher than the best by more than ``min_delta``. Epochs before ``start_epoch`` (the
    noise curriculum, whose training images are cleaner than the validation ones) are
    neither kept nor counted.

    Parameters
    ----------
    patience : int
        0: never stop early (the best epoch is still tracked).
    min_delta : float
    start_epoch : int
        0-based first epoch that counts.
    """

    def __init__(self, *, patience: int, min_delta: float = HIT_RATE_MIN_DELTA,
                 start_epoch: int = 0):
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.start_epoch = int(start_epoch)
        self.best_epoch = None
        self.best = -np.inf
        self.wait = 0

    def update(self, epoch: int, score: float) -> tuple[bool, bool]:
        """Record ``score`` of 0-based ``epoch``; returns ``(is_best, stop)``."""
        if epoch < self.start_epoch or not np.isfinite(score):
            return False, False
        if self.best_epoch is None or score > self.best + self.min_delta:
            self.best, self.best_epoch, self.wait = float(score), int(epoch), 0
            return True, False
        self.wait += 1
        return False, 0 < self.patience <= self.wait


def plateau_epochs(scores, *, patience: int, min_delta: float = HIT_RATE_MIN_DELTA,
                   start_epoch: int = 0) -> tuple[int | None, int | None]:
    """:class:`PlateauStop` over a whole history: ``(best_epoch, stop_epoch)`` (0-based;
    ``stop_epoch`` None when it ran to the end)."""
    rule = PlateauStop(patience=patience, min_delta=min_delta, start_epoch=start_epoch)
    for epoch, score in enumerate(scores):
        if rule.update(epoch, score)[1]:
            return rule.best_epoch, epoch
    return rule.best_epoch, None
