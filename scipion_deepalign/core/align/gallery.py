"""Reference galleries: projections of the reference map on fine direction grids.

A gallery holds, for one region (or for the whole asymmetric unit in global mode), the
directions ``(rot, tilt)`` of a fine even grid and the projections of the (downsampled)
reference map at those directions with ``psi = 0``. In-plane rotated copies are made on
demand by :func:`rotate_to_psi`. Poses follow :mod:`scipion_deepalign.core.geometry`.

Galleries are cached per run in memory (:class:`GalleryCache`) and optionally on disk as
``.npy`` files in a cache folder, keyed by a digest of the map and the grid.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ..defaults import GALLERY_STEP_PX
from ..imageops import fourier_upsample2

__all__ = [
    "GalleryGroups",
    "group_galleries",
    "direction_keys",
    "GalleryCache",
    "default_step_deg",
    "global_directions_deg",
    "rotate_to_psi",
    "rotate_selected",
    "psi_grid_deg",
]


@dataclass
class GalleryGroups:
    """The galleries of one search: one per set of tiles searched by the same particles.

    Every needed direction is projected once: the tiles partition the directions and each
    tile is in one group, so group ``g`` is the slice ``bounds[g]`` of ``directions_deg`` and
    ``projections``, searched by particles ``members[g]``.

    Attributes
    ----------
    directions_deg : ndarray of shape (M, 2)
    projections : ndarray of shape (M, B, B) float32
        At ``(rot, tilt, 0)``.
    bounds : list of (start, stop)
    members : list of int ndarray
        Particle indices of each group.
    """

    directions_deg: np.ndarray
    projections: np.ndarray
    bounds: list
    members: list

    def __len__(self) -> int:
        return len(self.directions_deg)

    def joined(self, other: GalleryGroups) -> GalleryGroups:
        """These groups followed by ``other``'s (its direction ``i`` becomes ``len(self) + i``):
        the galleries of a search and of its second search around the kept poses
        (:meth:`.search_plan.SearchPlan.follow`), as one for the poses of both."""
        base = len(self)
        return GalleryGroups(np.concatenate([self.directions_deg, other.directions_deg]),
                             np.concatenate([self.projections, other.projections]),
                             list(self.bounds) + [(lo + base, hi + base)
                                                  for lo, hi in other.bounds],
                             list(self.members) + list(other.members))

    def indices_of(self, directions_deg: np.ndarray) -> np.ndarray | None:
        """Index in these galleries of each of ``directions_deg`` (the same directions, as the
        gallery cache matches them), or None when one of them is not here."""
        index = {key: i for i, key in enumerate(direction_keys(self.directions_deg))}
        found = [index.get(key) for key in direction_keys(directions_deg)]
        if any(i is None for i in found):
            return None
        return np.asarray(found, dtype=np.int64)

    def check_covers(self, n: int, step_deg: float) -> None:
        """``ValueError`` unless each of the ``n`` particles meets at least one direction."""
        uncovered = np.ones(n, dtype=bool)
        for members in self.members:
            uncovered[members] = False
        if uncovered.any():
            raise ValueError(
                f"step_deg {step_deg:g} is too coarse for the regions: {int(uncovered.sum())} "
                "particles have no gallery direction in their regions; use a smaller step_deg")


def direction_keys(directions_deg: np.ndarray) -> list:
    """A key per direction ``(rot, tilt)`` that is the same for the same direction met again
    (rounded to 1e-6 degree): how the galleries and their cache match directions."""
    dirs = np.asarray(directions_deg, dtype=np.float64).reshape(-1, 2)
    return [d.tobytes() for d in np.round(dirs, 6)]


def group_galleries(plan, volume: np.ndarray, cache: GalleryCache) -> GalleryGroups:
    """The :class:`GalleryGroups` of a :class:`search_plan.SearchPlan`.

    Tiles with the same particle list are searched together (larger matrix products; in
    global mode every tile is in one group), so each particle still meets exactly the
    directions of its own tiles.
    """
    groups: dict = {}
    for t, (dirs, members) in enumerate(zip(plan.tiles.directions_deg, plan.members)):
        if len(dirs) and len(members):
            groups.setdefault(members.tobytes(), (members, []))[1].append(t)
    group_dirs = [np.concatenate([plan.tiles.directions_deg[t] for t in tiles])
                  for _, tiles in groups.values()]
    if not group_dirs:
        box = volume.shape[-1]
        return GalleryGroups(np.zeros((0, 2)), np.zeros((0, box, box), np.float32), [], [])
    directions = np.concatenate(group_dirs)
    stops = np.cumsum([len(d) for d in group_dirs])
    return GalleryGroups(directions, cache.projections(volume, directions),
                         list(zip(stops - np.array([len(d) for d in group_dirs]), stops)),
                         [members for members, _ in groups.values()])



def default_step_deg(radius_px: float, *, refine: bool = False) -> float:
    """Angular step that moves a point at ``radius_px`` from the centre by
    ``GALLERY_STEP_PX[refine]`` pixels (:data:`~scipion_deepalign.core.defaults.GALLERY_STEP_PX`:
    one without refinement, two when the local refinement follows).

    Parameters
    ----------
    radius_px : float
        Particle radius in pixels of the box the search runs on.
    refine : bool
        Whether the local refinement follows the gallery search.

    Returns
    -------
    float
        ``degrees(GALLERY_STEP_PX[refine] / radius_px)``.
    """
    if radius_px <= 0:
        raise ValueError(f"radius_px must be positive, got {radius_px}")
    return float(np.rad2deg(GALLERY_STEP_PX[bool(refine)] / radius_px))


def psi_grid_deg(psi_step_deg: float) -> np.ndarray:
    """Even in-plane angles covering 360 degrees, ``(P,)`` in [0, 360)."""
    if not psi_step_deg > 0:
        raise ValueError(f"psi_step_deg must be positive, got {psi_step_deg}")
    n = max(1, int(round(360.0 / psi_step_deg)))
    return np.arange(n) * (360.0 / n)


def global_directions_deg(symmetry: str, step_deg: float) -> np.ndarray:
    """Even directions ``(M, 2)`` over the asymmetric unit of ``symmetry``.

    The same fine geodesic grid as :func:`regions.region_direction_grids`, taken as one region
    centred on the pole, so each direction of the asymmetric unit appears once.
    """
    from ..regions import region_direction_grids

    return np.asarray(region_direction_grids(np.zeros((1, 2)), symmetry, step_deg)[0])


def rotate_to_psi(projections: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
    """In-plane rotated copies: the projection at ``(rot, tilt, psi)`` for every ``psi``.

    Same geometry and sign as :func:`imageops.rotate_images` (rotating the projection at
    ``(rot, tilt, 0)`` by ``psi`` gives the one at ``(rot, tilt, psi)``), vectorised over the
    whole stack: each image is Fourier-upsampled twice, then sampled bilinearly at the
    rotated coordinates (about 100 times faster than one spline interpolation per image,
    and as accurate for band-limited projections). Pixels whose source is outside the box
    are 0.

    Parameters
    ----------
    projections : ndarray of shape (M, B, B)
        Projections at ``psi = 0``.
    psi_deg : ndarray of shape (P,)

    Returns
    -------
    ndarray of shape (M, P, B, B) float32
    """
    proj = np.asarray(projections, dtype=np.float32)
    m, box = proj.shape[0], proj.shape[-1]
    psi = np.asarray(psi_deg, dtype=np.float64).ravel()
    op = _rotation_operator(box, tuple(np.round(psi, 9)))
    up = fourier_upsample2(proj).reshape(m, -1)
    out = (op @ up.T).T  # sparse (P*B*B, 4*B*B) times dense (4*B*B, M)
    return np.ascontiguousarray(out, dtype=np.float32).reshape(m, len(psi), box, box)


def rotate_selected(projections: np.ndarray, psi_deg: np.ndarray,
                    psi_index: np.ndarray) -> np.ndarray:
    """Each projection rotated by its own angle of a psi grid (as :func:`rotate_to_psi`).

    Parameters
    ----------
    projections : ndarray of shape (n, B, B)
        Projections at ``psi = 0``.
    psi_deg : ndarray of shape (P,)
        The in-plane grid (the operator of the whole grid is reused).
    psi_index : int ndarray of shape (n,)
        Angle of each projection, as an index into ``psi_deg``.

    Returns
    -------
    ndarray of shape (n, B, B) float32
    """
    proj = np.asarray(projections, dtype=np.float32)
    n, box = proj.shape[0], proj.shape[-1]
    psi = np.asarray(psi_deg, dtype=np.float64).ravel()
    op = _rotation_operator(box, tuple(np.round(psi, 9)))
    up = fourier_upsample2(proj).reshape(n, -1)
    out = np.empty((n, box * box), dtype=np.float32)
    index = np.asarray(psi_index, dtype=np.int64)
    for p in np.unique(index):
        sel = np.flatnonzero(index == p)
        rows = op[p * box * box:(p + 1) * box * box]
        out[sel] = (rows @ up[sel].T).T
    return out.reshape(n, box, box)


@functools.lru_cache(maxsize=8)
def _rotation_operator(box: int, psi_deg: tuple):
    """Sparse bilinear sampling of a twice-upsampled image at rotated coordinates.

    Rows are the ``(P, B, B)`` output pixels, columns the ``(2B, 2B)`` upsampled pixels.
    """
    import scipy.sparse

    psi = np.deg2rad(np.asarray(psi_deg, dtype=np.float64))
    c = box // 2
    yy, xx = np.mgrid[0:box, 0:box].astype(np.float64)
    yy, xx = (yy - c).ravel(), (xx - c).ravel()
    cos, sin = np.cos(psi)[:, None], np.sin(psi)[:, None]
    src_x = (cos * xx - sin * yy + c).ravel()  # (P * B * B,), as imageops.rotate_images
    src_y = (sin * xx + cos * yy + c).ravel()
    inside = (src_x >= 0) & (src_x <= box - 1) & (src_y >= 0) & (src_y <= box - 1)
    ux, uy = np.clip(2 * src_x, 0, 2 * box - 2), np.clip(2 * src_y, 0, 2 * box - 2)
    x0, y0 = np.floor(ux).astype(np.int64), np.floor(uy).astype(np.int64)
    wx, wy = ux - x0, uy - y0
    rows, cols, vals = [], [], []
    row = np.arange(len(src_x))
    for dy, weight_y in ((0, 1 - wy), (1, wy)):
        for dx, weight_x in ((0, 1 - wx), (1, wx)):
            rows.append(row)
            cols.append((y0 + dy) * 2 * box + x0 + dx)
            vals.append(weight_y * weight_x * inside)
    return scipy.sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(src_x), 4 * box * box))


def _volume_digest(volume: np.ndarray) -> str:
    h = hashlib.sha1(np.ascontiguousarray(volume, dtype=np.float32).tobytes())
    h.update(str(volume.shape).encode())
    return h.hexdigest()[:16]


class GalleryCache:
    """Per-run cache of gallery projections, in memory and optionally as ``.npy`` files.

    Every direction of a map is projected once per cache: a request for a set of directions
    already met (a second search over other groupings of the same tiles, as the significance
    fallback's global pass) takes the projections made before and projects only the new ones.

    Parameters
    ----------
    cache_dir : str or None
        Folder for ``gallery_<digest>.npy`` files (one per requested set); ``None`` keeps
        everything in memory.

    Attributes
    ----------
    n_projected : int
        Directions projected (not found in the cache) so far.
    """

    def __init__(self, cache_dir: str | None = None):
        self.cache_dir = cache_dir
        self._memory: dict = {}
        self._directions: dict = {}  # map digest -> {rounded direction: projection}
        self._spectrum = (None, None)  # (digest, VolumeSpectrum) of the last map projected
        self.n_projected = 0
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)

    def projections(self, volume: np.ndarray, directions_deg: np.ndarray) -> np.ndarray:
        """Projections ``(M, B, B)`` of ``volume`` at ``(rot, tilt, 0)``, computed once."""
        dirs = np.asarray(directions_deg, dtype=np.float64).reshape(-1, 2)
        digest = _volume_digest(volume)
        h = hashlib.sha1(digest.encode())
        h.update(b"".join(direction_keys(dirs)))
        key = h.hexdigest()[:20]
        if key in self._memory:
            return self._memory[key]
        path = None
        if self.cache_dir is not None:
            path = os.path.join(self.cache_dir, f"gallery_{key}.npy")
            if os.path.exists(path):
                self._memory[key] = np.load(path)
                return self._memory[key]
        proj = self._by_direction(volume, digest, dirs)
        if path is not None:
            np.save(path, proj)
        self._memory[key] = proj
        return proj

    def _by_direction(self, volume, digest, dirs) -> np.ndarray:
        """Projections ``(M, B, B)`` at ``dirs``, projecting only the directions not met."""
        from ..projection import VolumeSpectrum, project

        known = self._directions.setdefault(digest, {})
        keys = direction_keys(dirs)
        first: dict = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        new = [i for key, i in first.items() if key not in known]
        if new:
            angles = np.zeros((len(new), 3))
            angles[:, :2] = dirs[new]
            if self._spectrum[0] != digest:
                self._spectrum = (digest, VolumeSpectrum(volume))
            made = np.asarray(project(self._spectrum[1], angles), dtype=np.float32)
            known.update(zip((keys[i] for i in new), made))
            self.n_projected += len(new)
        if not keys:
            return np.zeros((0,) + volume.shape[1:], np.float32)
        return np.stack([known[key] for key in keys])
