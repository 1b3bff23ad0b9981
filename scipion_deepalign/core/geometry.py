"""The one Euler convention of the project, rotation matrices and angular distances.

Convention (RELION = Xmipp = Scipion's ``Projection`` alignment)
-----------------------------------------------------------------
A pose is three Euler angles ``(rot, tilt, psi)`` in **degrees**, ZYZ, and an in-plane
shift ``(shift_x, shift_y)`` in **pixels**.

* The matrix ``A = euler_to_matrix((rot, tilt, psi))`` is ``Rz(psi) @ Ry(tilt) @ Rz(rot)``
  with the *passive* elementary rotations ``Rz(a) = [[c, s, 0], [-s, c, 0], [0, 0, 1]]`` and
  ``Ry(b) = [[c, 0, -s], [0, 1, 0], [s, 0, c]]``. It is numerically identical to Xmipp's
  ``Euler_angles2matrix`` and RELION's ``Euler_angles2matrix``.
* ``A`` maps **volume coordinates to image coordinates**: a point ``r`` of the map lands at
  ``A @ r`` in the frame of the particle, where the beam runs along the image z axis. The
  projection image is therefore ``p(x, y) = sum_z V(A.T @ (x, y, z))``, coordinates
  measured from the box centre ``N // 2`` and volumes indexed ``[z, y, x]``. This is checked
  against images made by ``relion_project`` in the test suite.
* The projection direction (where the beam comes from, in the frame of the map) is
  ``A.T @ (0, 0, 1)``, the third row of ``A``: ``(sin t cos r, sin t sin r, cos t)``.
  ``rot`` and ``tilt`` fix the direction, ``psi`` is the in-plane rotation.
* Shifts follow RELION's ``rlnOriginX/Y`` (``rlnOriginXAngst / pixel_size``): the particle
  image is the centred projection **translated by minus the shift**,
  ``image(x) = projection(x + shift)``. Translating the image by ``+shift`` centres it.
* Scipion stores the *inverse* transform for ``ALIGN_PROJ`` sets; the translation between
  the two lives in ``scipion_deepalign.convert`` and nowhere else.

Every other module refers to this docstring instead of repeating it.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "euler_to_matrix",
    "matrix_to_euler",
    "projection_direction",
    "direction_to_euler",
    "angle_between_directions_deg",
    "angle_between_unit_vectors_deg",
    "rotation_angle_deg",
    "inplane_difference_deg",
    "random_angles_deg",
]

_EPS = 1e-9


def euler_to_matrix(angles_deg) -> np.ndarray:
    """Rotation matrices of ZYZ Euler angles (see the module docstring).

    Parameters
    ----------
    angles_deg : array_like of shape (..., 3)
        ``(rot, tilt, psi)`` in degrees.

    Returns
    -------
    ndarray of shape (..., 3, 3)
        Matrices mapping volume coordinates to image coordinates.
    """
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    if a.shape[-1] != 3:
        raise ValueError(f"angles_deg must have shape (..., 3), got {a.shape}")
    ca, cb, cg = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sa, sb, sg = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    m = np.empty(a.shape[:-1] + (3, 3))
    m[..., 0, 0] = cg * cc - sg * sa
    m[..., 0, 1] = cg * cs + sg * ca
    m[..., 0, 2] = -cg * sb
    m[..., 1, 0] = -sg * cc - cg * sa
    m[..., 1, 1] = -sg * cs + cg * ca
    m[..., 1, 2] = sg * sb
    m[..., 2, 0] = sc
    m[..., 2, 1] = ss
    m[..., 2, 2] = cb
    return m


def matrix_to_euler(matrices) -> np.ndarray:
    """ZYZ Euler angles of rotation matrices, inverse of :func:`euler_to_matrix`.

    Parameters
    ----------
    matrices : array_like of shape (..., 3, 3)

    Returns
    -------
    ndarray of shape (..., 3)
        ``(rot, tilt, psi)`` in degrees with ``tilt`` in [0, 180] and ``rot``, ``psi`` in
        (-180, 180]. At the poles (``tilt`` 0 or 180) ``rot`` is set to 0.
    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"matrices must have shape (..., 3, 3), got {m.shape}")
    abs_sb = np.hypot(m[..., 0, 2], m[..., 1, 2])
    regular = abs_sb > 16 * np.finfo(np.float64).eps * 1e3
    rot = np.where(regular, np.arctan2(m[..., 2, 1], m[..., 2, 0]), 0.0)
    tilt = np.arctan2(abs_sb, m[..., 2, 2])
    psi_regular = np.arctan2(m[..., 1, 2], -m[..., 0, 2])
    psi_north = np.arctan2(m[..., 0, 1], m[..., 0, 0])
    psi_south = np.arctan2(m[..., 1, 0], -m[..., 0, 0])
    psi = np.where(regular, psi_regular, np.where(m[..., 2, 2] > 0, psi_north, psi_south))
    tilt = np.where(regular, tilt, np.where(m[..., 2, 2] > 0, 0.0, np.pi))
    return np.rad2deg(np.stack([rot, tilt, psi], axis=-1))


def projection_direction(angles_deg) -> np.ndarray:
    """Unit projection directions ``(sin t cos r, sin t sin r, cos t)``.

    Parameters
    ----------
    angles_deg : array_like of shape (..., 2) or (..., 3)
        ``(rot, tilt[, psi])`` in degrees; ``psi`` is ignored.

    Returns
    -------
    ndarray of shape (..., 3)
    """
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    if a.shape[-1] not in (2, 3):
        raise ValueError(f"angles_deg must have shape (..., 2) or (..., 3), got {a.shape}")
    rot, tilt = a[..., 0], a[..., 1]
    return np.stack([np.sin(tilt) * np.cos(rot), np.sin(tilt) * np.sin(rot), np.cos(tilt)],
                    axis=-1)


def direction_to_euler(directions) -> np.ndarray:
    """``(rot, tilt)`` in degrees of projection directions (need not be normalised).

    Parameters
    ----------
    directions : array_like of shape (..., 3)

    Returns
    -------
    ndarray of shape (..., 2)
    """
    d = np.asarray(directions, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    rot = np.rad2deg(np.arctan2(d[..., 1], d[..., 0]))
    tilt = np.rad2deg(np.arccos(np.clip(d[..., 2], -1.0, 1.0)))
    return np.stack([rot, tilt], axis=-1)


def angle_between_directions_deg(angles_a_deg, angles_b_deg) -> np.ndarray:
    """Angle in degrees between the projection directions of two sets of poses.

    Parameters
    ----------
    angles_a_deg, angles_b_deg : array_like of shape (..., 2) or (..., 3)
        Broadcastable ``(rot, tilt[, psi])``.

    Returns
    -------
    ndarray of shape (...)
        Values in [0, 180].
    """
    da = projection_direction(angles_a_deg)
    db = projection_direction(angles_b_deg)
    return angle_between_unit_vectors_deg(da, db)


def angle_between_unit_vectors_deg(da, db) -> np.ndarray:
    """Angle in degrees between unit vectors ``(..., 3)`` (broadcast).

    ``atan2(|a x b|, a . b)``: accurate near 0 and 180 degrees, unlike ``arccos(a . b)``.
    """
    cross = np.linalg.norm(np.cross(da, db), axis=-1)
    dot = np.sum(da * db, axis=-1)
    return np.rad2deg(np.arctan2(cross, dot))


def rotation_angle_deg(matrices_a, matrices_b) -> np.ndarray:
    """Angle in degrees of the rotation taking ``matrices_b`` to ``matrices_a``.

    This is the full pose distance (direction and in-plane rotation together).

    Parameters
    ----------
    matrices_a, matrices_b : array_like of shape (..., 3, 3)

    Returns
    -------
    ndarray of shape (...)
        Values in [0, 180]. From ``||A - B||_F = sqrt(8) sin(theta / 2)``: accurate near 0,
        unlike ``arccos`` of the trace.
    """
    a = np.asarray(matrices_a, dtype=np.float64)
    b = np.asarray(matrices_b, dtype=np.float64)
    frob = np.sqrt(np.sum((a - b) ** 2, axis=(-2, -1)))
    return np.rad2deg(2.0 * np.arcsin(np.clip(frob / np.sqrt(8.0), 0.0, 1.0)))


def inplane_difference_deg(angles_a_deg, angles_b_deg) -> np.ndarray:
    """In-plane angle difference in degrees once the projection directions are aligned.

    The image of pose ``b`` is rotated onto that of pose ``a`` by the smallest rotation that
    takes direction ``b`` to direction ``a``; what is left is a rotation about the beam,
    whose angle is returned. For equal directions this is ``|psi_a - psi_b|`` wrapped to
    [0, 180].

    Parameters
    ----------
    angles_a_deg, angles_b_deg : array_like of shape (..., 3)

    Returns
    -------
    ndarray of shape (...)
    """
    ma = euler_to_matrix(angles_a_deg)
    mb = euler_to_matrix(angles_b_deg)
    # Express b in a frame with the same direction as a: rotate direction b onto a.
    da, db = ma[..., 2, :], mb[..., 2, :]
    align = _rotation_between(db, da)  # acts on map coordinates, maps db -> da
    mb_aligned = np.einsum("...ij,...kj->...ik", mb, align)  # mb @ align.T
    rel = np.einsum("...ij,...kj->...ik", ma, mb_aligned)  # ma @ mb_aligned.T, about z
    return np.abs(np.rad2deg(np.arctan2(rel[..., 0, 1], rel[..., 0, 0])))


def _rotation_between(u, v) -> np.ndarray:
    """Smallest rotation matrices mapping unit vectors ``u`` to ``v`` (shape (..., 3, 3))."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    axis = np.cross(u, v)
    s = np.linalg.norm(axis, axis=-1)
    # Antiparallel vectors: any axis perpendicular to u.
    helper = np.where(np.abs(u[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    perp = np.cross(u, helper)
    perp /= np.linalg.norm(perp, axis=-1, keepdims=True)
    k = np.where((s > _EPS)[..., None], axis / np.maximum(s, _EPS)[..., None], perp)
    rotvec = k * np.deg2rad(angle_between_unit_vectors_deg(u, v))[..., None]
    if rotvec.size == 0:  # scipy's Rotation refuses an empty stack
        return np.zeros(rotvec.shape + (3,))
    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(rotvec.shape + (3,))


def random_angles_deg(n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Poses drawn uniformly over SO(3) (uniform directions and uniform in-plane angle).

    Parameters
    ----------
    n : int
    rng : numpy Generator or seed

    Returns
    -------
    ndarray of shape (n, 3)
        ``(rot, tilt, psi)`` in degrees.
    """
    rng = np.random.default_rng(rng)
    rot = rng.uniform(-180.0, 180.0, n)
    tilt = np.rad2deg(np.arccos(rng.uniform(-1.0, 1.0, n)))
    psi = rng.uniform(-180.0, 180.0, n)
    return np.stack([rot, tilt, psi], axis=-1)
