"""The (class, region) pairs each particle of a K-map network is searched in (issue 25).

The pairs a particle is searched in are its most probable ones (of the joint output,
:mod:`.joint`) until their probabilities reach the search's probability mass, as regions are
for a single map (:func:`~..align.search_plan.select_regions`, the same rule):
:func:`select_pairs`, :func:`search_pairs`. :func:`top_pairs` gives each particle's best pairs
as ``deepalign predict`` and ``run`` write them to STAR; :func:`search_top_pairs` applies the
same rule to them (``deepalign align --model``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .joint import split_joint

__all__ = ["ClassPairs", "top_pairs", "select_pairs", "search_pairs", "search_top_pairs"]


@dataclass
class ClassPairs:
    """The (class, region) pairs each particle is searched in, best first.

    Attributes
    ----------
    classes, regions : int ndarray of shape (N, m)
        0-based; -1 after a particle's last pair.
    probabilities : ndarray of shape (N, m)
        Joint probabilities of the pairs (0 after the last).
    class_probabilities : ndarray of shape (N, K)
        Each class's probability (:func:`.joint.class_probabilities`).
    """

    classes: np.ndarray
    regions: np.ndarray
    probabilities: np.ndarray
    class_probabilities: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(self.class_probabilities.shape[1])

    def members(self, k: int):
        """``(rows, hints, probabilities)`` of class ``k``: the particles with a pair of
        class ``k``, and their regions of that class (best first, each row padded with its
        first region, probability 0)."""
        mine = self.classes == int(k)
        rows = np.flatnonzero(mine.any(axis=1))
        mine = mine[rows]
        width = max(1, int(mine.sum(axis=1).max())) if len(rows) else 1
        order = np.argsort(~mine, axis=1, kind="stable")[:, :width]  # class-k pairs first
        hints = np.take_along_axis(self.regions[rows], order, axis=1)
        probs = np.take_along_axis(self.probabilities[rows], order, axis=1)
        kept = np.take_along_axis(mine, order, axis=1)
        hints = np.where(kept, hints, hints[:, :1])
        return rows, hints, np.where(kept, probs, 0.0)


def top_pairs(probabilities, n_classes: int, k: int):
    """Each particle's ``k`` most probable (class, region) pairs, best first.

    Parameters
    ----------
    probabilities : ndarray of shape (N, K * R)
        The network's joint output (:func:`~.predict.predict_probabilities`).
    n_classes : int
    k : int
        Pairs kept (at most ``K * R``).

    Returns
    -------
    classes, regions : int ndarray of shape (N, k)
        0-based.
    probabilities : ndarray of shape (N, k)
        Their joint probabilities, non-increasing along each row (what ``deepalign predict``
        writes, :func:`~..io.columns.set_pair_columns`).
    """
    from .predict import top_k_regions

    joint = split_joint(probabilities, n_classes)
    flat = joint.reshape(len(joint), -1)
    order, probs = top_k_regions(flat, min(int(k), flat.shape[1]))
    return order // joint.shape[2], order % joint.shape[2], probs


def select_pairs(probabilities, n_classes: int, *, probability_mass=None,
                 max_pairs=None) -> ClassPairs:
    """Each particle's most probable (class, region) pairs (module docstring).

    Parameters
    ----------
    probabilities : ndarray of shape (N, K * R)
        The network's joint output (:func:`~.predict.predict_probabilities`).
    n_classes : int
    probability_mass : float in (0, 1], optional
        Pairs are kept, best first, until their probabilities reach it (the search's
        ``SearchOptions.probability_mass``); None: ``max_pairs`` pairs.
    max_pairs : int, optional
        At most this many pairs (``SearchOptions.max_regions``); None: the search's default.

    Returns
    -------
    ClassPairs
    """
    joint = split_joint(probabilities, n_classes)
    k = _pair_limit(joint.shape[1] * joint.shape[2], max_pairs)
    classes, regions, probs = top_pairs(probabilities, n_classes, k)
    return _keep_pairs(classes, regions, probs, joint.sum(axis=2),
                       probability_mass=probability_mass, max_pairs=k)


def _pair_limit(width: int, max_pairs) -> int:
    """How many of ``width`` best pairs :func:`select_pairs` considers."""
    from ..align.search_plan import SearchOptions

    limit = SearchOptions.default("max_regions") if max_pairs is None else max_pairs
    return min(int(width), int(limit or width))


def _keep_pairs(classes, regions, probs, class_probs, *, probability_mass,
                max_pairs) -> ClassPairs:
    """The rule: of the best pairs (best first), those :func:`~..align.search_plan.
    select_regions` keeps (the probability mass, at most ``max_pairs``)."""
    from ..align.search_plan import select_regions

    classes, regions = np.asarray(classes, np.int64), np.asarray(regions, np.int64)
    probs = np.asarray(probs, np.float64)
    index = np.where(classes >= 0, np.arange(classes.shape[1])[None, :], -1)
    kept = select_regions(index, probs, probability_mass=probability_mass,
                          top_k=None if probability_mass else max_pairs,
                          max_regions=max_pairs) >= 0
    return ClassPairs(classes=np.where(kept, classes, -1),
                      regions=np.where(kept, regions, -1),
                      probabilities=np.where(kept, probs, 0.0),
                      class_probabilities=class_probs)


def _search_rule(search, top_k):
    """``(probability_mass, max_pairs)`` of the search: its mass and most regions, or the
    ``top_k`` best pairs where it has no mass."""
    from ..align.search_plan import SearchOptions

    search = search or SearchOptions()
    mass = search.probability_mass
    return mass, (search.max_regions if mass else top_k)


def search_pairs(probabilities, n_classes: int, search=None, *, top_k: int) -> ClassPairs:
    """The (class, region) pairs the search takes: :func:`select_pairs` with ``search``'s
    probability mass and most regions, or the ``top_k`` best pairs where the search has no
    mass (``search`` None: the default :class:`~..align.search_plan.SearchOptions`). The one
    rule of ``deepalign run``, ``deepalign align --model`` (:func:`search_top_pairs`) and
    ``classify --cnn``."""
    mass, max_pairs = _search_rule(search, top_k)
    return select_pairs(probabilities, n_classes, probability_mass=mass, max_pairs=max_pairs)


def search_top_pairs(classes, regions, probabilities, n_classes: int, search=None, *,
                     top_k=None) -> ClassPairs:
    """:func:`search_pairs` from each particle's best pairs as written (:func:`top_pairs`,
    the pair columns of ``deepalign predict``) instead of the whole output.

    The same pairs as :func:`search_pairs` on the output they came from whenever they hold at
    least as many pairs as the rule considers (``search.max_regions`` with a probability mass,
    else ``top_k``); fewer limit the search to them.

    Parameters
    ----------
    classes, regions : int ndarray of shape (N, m)
        0-based, best first.
    probabilities : ndarray of shape (N, m)
        Their joint probabilities.
    n_classes : int
        K (classes may lack pairs in every row).
    search : SearchOptions, optional
    top_k : int, optional
        Pairs kept where the search has no probability mass; default all ``m``.

    Returns
    -------
    ClassPairs
        ``class_probabilities`` holds each class's probability summed over the given pairs
        only (a lower bound of the network's).
    """
    classes = np.asarray(classes, np.int64)
    probs = np.asarray(probabilities, np.float64)
    if classes.ndim != 2 or classes.shape != np.shape(regions) or classes.shape != probs.shape:
        raise ValueError(f"pairs must be three (N, m) arrays, got {classes.shape}, "
                         f"{np.shape(regions)} and {probs.shape}")
    if classes.size and (classes.min() < 0 or classes.max() >= int(n_classes)):
        raise ValueError(f"pair classes must be in 0..{int(n_classes) - 1}, got "
                         f"{classes.min()}..{classes.max()}")
    mass, max_pairs = _search_rule(search, top_k)
    k = _pair_limit(classes.shape[1], max_pairs)
    class_probs = np.zeros((len(classes), int(n_classes)))
    np.add.at(class_probs, (np.arange(len(classes))[:, None], classes), probs)
    return _keep_pairs(classes[:, :k], np.asarray(regions, np.int64)[:, :k], probs[:, :k],
                       class_probs, probability_mass=mass, max_pairs=k)
