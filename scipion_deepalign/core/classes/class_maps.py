"""Each class's map from its particles, the next iteration's references, and the focus mask.

:func:`reconstruct_class_maps` reconstructs each class's half maps from its particles, with
their poses and CTFs (:func:`~..judge.reconstruct.reconstruct_half_maps`; the halves are the
particles' fixed ``subsets``, as RELION's ``rlnRandomSubset``), measures the halves' FSC
(:func:`~..judge.fsc.fsc_curve`, inside the particle's soft sphere) and low-passes the map of
all its particles where that FSC falls below
:data:`~..defaults.CLASSIFY_FILTER_FSC` (0.5: the halves are aligned against one shared
reference, so their FSC is inflated by its noise; the map is cut where the signal is sure).
A class whose particles do not fill both halves (it emptied, or kept one particle) keeps its
previous map and reports no resolution.

:func:`check_mask` validates a focus mask (rules in its docstring); :func:`focus_maps`
multiplies the maps by it, so that the comparison of the classes sees the masked part only.
Without one, classes drawn from one map are compared on maps that keep the class maps' mean
and differ only where they differ most (:func:`difference_focus`, a focus the maps draw
themselves).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import CLASSIFY_FILTER_FSC, PARTICLE_RADIUS_BOX_FRACTION, same_pixel_size
from ..imageops import low_pass_volume
from ..judge.fsc import fsc_curve, soft_sphere_mask
from ..judge.reconstruct import reconstruct_half_maps
from ..runtime.stacks import RowStack

__all__ = ["ClassMaps", "reconstruct_class_maps", "check_mask", "focus_maps", "map_correlation",
           "sphere_weight", "difference_mask", "difference_focus", "focus_words",
           "DIFFERENCE_RESOLUTION_A",
           "DIFFERENCE_DILATION_PX", "DIFFERENCE_SOFTENING_PX"]

#: resolution (Å) at which :func:`difference_mask` reads where the class maps differ
DIFFERENCE_RESOLUTION_A = 20.0
#: the voxels of largest difference are grown by this many voxels, then softened by a
#: Gaussian of this width (voxels)
DIFFERENCE_DILATION_PX = 2
DIFFERENCE_SOFTENING_PX = 1.5


@dataclass
class ClassMaps:
    """The K class maps of one iteration.

    Attributes
    ----------
    maps : ndarray of shape (K, B, B, B), float32
        Each class's map low-passed at its resolution (the next iteration's references), or
        its previous map where ``kept_previous``.
    resolution_0143_a, resolution_05_a : list of (float or None)
        FSC 0.143 and 0.5 resolutions of each class's half maps (None: not reconstructed).
    filter_a : list of (float or None)
        Where each map was low-passed (the resolution at :data:`CLASSIFY_FILTER_FSC`).
    kept_previous : list of bool
        Classes whose particles did not fill both halves: their previous map is kept.
    half_correlation : list of (float or None)
        Correlation of each class's two half maps, low-passed as its map, inside the
        particle's sphere: how alike two maps of the class's particles are (the noise level
        to compare the class maps' correlation with).
    """

    maps: np.ndarray
    resolution_0143_a: list
    resolution_05_a: list
    filter_a: list
    kept_previous: list
    half_correlation: list


def reconstruct_class_maps(images, classes, angles_deg, *, previous, subsets, shifts_px=None,
                           ctf=None, pixel_size_a: float, symmetry: str = "c1",
                           filter_fsc: float = CLASSIFY_FILTER_FSC) -> ClassMaps:
    """Each class's low-passed map from its particles (see the module docstring).

    Parameters
    ----------
    images : array_like of shape (N, B, B)
        The particles (an array, a memmap or a loader with ``shape`` and ``[rows]``).
    classes : ndarray of shape (N,) int
        0-based class of each particle.
    angles_deg : ndarray of shape (N, 3)
        Poses (:mod:`..geometry`'s convention).
    previous : ndarray of shape (K, B, B, B)
        The maps kept by a class that cannot be reconstructed.
    subsets : ndarray of shape (N,) of 1 and 2
        Each particle's half, fixed for the whole classification.
    shifts_px : ndarray of shape (N, 2), optional
    ctf : CTFParams, optional
    pixel_size_a : float
    symmetry : str
    filter_fsc : float
        FSC threshold of the low-pass.

    Returns
    -------
    ClassMaps
    """
    previous = np.asarray(previous, dtype=np.float32)
    classes, subsets = np.asarray(classes), np.asarray(subsets)
    box = previous.shape[-1]
    radius_a = PARTICLE_RADIUS_BOX_FRACTION * box * pixel_size_a
    out = ClassMaps(maps=previous.copy(), resolution_0143_a=[], resolution_05_a=[],
                    filter_a=[], kept_previous=[], half_correlation=[])
    sphere = sphere_weight(box)
    for k in range(len(previous)):
        rows = np.flatnonzero(classes == k)
        if len(np.unique(subsets[rows])) < 2:  # no half maps: the previous map stays
            for name in ("resolution_0143_a", "resolution_05_a", "filter_a",
                         "half_correlation"):
                getattr(out, name).append(None)
            out.kept_previous.append(True)
            continue
        half1, half2, full = reconstruct_half_maps(
            RowStack(images, rows), angles_deg[rows],
            shifts_px=None if shifts_px is None else shifts_px[rows],
            ctf=None if ctf is None else ctf.subset(rows), pixel_size_a=pixel_size_a,
            symmetry=symmetry, subsets=subsets[rows])
        fsc = fsc_curve(half1, half2, pixel_size_a=pixel_size_a, mask_radius_a=radius_a)
        cut = float(fsc.resolution_at(filter_fsc))
        halves = [low_pass_volume(h, pixel_size_a=pixel_size_a, resolution_a=cut)
                  for h in (half1, half2)]
        out.half_correlation.append(float(map_correlation(np.stack(halves), sphere)[0, 1]))
        out.maps[k] = low_pass_volume(full, pixel_size_a=pixel_size_a, resolution_a=cut)
        out.resolution_0143_a.append(float(fsc.resolution_0143_a))
        out.resolution_05_a.append(float(fsc.resolution_05_a))
        out.filter_a.append(cut)
        out.kept_previous.append(False)
    return out


def check_mask(mask, *, box_px: int, pixel_size_a: float | None = None,
               mask_pixel_size_a: float | None = None, name: str = "the mask") -> np.ndarray:
    """A focus mask checked against the particles, as float32.

    Rules, one message each, naming ``name``:

    1. a cubic map of the particles' box ``box_px``;
    2. the particles' pixel size (:func:`~..defaults.same_pixel_size`), when both are known;
    3. finite values between 0 and 1 (a soft mask; a little rounding is forgiven);
    4. not empty (some value above 0).

    Raises
    ------
    ValueError
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 3 or mask.shape != (box_px,) * 3:
        raise ValueError(f"{name}: shape {mask.shape} differs from the particles' box "
                         f"({box_px}, {box_px}, {box_px})")
    if (pixel_size_a and mask_pixel_size_a
            and not same_pixel_size(pixel_size_a, mask_pixel_size_a)):
        raise ValueError(f"{name}: pixel size {mask_pixel_size_a:.4g} A differs from the "
                         f"particles' {pixel_size_a:.4g} A")
    if not np.all(np.isfinite(mask)) or mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
        raise ValueError(f"{name}: a mask holds values from 0 to 1, this one "
                         f"{np.nanmin(mask):.3g} to {np.nanmax(mask):.3g}")
    if not mask.max() > 0:
        raise ValueError(f"{name}: the mask is empty (no value above 0)")
    return np.clip(mask, 0.0, 1.0)


def focus_maps(maps, mask) -> np.ndarray:
    """The maps as the classes are compared: each multiplied by ``mask`` (None: unchanged)."""
    maps = np.asarray(maps, dtype=np.float32)
    return maps if mask is None else maps * np.asarray(mask, dtype=np.float32)[None]


def difference_mask(maps, *, fraction: float, pixel_size_a: float) -> np.ndarray | None:
    """Soft mask ``(B, B, B)`` where the maps differ most: the ``fraction`` of the box's voxels
    of largest difference from the maps' mean (each map's, low-passed to
    :data:`DIFFERENCE_RESOLUTION_A`; the largest over the maps), grown by
    :data:`DIFFERENCE_DILATION_PX` voxels and softened (:data:`DIFFERENCE_SOFTENING_PX`).
    None where the maps do not differ."""
    from scipy import ndimage

    maps = np.asarray(maps, dtype=np.float32)
    if not 0 < fraction < 1:
        raise ValueError(f"the focus fraction must be in (0, 1), got {fraction}")
    mean = maps.mean(axis=0)
    diff = np.max([np.abs(low_pass_volume(m - mean, pixel_size_a=pixel_size_a,
                                          resolution_a=DIFFERENCE_RESOLUTION_A))
                   for m in maps], axis=0)
    if not np.any(diff > 0):
        return None
    core = diff >= np.quantile(diff, 1.0 - fraction)
    grown = ndimage.binary_dilation(core, iterations=DIFFERENCE_DILATION_PX)
    return ndimage.gaussian_filter(grown.astype(np.float32), DIFFERENCE_SOFTENING_PX)


def difference_focus(maps, *, fraction: float, pixel_size_a: float) -> np.ndarray:
    """The maps as classes drawn from one map are compared: their mean, plus each map's
    difference from it inside :func:`difference_mask` (unchanged where they do not differ),
    low-passed where the finest of the maps ends
    (:func:`~..resolution.estimate_map_resolution`): the mask's edge adds no detail, so the
    search still runs at the resolution the maps support.

    Compared on the whole maps, a partition of the particles is its own fixed point: its
    class maps carry its errors in every view and reassign the same particles; confined to
    where the classes really differ, the comparison leaves it (docs/benchmarks_classes.md).
    """
    maps = np.asarray(maps, dtype=np.float32)
    mask = difference_mask(maps, fraction=fraction, pixel_size_a=pixel_size_a)
    if mask is None:
        return maps
    from ..resolution import estimate_map_resolution

    cut = min(estimate_map_resolution(m, pixel_size_a) for m in maps)
    mean = maps.mean(axis=0)
    return np.stack([low_pass_volume(mean + mask * (m - mean), pixel_size_a=pixel_size_a,
                                     resolution_a=cut) for m in maps]).astype(np.float32)


def focus_words(fraction) -> str:
    """``"; compared where the class maps differ most (...)"``: an iteration report's
    ``focus_fraction``, for the command's and the protocol's lines; empty without it."""
    if not fraction:
        return ""
    return (f"; compared where the class maps differ most ({100 * fraction:g} % of the box, "
            "grown and softened)")


def map_correlation(maps, weight=None) -> np.ndarray:
    """Pearson correlation of every pair of maps, ``(K, K)``, weighted by ``weight`` (e.g. a
    soft sphere; None: the whole box)."""
    maps = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    w = np.ones(maps.shape[1]) if weight is None else np.asarray(weight, np.float64).ravel()
    centred = maps - (maps @ w / w.sum())[:, None]
    weighted = centred * np.sqrt(w)
    norms = np.linalg.norm(weighted, axis=1)
    return (weighted @ weighted.T) / np.maximum(np.outer(norms, norms), 1e-30)


def sphere_weight(box_px: int) -> np.ndarray:
    """The particle's soft sphere (radius :data:`PARTICLE_RADIUS_BOX_FRACTION` of the box):
    where the maps are compared."""
    return soft_sphere_mask(box_px, PARTICLE_RADIUS_BOX_FRACTION * box_px)
