"""The maps of ``bench_classes.py``: the 70S ribosome as class A, its changed copy as class B
(a part masked away, or turned rigidly about a hinge), and the K sweep's maps."""
from __future__ import annotations

import numpy as np

MAP, BOX, PIXEL_A = "clean70SRibosome_vol_65p.mrc", 64, 5.0
#: the part of the ribosome that changes: a ball of this radius around a point this far out
#: along x (a fraction of the box's half width)
PART_RADIUS_A, PART_OFFSET = 45.0, 0.35


#: the part's direction from the box centre for each class of the K sweep beyond A: (z, y, x)
KSWEEP_DIRECTIONS = ((0, 0, 1), (0, 1, 0), (1, 0, 0))


def part_mask(shape, *, part_radius_a: float = PART_RADIUS_A, direction=(0, 0, 1)):
    """``(inside, centre)``: a ball of ``part_radius_a`` with a soft 2-px edge, centred
    ``PART_OFFSET`` of the box's half width from the box centre along ``direction`` (z, y, x)."""
    box = shape[0]
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    centre = np.full(3, box // 2, float) + PART_OFFSET * box / 2 * direction
    grid = np.indices(shape).reshape(3, -1).T
    r = np.linalg.norm(grid - centre, axis=1).reshape(shape)
    radius = part_radius_a / PIXEL_A
    return np.clip((radius + 1.0 - r) / 2.0, 0.0, 1.0), centre


def class_maps(volume, *, pair: str, turn_deg: float, part_radius_a: float = PART_RADIUS_A,
               direction=(0, 0, 1), hinge: str = "edge"):
    """``(A, B)``: the map and its changed copy (module docstring); the part is a ball of
    ``part_radius_a`` (benchmarks/bench_class_output.py also removes a bigger one).

    ``pair="compositional"``: B is A with the part masked away (soft edge).
    ``pair="conformational"``: B is A with the part (the map times the soft ball) cut out and
    put back turned rigidly by ``turn_deg`` about an axis perpendicular to ``direction``,
    through the hinge: the ball's point nearest the box centre (``hinge="edge"``, where the
    part joins the rest: the part swings, its far side moves by about 2 R sin(D/2)) or the
    ball's centre (``hinge="centre"``: the part spins in place). Resampled by
    ``scipy.ndimage.affine_transform`` (trilinear; core has no 3D map rotation)."""
    from scipy.ndimage import affine_transform
    from scipy.spatial.transform import Rotation

    volume = np.asarray(volume, np.float32)
    inside, centre = part_mask(volume.shape, part_radius_a=part_radius_a, direction=direction)
    if pair == "compositional":
        return volume, (volume * (1.0 - inside)).astype(np.float32)
    if pair != "conformational":
        raise ValueError(f"pair must be compositional or conformational, got {pair!r}")
    unit = np.asarray(direction, float) / np.linalg.norm(direction)
    # the axis: perpendicular to the direction (the first box axis least along it, made
    # orthogonal)
    other = np.eye(3)[int(np.argmin(np.abs(unit)))]
    axis = other - unit * (other @ unit)
    axis /= np.linalg.norm(axis)
    if hinge == "edge":
        point = centre - unit * part_radius_a / PIXEL_A
    elif hinge == "centre":
        point = centre
    else:
        raise ValueError(f"hinge must be edge or centre, got {hinge!r}")
    turn = Rotation.from_rotvec(np.deg2rad(turn_deg) * axis).as_matrix()
    # output(o) = part(turn^T (o - point) + point): the part turned by +turn about the point
    moved = affine_transform(volume * inside, turn.T, offset=point - turn.T @ point, order=1)
    return volume, (volume * (1.0 - inside) + moved).astype(np.float32)


def ksweep_maps(volume, k: int, *, part_radius_a: float = PART_RADIUS_A):
    """The K sweep's maps: A, then A with the part of each of ``KSWEEP_DIRECTIONS`` masked
    away (compositional), as many as ``k`` asks for."""
    if not 1 <= k <= 1 + len(KSWEEP_DIRECTIONS):
        raise ValueError(f"the K sweep makes 1 to {1 + len(KSWEEP_DIRECTIONS)} maps, not {k}")
    maps = [np.asarray(volume, np.float32)]
    for direction in KSWEEP_DIRECTIONS[:k - 1]:
        maps.append(class_maps(volume, pair="compositional", turn_deg=0.0,
                               part_radius_a=part_radius_a, direction=direction)[1])
    return maps
