"""Angular consensus between several angular assignments of the same particles (paper 2.5).

Several methods (e.g. DeepAlign and a local refinement) assign a pose to every particle. A
particle is trusted when the methods agree: the angle between their projection directions, the
in-plane difference once those directions are aligned, and optionally the distance between
their shifts stay below thresholds. Symmetric-equivalent poses count as the same pose (see
:mod:`scipion_deepalign.core.symmetry`); poses follow :mod:`scipion_deepalign.core.geometry`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from scipion_deepalign.core import defaults
from scipion_deepalign.core.geometry import angle_between_directions_deg, inplane_difference_deg
from scipion_deepalign.core.particles import split_image_name

__all__ = ["ConsensusResult", "angular_consensus", "pair_differences", "match_particles",
           "check_same_geometry"]

# Equivalents whose direction distance is within this of the best one are treated as equally
# close in direction; among them the smallest in-plane difference is taken.
_DIRECTION_TIE_DEG = 1e-3
# Poses (particles x symmetry operators) compared at once; bounds the temporaries.
_POSES_PER_CHUNK = 200_000


@dataclass
class ConsensusResult:
    """Outcome of :func:`angular_consensus` for N particles, M methods and P = M(M-1)/2 pairs.

    Attributes
    ----------
    agree : ndarray of shape (N,), bool
        Particles kept.
    direction_diff_deg : ndarray of shape (N, P)
        Symmetry-aware angle between projection directions, for each pair of methods.
    inplane_diff_deg : ndarray of shape (N, P)
        In-plane difference after mapping the second pose to its symmetric equivalent closest in
        direction to the first.
    shift_diff_px : ndarray of shape (N, P) or None
        Euclidean distance between shifts in pixels (None without shifts).
    pairs : list of (int, int)
        The method indices ``(i, j)``, ``i < j``, of each column.
    source : ndarray of shape (N,), int
        For kept particles, the lowest-index method of the first agreeing group (the one whose
        pose to keep); -1 for rejected ones.
    """

    agree: np.ndarray
    direction_diff_deg: np.ndarray
    inplane_diff_deg: np.ndarray
    shift_diff_px: np.ndarray | None
    pairs: list
    source: np.ndarray

    def sorted_direction_diff_deg(self, pair: int = 0) -> np.ndarray:
        """Direction differences of one pair sorted from lowest to highest (shape (N,))."""
        return np.sort(self.direction_diff_deg[:, pair])

    def fraction_below(self, thresholds_deg=defaults.CONSENSUS_REPORT_THRESHOLDS_DEG) -> dict:
        """Fraction of particles whose direction difference is below each threshold.

        Returns
        -------
        dict of float to ndarray of shape (P,)
            One entry per threshold, one value per pair.
        """
        return {float(t): np.mean(self.direction_diff_deg < t, axis=0) for t in thresholds_deg}


def pair_differences(angles_a_deg, angles_b_deg, *, symmetry: str = "c1"):
    """Symmetry-aware direction and in-plane differences between two assignments.

    Every symmetric equivalent of ``b`` is compared with ``a``; the one closest in projection
    direction is kept (ties broken by the smaller in-plane difference).

    Parameters
    ----------
    angles_a_deg, angles_b_deg : ndarray of shape (N, 3)
    symmetry : str, keyword-only

    Returns
    -------
    direction_diff_deg, inplane_diff_deg : ndarray of shape (N,)
    """
    from scipion_deepalign.core.symmetry import equivalent_angles_deg, symmetry_order

    a = _check_angles(angles_a_deg, "angles_a_deg")
    b = _check_angles(angles_b_deg, "angles_b_deg")
    if a.shape != b.shape:
        raise ValueError(f"angle sets differ in shape: {a.shape} and {b.shape}")
    n = len(a)
    direction = np.empty(n)
    inplane = np.empty(n)
    group_order = symmetry_order(symmetry)
    step = max(1, _POSES_PER_CHUNK // group_order)
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        equiv = equivalent_angles_deg(b[sl], symmetry)  # (n, G, 3)
        a_rep = np.broadcast_to(a[sl, None, :], equiv.shape)
        dist = angle_between_directions_deg(a_rep, equiv)  # (n, G)
        best = dist.min(axis=1, keepdims=True)
        tied = dist <= best + _DIRECTION_TIE_DEG
        inpl = np.full(dist.shape, np.inf)
        inpl[tied] = inplane_difference_deg(a_rep[tied], equiv[tied])
        direction[sl], inplane[sl] = best[:, 0], inpl.min(axis=1)
    return direction, inplane


def angular_consensus(angle_sets, *, symmetry: str = "c1",
                      max_angle_deg: float = defaults.CONSENSUS_MAX_ANGLE_DEG,
                      max_inplane_deg: float | None = None, shift_sets=None,
                      max_shift_px: float | None = None,
                      min_agree: int | None = None) -> ConsensusResult:
    """Keep the particles on whose poses several methods agree.

    Two methods agree on a particle when the symmetry-aware angle between their projection
    directions is at most ``max_angle_deg``, their in-plane difference is at most
    ``max_inplane_deg`` and, when ``max_shift_px`` is given, their shifts are at most
    ``max_shift_px`` apart. A particle is kept when some group of ``min_agree`` methods agree
    pairwise (every pair inside the group agrees); with ``min_agree=None`` all methods must.

    Parameters
    ----------
    angle_sets : list of ndarray of shape (N, 3)
        One ``(rot, tilt, psi)`` set per method, same particles in the same order (see
        :func:`match_particles`); at least two.
    symmetry : str, keyword-only
    max_angle_deg : float, keyword-only
    max_inplane_deg : float or None, keyword-only
        None: the same as ``max_angle_deg``; ``np.inf`` ignores the in-plane angle.
    shift_sets : list of ndarray of shape (N, 2) or None, keyword-only
    max_shift_px : float or None, keyword-only
        Needs ``shift_sets``; None ignores shifts.
    min_agree : int or None, keyword-only
        Size of the agreeing group, between 2 and the number of methods.

    Returns
    -------
    ConsensusResult
    """
    sets = [_check_angles(a, f"angle_sets[{k}]") for k, a in enumerate(angle_sets)]
    n_methods = len(sets)
    if n_methods < 2:
        raise ValueError(f"angle_sets needs at least two assignments, got {n_methods}")
    n = len(sets[0])
    for k, a in enumerate(sets):
        if len(a) != n:
            raise ValueError(f"angle_sets[{k}] has {len(a)} particles, angle_sets[0] has {n}; "
                             "match the particles first (match_particles)")
    if max_angle_deg < 0:
        raise ValueError(f"max_angle_deg must be >= 0, got {max_angle_deg}")
    max_inplane = max_angle_deg if max_inplane_deg is None else max_inplane_deg
    if min_agree is None:
        min_agree = n_methods
    if not 2 <= min_agree <= n_methods:
        raise ValueError(f"min_agree must be between 2 and {n_methods} (the number of "
                         f"methods), got {min_agree}")
    shifts = None
    if shift_sets is not None:
        if len(shift_sets) != n_methods:
            raise ValueError(f"shift_sets has {len(shift_sets)} entries for {n_methods} "
                             "angle sets")
        shifts = [np.asarray(s, dtype=np.float64) for s in shift_sets]
        for k, s in enumerate(shifts):
            if s.shape != (n, 2):
                raise ValueError(f"shift_sets[{k}] must have shape ({n}, 2), got {s.shape}")
    elif max_shift_px is not None:
        raise ValueError("max_shift_px needs shift_sets")

    pairs = list(combinations(range(n_methods), 2))
    direction = np.empty((n, len(pairs)))
    inplane = np.empty((n, len(pairs)))
    shift_diff = None if shifts is None else np.empty((n, len(pairs)))
    for p, (i, j) in enumerate(pairs):
        direction[:, p], inplane[:, p] = pair_differences(sets[i], sets[j], symmetry=symmetry)
        if shifts is not None:
            shift_diff[:, p] = np.linalg.norm(shifts[i] - shifts[j], axis=1)

    pair_ok = (direction <= max_angle_deg) & (inplane <= max_inplane)
    if max_shift_px is not None:
        pair_ok &= shift_diff <= max_shift_px
    pair_col = {pair: p for p, pair in enumerate(pairs)}
    agree = np.zeros(n, dtype=bool)
    source = np.full(n, -1, dtype=np.int64)
    for group in combinations(range(n_methods), min_agree):
        ok = np.all([pair_ok[:, pair_col[pair]] for pair in combinations(group, 2)], axis=0)
        source[ok & ~agree] = group[0]
        agree |= ok
    return ConsensusResult(agree=agree, direction_diff_deg=direction, inplane_diff_deg=inplane,
                           shift_diff_px=shift_diff, pairs=pairs, source=source)


def _check_angles(angles, name) -> np.ndarray:
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite angles")
    return a


def _name_key(name, key: str):
    name = str(name)
    if key == "exact":
        return name
    try:
        index, stack = split_image_name(name)
    except ValueError:
        return name
    return index, os.path.basename(stack)


def match_particles(*name_lists, key: str = "basename"):
    """Line several particle lists up by image name (or id).

    Parameters
    ----------
    *name_lists : sequences of str or int (at least two)
        RELION-style image names ``"index@stack"``, or any ids. A single argument holding a
        list of such sequences is accepted too.
    key : {"basename", "exact"}, keyword-only
        ``"basename"`` compares ``(int(index), basename(stack))`` so ``000003@a/p.mrcs`` and
        ``3@/data/p.mrcs`` match (names without ``@`` by their basename, ids as strings);
        ``"exact"`` compares the strings.

    Returns
    -------
    common : list, length K
        The common particles as named in the first list, in its order.
    index_lists : list of ndarray of shape (K,), int
        One index array per list; ``name_lists[m][index_lists[m][i]]`` are the same particle
        for every ``m``.

    Raises
    ------
    ValueError
        When a list repeats a name or the lists have no particle in common.
    """
    if len(name_lists) == 1 and len(name_lists[0]) and not isinstance(name_lists[0][0], str) \
            and np.ndim(name_lists[0][0]) == 1:
        name_lists = tuple(name_lists[0])
    if len(name_lists) < 2:
        raise ValueError(f"match_particles needs at least two name lists, got {len(name_lists)}")
    if key not in ("basename", "exact"):
        raise ValueError(f"key must be 'basename' or 'exact', got {key!r}")
    lookups = []
    for m, names in enumerate(name_lists):
        keys = [_name_key(nm, key) for nm in names]
        lookup = {}
        for i, k in enumerate(keys):
            if k in lookup:
                raise ValueError(f"input {m + 1} repeats the particle {names[i]!r}")
            lookup[k] = i
        lookups.append((keys, lookup))
    first_keys = lookups[0][0]
    rows = [i for i, k in enumerate(first_keys) if all(k in lk for _, lk in lookups[1:])]
    if not rows:
        samples = ", ".join(f"input {m + 1}: {list(names[:2])}"
                            for m, names in enumerate(name_lists))
        raise ValueError(f"the inputs have no particles in common (by {key} name; {samples})")
    common = [name_lists[0][i] for i in rows]
    index_lists = [np.asarray(rows, dtype=np.int64)]
    for _, lk in lookups[1:]:
        index_lists.append(np.array([lk[first_keys[i]] for i in rows], dtype=np.int64))
    return common, index_lists


def check_same_geometry(particle_sets, labels) -> None:
    """``ValueError`` naming both inputs when two sets differ in box or pixel size.

    Particles are paired by image index and stack name only, so sets of another box or pixel
    size (e.g. re-extracted or downsampled) would be compared as if they were the same images.

    Parameters
    ----------
    particle_sets : sequence of Particles
    labels : sequence of str
        How the message names each set (e.g. its STAR file).
    """
    first, label = particle_sets[0], labels[0]
    for other, other_label in zip(particle_sets[1:], labels[1:]):
        if other.box_px != first.box_px:
            raise ValueError(f"{label} and {other_label} differ in box size ({first.box_px} "
                             f"px vs {other.box_px} px): they are not the same particle images")
        if not defaults.same_pixel_size(other.pixel_size_a, first.pixel_size_a):
            raise ValueError(f"{label} and {other_label} differ in pixel size "
                             f"({first.pixel_size_a:g} A vs {other.pixel_size_a:g} A): they "
                             "are not the same particle images")
