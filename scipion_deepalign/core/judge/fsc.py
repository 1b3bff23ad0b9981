"""Fourier shell correlation between two maps, with an optional soft spherical mask.

Shells are one Fourier voxel thick: shell ``s`` holds the frequencies whose radius rounds to
``s`` voxels, i.e. ``s / (box_px * pixel_size_a)`` in 1/Angstrom. Shell 0 is the DC term;
shells run up to Nyquist (``box_px // 2``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FSCResult", "fsc_curve", "soft_sphere_mask", "resolution_at_threshold",
           "fsc_from_curve"]


@dataclass
class FSCResult:
    """An FSC curve and its resolutions.

    Attributes
    ----------
    frequency_inv_a : ndarray of shape (S,)
        Shell frequencies in 1/Angstrom, ``s / (box_px * pixel_size_a)``, ``s = 0 .. box // 2``.
    fsc : ndarray of shape (S,)
        Correlation per shell, in [-1, 1].
    resolution_0143_a, resolution_05_a : float
        Resolution in Angstrom where the curve first falls below 0.143 / 0.5 (linear
        interpolation between the two shells around the crossing, shell 0 is skipped). When the
        curve never falls below the threshold this is the Nyquist resolution
        ``2 * pixel_size_a`` (the best a map of this sampling can show, so a lower bound);
        when it is already below at shell 1 it is the box size in Angstrom.
    shell_counts : ndarray of shape (S,)
        Number of Fourier voxels in each shell (of the full, Hermitian-redundant transform);
        independent noise gives FSC values of about ``1 / sqrt(shell_counts)``.
    pixel_size_a : float
    """

    frequency_inv_a: np.ndarray
    fsc: np.ndarray
    resolution_0143_a: float
    resolution_05_a: float
    shell_counts: np.ndarray
    pixel_size_a: float

    @property
    def limited_by_sampling(self) -> bool:
        """Whether the curve stays at or above 0.143 up to Nyquist: the resolution is then
        limited by the sampling, not measured."""
        return not bool(np.any(np.asarray(self.fsc)[1:] < 0.143))

    def resolution_at(self, threshold: float) -> float:
        """Resolution in Angstrom where the curve first falls below ``threshold``."""
        return resolution_at_threshold(self.frequency_inv_a, self.fsc, threshold,
                                       pixel_size_a=self.pixel_size_a)


def soft_sphere_mask(box_px: int, radius_px: float, *, soft_edge_px: float = 3.0) -> np.ndarray:
    """Spherical mask of a cubic box, 1 inside, raised-cosine edge outside ``radius_px``.

    Parameters
    ----------
    box_px : int
    radius_px : float
        Radius in pixels from the centre voxel ``box_px // 2`` where the edge starts.
    soft_edge_px : float, keyword-only
        Width of the cosine fall-off in pixels (0 gives a hard mask).

    Returns
    -------
    ndarray of shape (box_px, box_px, box_px), float32
    """
    if radius_px <= 0:
        raise ValueError(f"mask radius must be positive, got {radius_px} px")
    if soft_edge_px < 0:
        raise ValueError(f"soft_edge_px must be >= 0, got {soft_edge_px}")
    c = np.arange(box_px) - box_px // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    if soft_edge_px == 0:
        return (r <= radius_px).astype(np.float32)
    t = np.clip((r - radius_px) / soft_edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def _check_maps(map1, map2) -> tuple[np.ndarray, np.ndarray]:
    m1 = np.asarray(map1, dtype=np.float64)
    m2 = np.asarray(map2, dtype=np.float64)
    if m1.shape != m2.shape:
        raise ValueError(f"maps must have the same shape, got map1 {m1.shape} and map2 {m2.shape}")
    if m1.ndim != 3 or len(set(m1.shape)) != 1:
        raise ValueError(f"maps must be cubic 3D volumes (B, B, B), got shape {m1.shape}")
    if m1.shape[0] < 4:
        raise ValueError(f"maps are too small for an FSC: shape {m1.shape}")
    return m1, m2


def fsc_curve(map1, map2, *, pixel_size_a: float, mask_radius_a: float | None = None,
              soft_edge_px: float = 3.0) -> FSCResult:
    """Fourier shell correlation of two maps.

    Parameters
    ----------
    map1, map2 : ndarray of shape (B, B, B)
    pixel_size_a : float, keyword-only
        Voxel size in Angstrom.
    mask_radius_a : float or None, keyword-only
        Radius in Angstrom of a soft spherical mask applied to both maps (None: no mask).
    soft_edge_px : float, keyword-only
        Width of the mask's cosine edge in voxels.

    Returns
    -------
    FSCResult

    Raises
    ------
    ValueError
        When the maps differ in shape (both shapes are quoted), are not cubic, or
        ``pixel_size_a`` / ``mask_radius_a`` are not positive.
    """
    m1, m2 = _check_maps(map1, map2)
    if not pixel_size_a or pixel_size_a <= 0:
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    box = m1.shape[0]
    if mask_radius_a is not None:
        mask = soft_sphere_mask(box, mask_radius_a / pixel_size_a, soft_edge_px=soft_edge_px)
        m1, m2 = m1 * mask, m2 * mask
    f1 = np.fft.rfftn(m1)
    f2 = np.fft.rfftn(m2)
    kz = np.fft.fftfreq(box) * box
    kx = np.fft.rfftfreq(box) * box
    radius = np.sqrt(kz[:, None, None] ** 2 + kz[None, :, None] ** 2 + kx[None, None, :] ** 2)
    shell = np.rint(radius).astype(np.int64)
    # Half-space weights: columns kx = 1 .. (B-1)//2 stand for themselves and their conjugate.
    weight = np.full(kx.shape, 2.0)
    weight[0] = 1.0
    if box % 2 == 0:
        weight[-1] = 1.0
    weight = np.broadcast_to(weight, shell.shape)
    n_shells = box // 2 + 1
    keep = shell < n_shells
    idx, w = shell[keep], weight[keep]
    cross = np.bincount(idx, w * np.real(f1[keep] * np.conj(f2[keep])), minlength=n_shells)
    p1 = np.bincount(idx, w * np.abs(f1[keep]) ** 2, minlength=n_shells)
    p2 = np.bincount(idx, w * np.abs(f2[keep]) ** 2, minlength=n_shells)
    counts = np.bincount(idx, w, minlength=n_shells)
    denom = np.sqrt(p1 * p2)
    fsc = np.divide(cross, denom, out=np.zeros(n_shells), where=denom > 0)
    freq = np.arange(n_shells) / (box * pixel_size_a)
    return FSCResult(
        frequency_inv_a=freq,
        fsc=fsc,
        resolution_0143_a=resolution_at_threshold(freq, fsc, 0.143, pixel_size_a=pixel_size_a),
        resolution_05_a=resolution_at_threshold(freq, fsc, 0.5, pixel_size_a=pixel_size_a),
        shell_counts=counts.astype(np.int64),
        pixel_size_a=float(pixel_size_a),
    )


def resolution_at_threshold(frequency_inv_a, fsc, threshold: float, *,
                            pixel_size_a: float) -> float:
    """Resolution in Angstrom where an FSC curve first falls below ``threshold``.

    Shell 0 (DC) is skipped. The crossing frequency is interpolated linearly between the last
    shell at or above the threshold and the first shell below it. See :class:`FSCResult` for
    the values returned when the curve never crosses.

    Parameters
    ----------
    frequency_inv_a, fsc : ndarray of shape (S,)
    threshold : float
    pixel_size_a : float, keyword-only

    Returns
    -------
    float
    """
    freq = np.asarray(frequency_inv_a, dtype=np.float64)
    curve = np.asarray(fsc, dtype=np.float64)
    below = np.nonzero(curve[1:] < threshold)[0]
    if below.size == 0:
        return 2.0 * float(pixel_size_a)
    i = int(below[0]) + 1
    if i == 1:
        return float(1.0 / freq[1])
    f0, f1 = freq[i - 1], freq[i]
    c0, c1 = curve[i - 1], curve[i]
    t = (c0 - threshold) / (c0 - c1)
    return float(1.0 / (f0 + t * (f1 - f0)))


def fsc_from_curve(frequency_inv_a, fsc, *, pixel_size_a=None) -> FSCResult:
    """An :class:`FSCResult` of a curve computed elsewhere (a CSV, a Scipion FSC object).

    Parameters
    ----------
    frequency_inv_a, fsc : array_like of shape (S,)
        Shell frequencies in 1/Å and their FSC values (S >= 2).
    pixel_size_a : float, optional
        Sampling of the maps; by default ``0.5 / max frequency`` (a curve up to Nyquist).
    """
    freq = np.asarray(frequency_inv_a, dtype=np.float64)
    values = np.asarray(fsc, dtype=np.float64)
    if freq.size < 2 or freq.size != values.size:
        raise ValueError(f"an FSC curve needs matching frequency and FSC lists of at least two "
                         f"shells, got {freq.size} and {values.size} values")
    pixel = float(pixel_size_a) if pixel_size_a else 0.5 / float(freq.max())
    return FSCResult(frequency_inv_a=freq, fsc=values,
                     resolution_0143_a=resolution_at_threshold(freq, values, 0.143,
                                                               pixel_size_a=pixel),
                     resolution_05_a=resolution_at_threshold(freq, values, 0.5,
                                                             pixel_size_a=pixel),
                     shell_counts=None, pixel_size_a=pixel)
