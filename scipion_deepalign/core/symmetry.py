"""Point-group symmetry: operators, symmetry-aware angular distances, asymmetric unit.

Poses follow :mod:`scipion_deepalign.core.geometry`.

Names (Xmipp/RELION spelling, case-insensitive)
-----------------------------------------------
* ``cN`` (N >= 1): N-fold axis along z.
* ``dN`` (N >= 2): N-fold axis along z and a 2-fold axis along **x** (Xmipp/RELION ``Dn``;
  Scipion ``Dxn``).
* ``t``: tetrahedral, 3-fold axis along z and a 2-fold axis along (0, 0.8165, 0.5774)
  (Xmipp ``T``; Scipion ``Tz3``).
* ``o``: octahedral, 4-fold axes along x, y and z (Xmipp ``O``).
* ``i1`` .. ``i4``: the icosahedral settings of Xmipp/RELION, Scipion ``I222``, ``I222r``,
  ``In25``, ``In25r``: ``i1`` 2-folds on x, y, z with the 5-folds nearest +z in the yz plane;
  ``i2`` the same turned 90 degrees about z (5-folds nearest +z in the xz plane, Crowther);
  ``i3`` and ``i4`` a 5-fold along z and a 2-fold along y, turned 180 degrees about x from each
  other. Bare ``i`` is ``i2``, the default of Xmipp and RELION.

Operators
---------
``symmetry_matrices(name)`` returns rotations ``S`` acting on map coordinates with
``V(S r) = V(r)``, the identity first. Since ``image = sum_z V(A.T (x, y, z))``, the poses
``A`` and ``A @ S`` give the same image; their projection directions are ``d`` and ``S.T d``.
The set is a group, so it equals its set of transposes: the transpose convention of other
packages does not matter when comparing groups as sets.

Asymmetric unit
---------------
A direction ``d`` is in the asymmetric unit when it is at least as close to the group's
reference direction ``r`` (see :func:`reference_direction`) as every equivalent direction
``S d``: the Dirichlet cell of ``r``. This is exact for every group. For ``cN`` and ``dN``
``r`` has ``rot = 180 / N`` so the unit is ``0 <= rot <= 360 / N`` (and ``tilt <= 90`` for
``dN``); for ``t``, ``o`` and ``i*`` ``r`` is the point of the sphere farthest from every
symmetry axis, so the unit is a compact polygon. Directions on the boundary (within
``tol_deg``) count as inside.

All functions are vectorised and process poses in chunks, so 1e5 poses against the 60
icosahedral operators stay fast and memory-bounded.
"""
from __future__ import annotations

import functools
import re

import numpy as np
from scipy.spatial.transform import Rotation

from .geometry import (
    angle_between_unit_vectors_deg,
    euler_to_matrix,
    matrix_to_euler,
    projection_direction,
    rotation_angle_deg,
)

__all__ = [
    "normalise_symmetry",
    "symmetry_matrices",
    "symmetry_order",
    "reference_direction",
    "equivalent_angles_deg",
    "symmetric_direction_distance_deg",
    "symmetric_pose_distance_deg",
    "nearest_equivalent_index",
    "to_asymmetric_unit",
    "in_asymmetric_unit",
]

VALID_FORMS = "c1, c2, ... cN, d2, ... dN, t, o, i (= i2), i1, i2, i3, i4"
_CHUNK_ELEMENTS = 2_000_000  # N * G per chunk (a few tens of MB of float64 temporaries)
_PHI = (1.0 + 5.0 ** 0.5) / 2.0


def normalise_symmetry(name) -> str:
    """Validated lower-case symmetry name (``"C4"`` -> ``"c4"``, ``"I"`` -> ``"i2"``).

    Parameters
    ----------
    name : str
        One of ``cN`` (N >= 1), ``dN`` (N >= 2), ``t``, ``o``, ``i``, ``i1`` .. ``i4``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Naming the parameter ``symmetry`` and the valid forms.

    Idempotent and cached, so that a public function may call it on a name its caller
    already normalised (the faces normalise at the border and pass the result down).
    """
    if not isinstance(name, str):
        raise ValueError(f"symmetry must be a string ({VALID_FORMS}), got {name!r}")
    return _normalised(name)


@functools.lru_cache(maxsize=128)
def _normalised(name: str) -> str:
    s = name.strip().lower()
    if s == "i":
        return "i2"
    if s in ("t", "o", "i1", "i2", "i3", "i4"):
        return s
    m = re.fullmatch(r"([cd])(\d+)", s)
    if m:
        order = int(m.group(2))
        if (m.group(1) == "c" and order >= 1) or (m.group(1) == "d" and order >= 2):
            return f"{m.group(1)}{order}"
    raise ValueError(f"symmetry {name!r} is not valid; use one of: {VALID_FORMS}")


def _axis_rotation(axis, angle_deg) -> np.ndarray:
    """Active rotation by ``angle_deg`` about ``axis`` (right-hand rule), shape (3, 3)."""
    k = np.asarray(axis, dtype=np.float64)
    return Rotation.from_rotvec(np.deg2rad(angle_deg) * k / np.linalg.norm(k)).as_matrix()


def _generators(name: str) -> list[np.ndarray]:
    if name[0] in "cd":
        order = int(name[1:])
        gens = [_axis_rotation((0, 0, 1), 360.0 / order)]
        if name[0] == "d":
            gens.append(_axis_rotation((1, 0, 0), 180.0))
        return gens
    if name == "t":
        return [_axis_rotation((0, 0, 1), 120.0),
                _axis_rotation((0.0, np.sqrt(2.0 / 3.0), np.sqrt(1.0 / 3.0)), 180.0)]
    if name == "o":
        return [_axis_rotation((0, 0, 1), 90.0), _axis_rotation((1, 1, 1), 120.0)]
    if name in ("i1", "i2"):
        five = (0.0, 1.0, _PHI) if name == "i1" else (1.0, 0.0, _PHI)
        return [_axis_rotation((0, 0, 1), 180.0), _axis_rotation((1, 0, 0), 180.0),
                _axis_rotation((1, 1, 1), 120.0), _axis_rotation(five, 72.0)]
    # i3 / i4: 5-fold along z, 2-fold along y; the ring of 5-fold axes nearest +z has one
    # member in the xz plane at x > 0 (i4) or x < 0 (i3).
    tilt = np.arctan(2.0)  # 63.435 degrees between neighbouring 5-fold axes
    sign = -1.0 if name == "i3" else 1.0
    neighbour = (sign * np.sin(tilt), 0.0, np.cos(tilt))
    return [_axis_rotation((0, 0, 1), 72.0), _axis_rotation((0, 1, 0), 180.0),
            _axis_rotation(neighbour, 72.0)]


def _close_group(generators: list[np.ndarray], max_order: int = 1000) -> np.ndarray:
    """All products of the generators, identity first, in breadth-first order."""
    elements = [np.eye(3)]
    keys = {tuple(np.round(np.eye(3), 6).ravel())}
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for m in frontier:
            for g in generators:
                p = g @ m
                key = tuple(np.round(p, 6).ravel() + 0.0)
                if key not in keys:
                    keys.add(key)
                    elements.append(p)
                    new.append(p)
        if len(elements) > max_order:
            raise RuntimeError("symmetry group did not close")  # pragma: no cover
        frontier = new
    return np.array(elements)


@functools.lru_cache(maxsize=64)
def _matrices_cached(name: str) -> np.ndarray:
    mats = _close_group(_generators(name))
    mats.setflags(write=False)
    return mats


def symmetry_matrices(name) -> np.ndarray:
    """Symmetry operators of a point group.

    Parameters
    ----------
    name : str
        Symmetry name (see :func:`normalise_symmetry`).

    Returns
    -------
    ndarray of shape (G, 3, 3)
        Rotations ``S`` on map coordinates, ``V(S r) = V(r)``, identity first. ``G`` is N
        (``cN``), 2N (``dN``), 12 (``t``), 24 (``o``) or 60 (``i*``). Read-only.
    """
    return _matrices_cached(normalise_symmetry(name))


def symmetry_order(name) -> int:
    """Number of operators ``G`` of the group."""
    return len(symmetry_matrices(name))


@functools.lru_cache(maxsize=64)
def _reference_cached(name: str) -> np.ndarray:
    mats = _matrices_cached(name)
    if name[0] in "cd":
        order = int(name[1:])
        tilt = 90.0 if name[0] == "c" else 45.0
        return projection_direction([180.0 / order, tilt])
    # Farthest point from every axis: maximise the smallest angle to the images S d over a
    # fine grid of the upper hemisphere, then refine locally. Deterministic.
    rot, tilt = np.meshgrid(np.arange(0.0, 360.0, 1.0), np.arange(0.5, 90.0, 1.0))
    cand = projection_direction(np.stack([rot.ravel(), tilt.ravel()], -1))
    best = cand[np.argmax(_min_image_cos_margin(cand, mats))]
    for step in (0.3, 0.06, 0.012, 0.0024):
        r0, t0 = np.rad2deg(np.arctan2(best[1], best[0])), np.rad2deg(np.arccos(best[2]))
        dr, dt = np.meshgrid(np.linspace(-5, 5, 11) * step, np.linspace(-5, 5, 11) * step)
        cand = projection_direction(np.stack([r0 + dr.ravel(), t0 + dt.ravel()], -1))
        best = cand[np.argmax(_min_image_cos_margin(cand, mats))]
    # Of the equivalent optima, take the one nearest +z (then +x) for a unit near the pole.
    images = mats @ best
    order = np.lexsort((-np.round(images[:, 0], 6), -np.round(images[:, 2], 6)))
    return images[order[0]]


def _min_image_cos_margin(dirs, mats):
    """``1 - max_{S != I} d . S d`` for each direction; large means far from every axis."""
    cos = np.einsum("ni,gij,nj->ng", dirs, mats[1:], dirs)
    return 1.0 - cos.max(axis=1)


def reference_direction(name) -> np.ndarray:
    """Centre ``r`` (unit vector, shape (3,)) of the asymmetric unit's Dirichlet cell."""
    return _reference_cached(normalise_symmetry(name)).copy()


def _as_2d(angles_deg, width, param):
    a = np.asarray(angles_deg, dtype=np.float64)
    if a.ndim != 2 or a.shape[-1] not in width:
        raise ValueError(f"{param} must have shape (N, {'|'.join(map(str, width))}), "
                         f"got {a.shape}")
    return a


def _chunks(n, group_order):
    step = max(1, _CHUNK_ELEMENTS // max(group_order, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def equivalent_angles_deg(angles_deg, name) -> np.ndarray:
    """All poses equivalent to each pose under the group.

    Parameters
    ----------
    angles_deg : array_like of shape (N, 3)
    name : str

    Returns
    -------
    ndarray of shape (N, G, 3)
        Euler angles of ``A @ S`` for every operator ``S``; index 0 is the pose itself
        (re-expressed by :func:`~scipion_deepalign.core.geometry.matrix_to_euler`).
    """
    a = _as_2d(angles_deg, (3,), "angles_deg")
    mats = symmetry_matrices(name)
    out = np.empty((len(a), len(mats), 3))
    for sl in _chunks(len(a), len(mats)):
        pose = euler_to_matrix(a[sl])
        out[sl] = matrix_to_euler(np.einsum("nij,gjk->ngik", pose, mats))
    return out


def _pair_shapes(a, b):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"angles_a_deg and angles_b_deg must have the same length, "
                         f"got {a.shape} and {b.shape}")


def symmetric_direction_distance_deg(angles_a_deg, angles_b_deg, name) -> np.ndarray:
    """Angle between projection directions, minimised over the group.

    Parameters
    ----------
    angles_a_deg, angles_b_deg : array_like of shape (N, 2) or (N, 3)
    name : str

    Returns
    -------
    ndarray of shape (N,)
        Degrees in [0, 180]; ``min_S angle(d_a, S d_b)``.
    """
    a = _as_2d(angles_a_deg, (2, 3), "angles_a_deg")
    b = _as_2d(angles_b_deg, (2, 3), "angles_b_deg")
    _pair_shapes(a, b)
    da, db = projection_direction(a), projection_direction(b)
    mats = symmetry_matrices(name)
    out = np.empty(len(a))
    for sl in _chunks(len(a), len(mats)):
        images = np.einsum("gij,nj->ngi", mats, db[sl])  # S d_b
        best = np.argmax(np.einsum("ngi,ni->ng", images, da[sl]), axis=1)
        nearest = images[np.arange(len(best)), best]
        out[sl] = angle_between_unit_vectors_deg(da[sl], nearest)
    return out


def symmetric_pose_distance_deg(angles_a_deg, angles_b_deg, name) -> np.ndarray:
    """Full rotation angle between poses (direction and in-plane), minimised over the group.

    Parameters
    ----------
    angles_a_deg, angles_b_deg : array_like of shape (N, 3)
    name : str

    Returns
    -------
    ndarray of shape (N,)
        Degrees in [0, 180]; ``min_S angle(A, B @ S)``.
    """
    a = _as_2d(angles_a_deg, (3,), "angles_a_deg")
    b = _as_2d(angles_b_deg, (3,), "angles_b_deg")
    _pair_shapes(a, b)
    best = nearest_equivalent_index(a, b, name)
    mats = symmetry_matrices(name)
    return rotation_angle_deg(euler_to_matrix(a), euler_to_matrix(b) @ mats[best])


def nearest_equivalent_index(angles_a_deg, angles_b_deg, name) -> np.ndarray:
    """Index ``g`` of the operator for which pose ``B @ S_g`` is closest to pose ``A``.

    Parameters
    ----------
    angles_a_deg, angles_b_deg : array_like of shape (N, 3)
    name : str

    Returns
    -------
    ndarray of shape (N,) int
    """
    a = _as_2d(angles_a_deg, (3,), "angles_a_deg")
    b = _as_2d(angles_b_deg, (3,), "angles_b_deg")
    _pair_shapes(a, b)
    mats = symmetry_matrices(name)
    out = np.empty(len(a), dtype=np.int64)
    for sl in _chunks(len(a), len(mats)):
        # trace(A (B S)^T) = sum_ij (B^T A)_ij S_ij
        rel = np.einsum("nki,nkj->nij", euler_to_matrix(b[sl]), euler_to_matrix(a[sl]))
        out[sl] = np.argmax(np.einsum("nij,gij->ng", rel, mats), axis=1)
    return out


def _unit_scores(dirs, name):
    """``(S.T d) . r`` for every direction and operator, chunked generator of (slice, scores)."""
    name = normalise_symmetry(name)
    mats, ref = _matrices_cached(name), _reference_cached(name)
    mref = mats @ ref  # (S.T d) . r = d . (S r)
    for sl in _chunks(len(dirs), len(mats)):
        yield sl, dirs[sl] @ mref.T


def to_asymmetric_unit(angles_deg, name) -> np.ndarray:
    """Equivalent poses whose projection directions lie in the asymmetric unit.

    Parameters
    ----------
    angles_deg : array_like of shape (N, 3)
    name : str

    Returns
    -------
    ndarray of shape (N, 3)
        Euler angles of ``A @ S`` with ``S`` chosen so that the direction ``S.T d`` is in the
        unit (see the module docstring). The projection image is unchanged.
    """
    a = _as_2d(angles_deg, (3,), "angles_deg")
    mats = symmetry_matrices(name)
    out = np.empty_like(a)
    for sl, scores in _unit_scores(projection_direction(a), name):
        best = np.argmax(scores, axis=1)
        out[sl] = matrix_to_euler(euler_to_matrix(a[sl]) @ mats[best])
    return out


def in_asymmetric_unit(directions, name, *, tol_deg=1e-6) -> np.ndarray:
    """Whether directions lie in the asymmetric unit (boundary included).

    Parameters
    ----------
    directions : array_like of shape (N, 3)
        Unit vectors (normalised here).
    name : str
    tol_deg : float, optional
        Directions within about this angle of the boundary count as inside.

    Returns
    -------
    ndarray of shape (N,) bool
    """
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 3:
        raise ValueError(f"directions must have shape (N, 3), got {d.shape}")
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    out = np.empty(len(d), dtype=bool)
    tol = np.deg2rad(tol_deg)
    for sl, scores in _unit_scores(d, name):
        out[sl] = scores[:, 0] >= scores.max(axis=1) - tol
    return out
