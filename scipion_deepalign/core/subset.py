"""Subsets of a particle set: random, or balanced over the projection sphere.

A training subset drawn at random mirrors the data set's preferred views: a region seen
ten times more often gets ten times more training particles. The balanced subset takes the
same number of particles from every region of a grid of region centres
(:func:`~scipion_deepalign.core.regions.region_centres_deg`, nearest centre under the
symmetry group); a region with too few particles gives all it has and the others share the
remainder, so the subset still has the requested size.
"""
from __future__ import annotations

import numpy as np

from .defaults import REGION_SPACING_DEG
from .regions import assign_regions, region_centres_deg

__all__ = ["subset_size", "random_subset", "balanced_subset"]


def subset_size(n: int, fraction: float) -> int:
    """``round(fraction * n)``, at least 1; ``ValueError`` unless ``0 < fraction <= 1``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, int(round(fraction * n)))


def random_subset(n: int, size: int, *, seed: int = 0) -> np.ndarray:
    """``size`` distinct rows of ``range(n)``, drawn uniformly, sorted."""
    if not 0 < size <= n:
        raise ValueError(f"subset size must be in [1, {n}], got {size}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False))


def _quotas(counts: np.ndarray, size: int, rng) -> np.ndarray:
    """Per-region numbers summing to ``size``, as equal as ``counts`` (the caps) allow."""
    level = 0
    while np.minimum(counts, level + 1).sum() <= size:
        level += 1
    quotas = np.minimum(counts, level)
    open_regions = np.flatnonzero(counts > level)
    extra = size - int(quotas.sum())
    quotas[rng.choice(open_regions, size=extra, replace=False)] += 1
    return quotas


def balanced_subset(angles_deg, size: int, *, symmetry: str = "c1",
                    spacing_deg: float = REGION_SPACING_DEG,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``size`` rows with (nearly) equal numbers per region of a ``spacing_deg`` grid.

    Parameters
    ----------
    angles_deg : ndarray of shape (N, 2) or (N, 3)
        Poses (rot, tilt[, psi]) of the particles.
    size : int
        Rows to keep, ``1 <= size <= N``.
    symmetry, spacing_deg, seed : keyword-only
        Point group, region spacing and random seed.

    Returns
    -------
    rows : ndarray of shape (size,), int, sorted
    per_region : ndarray of shape (R,), int
        Rows taken from each region (``R`` region centres); they differ by at most one,
        except in regions that have fewer particles than that.
    """
    angles = np.asarray(angles_deg, dtype=np.float64)
    if not 0 < size <= len(angles):
        raise ValueError(f"subset size must be in [1, {len(angles)}], got {size}")
    centres = region_centres_deg(spacing_deg, symmetry)
    labels, _ = assign_regions(angles, centres, symmetry)
    counts = np.bincount(labels, minlength=len(centres))
    rng = np.random.default_rng(seed)
    quotas = _quotas(counts, size, rng)
    rows = [rng.choice(np.flatnonzero(labels == r), size=q, replace=False)
            for r, q in enumerate(quotas) if q]
    return np.sort(np.concatenate(rows)), quotas
