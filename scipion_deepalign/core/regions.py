"""Regions of projection directions: centres, nearest-centre labels, per-region grids.

DeepAlign splits the asymmetric unit of projection directions into regions, one CNN per
region. Directions follow :mod:`scipion_deepalign.core.geometry` (``(rot, tilt)`` in degrees,
direction ``(sin t cos r, sin t sin r, cos t)``); symmetry and the asymmetric unit follow
:mod:`scipion_deepalign.core.symmetry`.

Grid
----
:func:`sphere_grid_deg` is an icosahedral geodesic grid: an icosahedron with vertices at the
poles and at ``tilt = 63.435`` (``rot = 0, 72, ...``) and ``116.565`` (``rot = 36, 108, ...``)
degrees, each triangular face split into ``n**2`` triangles, points projected on the sphere.
Frequency ``n = max(1, round(63.435 / step_deg))`` gives ``10 n**2 + 2`` directions whose
neighbours are about ``step_deg`` apart (63.435 degrees is the icosahedron's edge).

Region centres
--------------
:func:`region_centres_deg` builds the grid of spacing ``spacing_deg`` (frequency ``n``) and

1. keeps the directions in the asymmetric unit (boundary included), dropping, in grid order,
   any within half a grid edge of an image ``S c`` of a direction already kept (boundary
   duplicates and near-duplicates: the grid does not share the group's symmetry);
2. fills the holes this leaves along the unit's boundary: directions of a 4x finer grid are
   added farthest-first (symmetry-aware), moved into the unit, until every direction of the
   sphere is within ``0.75 * spacing_deg`` of a centre, up to symmetry. (No holes for c1.)

So centres never overlap (at least half a grid edge apart, up to symmetry), every direction
is within ``spacing_deg`` of a centre up to symmetry, and the count is about
``(10 n**2 + 2) / G`` for a group of ``G`` operators, a little more because of the boundary:
c1 gives 42 regions at 30 degrees and 92 at 20 degrees (exactly the grid); d7 gives 9 at 20
degrees, as in the paper; i gives 3 at 20 and 8 at 10 degrees. The result is deterministic
(cached per frequency and group).

Labels
------
:func:`assign_regions` labels a direction with the centre whose orbit ``{S c}`` holds the
nearest direction; exact ties go to the lower label.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.spatial import cKDTree

from .geometry import angle_between_unit_vectors_deg, direction_to_euler, projection_direction
from .symmetry import (
    in_asymmetric_unit,
    normalise_symmetry,
    reference_direction,
    symmetry_matrices,
)

__all__ = [
    "MIN_SPACING_DEG",
    "check_spacing",
    "MAX_SPACING_DEG",
    "sphere_grid_deg",
    "region_centres_deg",
    "count_regions",
    "assign_regions",
    "region_distances_deg",
    "nearest_regions",
    "region_direction_grids",
]

MIN_SPACING_DEG = 5.0
MAX_SPACING_DEG = 90.0
_ICOSA_EDGE_DEG = float(np.rad2deg(np.arctan(2.0)))  # 63.435
_CHUNK_ELEMENTS = 2_000_000
_FILL_REFINE = 4
_MIN_SEP_FRACTION = 0.5  # grid directions closer than this (x edge) up to symmetry are dropped
_TIE_COS = 1e-12
_COVER_FRACTION = 0.75  # centres are added until all directions are this close (x spacing)


def _icosahedron():
    """Vertices (12, 3) and faces (20, 3) of an icosahedron with vertices at the poles."""
    t = np.arctan(2.0)
    rots = np.deg2rad(np.arange(5) * 72.0)
    upper = np.stack([np.sin(t) * np.cos(rots), np.sin(t) * np.sin(rots),
                      np.full(5, np.cos(t))], -1)
    lower = np.stack([np.sin(t) * np.cos(rots + np.pi / 5), np.sin(t) * np.sin(rots + np.pi / 5),
                      np.full(5, -np.cos(t))], -1)
    verts = np.vstack([[0.0, 0.0, 1.0], upper, lower, [0.0, 0.0, -1.0]])
    faces = []
    for k in range(5):
        u0, u1 = 1 + k, 1 + (k + 1) % 5
        l0, l1 = 6 + k, 6 + (k + 1) % 5
        faces += [(0, u0, u1), (u0, l0, u1), (u1, l0, l1), (11, l1, l0)]
    return verts, np.array(faces)


@functools.lru_cache(maxsize=32)
def _geodesic_directions(freq: int) -> np.ndarray:
    verts, faces = _icosahedron()
    i, j = np.meshgrid(np.arange(freq + 1), np.arange(freq + 1), indexing="ij")
    keep = i + j <= freq
    bary = np.stack([freq - i[keep] - j[keep], i[keep], j[keep]], -1) / freq  # (P, 3)
    pts = np.einsum("pk,fkc->fpc", bary, verts[faces]).reshape(-1, 3)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    _, first = np.unique(np.round(pts, 8) + 0.0, axis=0, return_index=True)
    pts = pts[np.sort(first)]
    # Order from +z to -z, then by rot, so that region numbers read top-down.
    ang = direction_to_euler(pts)
    order = np.lexsort((np.round(np.mod(ang[:, 0], 360.0), 6), np.round(ang[:, 1], 6)))
    out = pts[order]
    out.setflags(write=False)
    return out


def _frequency(step_deg) -> int:
    step = float(step_deg)
    if not np.isfinite(step) or step <= 0:
        raise ValueError(f"step_deg must be a positive number of degrees, got {step_deg!r}")
    return max(1, int(round(_ICOSA_EDGE_DEG / step)))


def _grid_directions(step_deg) -> np.ndarray:
    return _geodesic_directions(_frequency(step_deg))


def sphere_grid_deg(step_deg) -> np.ndarray:
    """Even directions over the whole sphere (icosahedral geodesic grid).

    Parameters
    ----------
    step_deg : float
        Wanted spacing between neighbouring directions, degrees.

    Returns
    -------
    ndarray of shape (10 n**2 + 2, 2)
        ``(rot, tilt)`` in degrees, ``n = max(1, round(63.435 / step_deg))``, ordered from
        ``tilt = 0`` to ``180``. Poles have ``rot = 0``.
    """
    return direction_to_euler(_grid_directions(step_deg))


def check_spacing(spacing_deg, *, name: str = "spacing_deg") -> float:
    """THE rule for a region spacing: a number in [:data:`MIN_SPACING_DEG`,
    :data:`MAX_SPACING_DEG`] degrees (ValueError naming ``name``, e.g. a CLI option)."""
    try:
        spacing = float(spacing_deg)
    except (TypeError, ValueError):
        spacing = np.nan
    if not (MIN_SPACING_DEG <= spacing <= MAX_SPACING_DEG):
        raise ValueError(f"{name} must be between {MIN_SPACING_DEG:g} and "
                         f"{MAX_SPACING_DEG:g} degrees, got {spacing_deg!r}")
    return spacing


def _separated_under_group(dirs, mats, min_sep_deg):
    """Mask (M,) keeping directions in order, dropping any closer than ``min_sep_deg`` to an
    image ``S d`` of a direction already kept (symmetry-aware thinning)."""
    keep = np.ones(len(dirs), dtype=bool)
    if len(mats) == 1 or len(dirs) == 0:
        return keep
    chord = 2.0 * np.sin(np.deg2rad(min_sep_deg) / 2.0)
    tree = cKDTree(dirs)
    conflicts = [set() for _ in range(len(dirs))]
    for s_mat in mats[1:]:
        for i, near in enumerate(tree.query_ball_point(dirs @ s_mat.T, chord)):
            for j in near:
                if j != i:
                    conflicts[max(i, j)].add(min(i, j))
    for j in range(len(dirs)):
        if any(keep[i] for i in conflicts[j]):
            keep[j] = False
    return keep


def _asymmetric_grid(freq, symmetry, mats, *, min_sep_deg=1e-4):
    """Geodesic directions in the asymmetric unit, thinned so that no two are within
    ``min_sep_deg`` of each other up to symmetry, shape (M, 3)."""
    dirs = _geodesic_directions(freq)
    dirs = dirs[in_asymmetric_unit(dirs, symmetry, tol_deg=1e-4)]
    return dirs[_separated_under_group(dirs, mats, min_sep_deg)]


def _fill_gaps(kept, freq, symmetry, mats, bound_deg):
    """Add directions until every direction is within ``bound_deg`` of an image of one.

    Filtering a geodesic grid to the asymmetric unit leaves holes along the boundary where the
    grid does not share the group's symmetry. Directions of a grid ``_FILL_REFINE`` times finer
    (whole sphere, symmetry-aware distances) are added farthest-first, moved into the unit,
    until none is farther than ``bound_deg``. Returns ``kept`` with the additions appended,
    shape (M', 3).
    """
    cand = _geodesic_directions(_FILL_REFINE * freq)
    images = np.einsum("gij,mj->gmi", mats, kept).reshape(-1, 3)
    _, nearest = cKDTree(images).query(cand)
    dist = angle_between_unit_vectors_deg(cand, images[nearest])
    far = dist > bound_deg
    cand, dist = cand[far], dist[far]
    added = []
    cos_bound = np.cos(np.deg2rad(bound_deg))
    while len(cand):
        k = int(np.argmax(dist))
        new = cand[k]
        ref_scores = mats @ _reference(symmetry)  # (S.T d) . r = d . (S r): move into the unit
        added.append(mats[int(np.argmax(ref_scores @ new))].T @ new)
        new_images = mats @ new
        cos_all = cand @ new_images.T
        cos_new = cos_all.max(axis=1)
        dist = np.minimum(dist, angle_between_unit_vectors_deg(
            cand, new_images[np.argmax(cos_all, axis=1)]))
        left = cos_new < cos_bound
        left &= dist > bound_deg
        cand, dist = cand[left], dist[left]
    return np.vstack([kept] + [np.array(added)] * bool(added))


@functools.lru_cache(maxsize=64)
def _reference(symmetry):
    return reference_direction(symmetry)


@functools.lru_cache(maxsize=64)
def _unit_directions(freq: int, symmetry: str, cover_deg: float | None = None) -> np.ndarray:
    """Thinned, hole-filled directions of the asymmetric unit (module docstring), (M, 3)."""
    mats = symmetry_matrices(symmetry)
    edge_deg = _ICOSA_EDGE_DEG / freq
    dirs = _asymmetric_grid(freq, symmetry, mats, min_sep_deg=_MIN_SEP_FRACTION * edge_deg)
    if len(mats) > 1:
        cover = _COVER_FRACTION * edge_deg if cover_deg is None else cover_deg
        dirs = _fill_gaps(dirs, freq, symmetry, mats, cover)
    dirs.setflags(write=False)
    return dirs


@functools.lru_cache(maxsize=64)
def _centres_cached(freq: int, symmetry: str, bound_deg: float) -> np.ndarray:
    out = direction_to_euler(_unit_directions(freq, symmetry, bound_deg))
    out.setflags(write=False)
    return out


def region_centres_deg(spacing_deg, symmetry="c1") -> np.ndarray:
    """Centres of the regions covering the asymmetric unit.

    Parameters
    ----------
    spacing_deg : float
        Angular spacing between neighbouring centres, 5 to 90 degrees (the paper's
        "span" of the regions). The number of regions is about ``(10 n**2 + 2) / G`` with
        ``n = round(63.435 / spacing_deg)`` and ``G`` the group order (see the module
        docstring): c1 -> 42 at 30 degrees, 92 at 20; d7 -> 9 at 20.
    symmetry : str
        Point group (see :func:`~scipion_deepalign.core.symmetry.normalise_symmetry`).

    Returns
    -------
    ndarray of shape (R, 2)
        ``(rot, tilt)`` in degrees, all in the asymmetric unit, no two equivalent.
    """
    spacing = check_spacing(spacing_deg)
    return _centres_cached(_frequency(spacing), normalise_symmetry(symmetry),
                           _COVER_FRACTION * spacing).copy()


def count_regions(spacing_deg, symmetry="c1") -> int:
    """Number of regions :func:`region_centres_deg` gives (for previews before training)."""
    return len(region_centres_deg(spacing_deg, symmetry))


def _nearest_centre(dirs, centre_dirs, mats):
    """Labels (N,) and symmetry-aware distances (N,) of unit directions to unit centres.

    Ties (directions equidistant from two centres within ``_TIE_COS``) go to the lower label,
    so that labels do not depend on rounding.
    """
    # images[r, g] = S_g c_r; distance of d to the orbit of c_r is min_g angle(d, S_g c_r)
    n_ops = len(mats)
    images = np.einsum("gij,rj->rgi", mats, centre_dirs).reshape(-1, 3)
    labels = np.empty(len(dirs), dtype=np.int64)
    dist = np.empty(len(dirs))
    step = max(1, _CHUNK_ELEMENTS // len(images))
    for start in range(0, len(dirs), step):
        d = dirs[start:start + step]
        cos = d @ images.T
        best = np.argmax(cos >= cos.max(axis=1, keepdims=True) - _TIE_COS, axis=1)
        labels[start:start + step] = best // n_ops
        dist[start:start + step] = angle_between_unit_vectors_deg(d, images[best])
    return labels, dist


def _pose_directions(angles_deg):
    a = np.asarray(angles_deg, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] not in (2, 3):
        raise ValueError(f"angles_deg must have shape (N, 2) or (N, 3), got {a.shape}")
    return projection_direction(a)


def _centre_directions(centres_deg):
    c = np.asarray(centres_deg, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] not in (2, 3) or len(c) == 0:
        raise ValueError(f"centres_deg must have shape (R, 2) with R >= 1, got {c.shape}")
    return projection_direction(c[:, :2])


def assign_regions(angles_deg, centres_deg, symmetry="c1"):
    """Nearest region centre of each pose, symmetry-aware.

    Parameters
    ----------
    angles_deg : array_like of shape (N, 2) or (N, 3)
        ``(rot, tilt[, psi])`` in degrees; ``psi`` is ignored.
    centres_deg : array_like of shape (R, 2)
    symmetry : str

    Returns
    -------
    labels : ndarray of shape (N,) int
        0-based index of the nearest centre (over all symmetry-equivalent directions).
    distance_deg : ndarray of shape (N,)
        Angle to that centre, degrees.
    """
    return _nearest_centre(_pose_directions(angles_deg), _centre_directions(centres_deg),
                           symmetry_matrices(symmetry))


def region_distances_deg(angles_deg, centres_deg, symmetry="c1") -> np.ndarray:
    """Symmetry-aware angle from each pose's direction to every region centre.

    Parameters
    ----------
    angles_deg : array_like of shape (N, 2) or (N, 3)
        ``(rot, tilt[, psi])`` in degrees; ``psi`` is ignored.
    centres_deg : array_like of shape (R, 2)
    symmetry : str

    Returns
    -------
    ndarray of shape (N, R)
        ``min_g angle(d, S_g c_r)`` in degrees; ``argmin`` along axis 1 agrees with
        :func:`assign_regions` except at exact ties.
    """
    dirs = _pose_directions(angles_deg)
    orbit = np.einsum("gij,rj->rgi", symmetry_matrices(symmetry),
                      _centre_directions(centres_deg))  # (R, G, 3)
    best = np.argmax(np.einsum("ni,rgi->nrg", dirs, orbit), axis=2)  # (N, R)
    nearest = orbit[np.arange(orbit.shape[0])[None, :], best]  # (N, R, 3)
    return angle_between_unit_vectors_deg(dirs[:, None, :], nearest)


def nearest_regions(angles_deg, centres_deg, symmetry="c1", *, k=2) -> np.ndarray:
    """The ``k`` regions whose centres are nearest to each pose's direction, nearest first.

    What a perfect classifier would predict (the oracle hints of tests and benchmarks).

    Returns
    -------
    int ndarray of shape (N, k)
    """
    dist = region_distances_deg(angles_deg, centres_deg, symmetry)
    if not 1 <= k <= dist.shape[1]:
        raise ValueError(f"k must be in [1, {dist.shape[1]}], got {k}")
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def region_direction_grids(centres_deg, symmetry="c1", step_deg=5.0) -> list:
    """Fine directions of each region (for reference galleries).

    Parameters
    ----------
    centres_deg : array_like of shape (R, 2)
    symmetry : str
    step_deg : float
        Spacing of the fine geodesic grid, degrees.

    Returns
    -------
    list of R ndarrays of shape (M_r, 2)
        ``(rot, tilt)`` in degrees of the fine directions whose nearest centre is region
        ``r``. The fine directions are built like the centres (asymmetric unit, thinned,
        boundary holes filled), so together the grids hold each direction of the unit once
        (no two equivalent) and cover the sphere up to symmetry at ``step_deg``. Each is then
        moved to its equivalent nearest its centre, so a region's directions form one patch
        around its centre; near the unit's boundary a patch may reach outside the unit.
    """
    symmetry = normalise_symmetry(symmetry)
    mats = symmetry_matrices(symmetry)
    centre_dirs = _centre_directions(centres_deg)
    fine = _unit_directions(_frequency(step_deg), symmetry)
    labels, _ = _nearest_centre(fine, centre_dirs, mats)
    # Move each direction to the equivalent nearest its centre: argmax_g (S_g d) . c.
    images = np.einsum("gij,nj->ngi", mats, fine)
    best = np.argmax(np.einsum("ngi,ni->ng", images, centre_dirs[labels]), axis=1)
    moved = images[np.arange(len(fine)), best]
    return [direction_to_euler(moved[labels == r]) for r in range(len(centre_dirs))]
