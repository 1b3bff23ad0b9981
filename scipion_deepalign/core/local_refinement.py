"""Local refinement of poses below the gallery step (optional last step of alignment).

Around each particle's best pose, 27 candidate poses are made by small rotations
``R(d) @ A`` in the frame of the image (rotation vector ``d`` with components in
``{-h, 0, h}`` about the image x, y (direction) and z (in-plane) axes), projected directly
from the map and scored like the gallery (:mod:`scipion_deepalign.core.matching`, same shift
window, CTF and normalisation). The best candidate is kept and ``h`` is halved; every
candidate counts as one comparison. Poses follow :mod:`scipion_deepalign.core.geometry`.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import matching
from .backend import to_numpy
from .geometry import euler_to_matrix, matrix_to_euler

__all__ = ["perturbation_matrices", "refine_poses"]


def perturbation_matrices(half_step_deg: float) -> np.ndarray:
    """The 27 rotations with rotation vectors in ``{-h, 0, h}**3`` (degrees): (27, 3, 3).

    The identity is first.
    """
    from scipy.spatial.transform import Rotation

    grid = [(0.0, 0.0, 0.0)] + [d for d in itertools.product((-1.0, 0.0, 1.0), repeat=3)
                                if any(d)]
    vectors = np.deg2rad(half_step_deg) * np.asarray(grid)
    return Rotation.from_rotvec(vectors).as_matrix()


def _fine_window(max_shift_px, step_px):
    """Shifts ``(dy, dx)`` on a grid of ``step_px`` in a disc, and their grid lookup table."""
    r = int(np.floor(max_shift_px / step_px + 1e-6))
    d = np.arange(-r, r + 1)
    gy, gx = np.meshgrid(d, d, indexing="ij")
    keep = (gy ** 2 + gx ** 2) * step_px ** 2 <= max_shift_px ** 2 + 1e-6
    lookup = np.full(gy.shape, -1, dtype=np.int64)
    lookup[keep] = np.arange(int(keep.sum()))
    grid = np.stack([gy[keep], gx[keep]], axis=1)
    return grid * step_px, grid + r, lookup


def _parabola(lo, mid, hi):
    den = lo - 2 * mid + hi
    ok = den < -1e-12
    return np.where(ok, 0.5 * (lo - hi) / np.where(ok, den, -1.0), 0.0).clip(-0.5, 0.5)


def refine_poses(images, volume, angles_deg, *, xp, band, masks, step_deg, max_shift_px,
                 ctf_half=None, ctf_mode="apply", iterations=2, shift_step_px=0.5,
                 batch_size=128):
    """Refine poses and shifts by local search around each pose (see the module docstring).

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
        Particles on the search box.
    volume : ndarray of shape (B, B, B)
        Map on the search box.
    angles_deg : ndarray of shape (N, 3)
        Starting poses.
    xp : module
    band : matching.FourierBand
    masks : (reference mask, particle mask), each (B, B)
    step_deg : float
        Gallery step; the first search uses rotations of ``step_deg / 2``.
    max_shift_px : float
        Shift disc radius in search-box pixels.
    ctf_half : ndarray of shape (N, B, B // 2 + 1) or None
    ctf_mode : str
    iterations : int
        Number of searches (``h`` halves after each).
    shift_step_px : float
        Spacing of the shift grid.
    batch_size : int
        Particles per block.

    Returns
    -------
    angles_deg : ndarray of shape (N, 3)
    score : ndarray of shape (N,)
    offsets_yx : ndarray of shape (N, 2)
        Correlation peak ``(dy, dx)`` in search pixels (the particle's shift is minus this).
    n_comparisons : int
    """
    from .projection import VolumeSpectrum, project

    spec = VolumeSpectrum(volume)
    angles = np.array(angles_deg, dtype=np.float64)
    n = len(angles)
    score = np.full(n, -np.inf)
    offsets, grid, lookup = _fine_window(max_shift_px, shift_step_px)
    phases = band.shift_phases(offsets, xp)
    peak = np.zeros((n, 2))
    apply_mode = ctf_half is not None and ctf_mode in ("apply", "flipped")
    n_comparisons = 0
    half = step_deg / 2.0
    for it in range(max(1, int(iterations))):
        last = it == max(1, int(iterations)) - 1
        deltas = perturbation_matrices(half)
        c = len(deltas)
        for start in range(0, n, batch_size):
            sel = np.arange(start, min(n, start + batch_size))
            cand = matrix_to_euler(deltas[None] @ euler_to_matrix(angles[sel])[:, None])
            refs = matching.mask_zero_mean(project(spec, cand.reshape(-1, 3)), masks[0])
            matrix, ref_power = matching.prepare_references(refs, xp=xp, mask=None, band=band,
                                                            with_power=apply_mode)
            spectra, power = matching.prepare_particles(
                images[sel], xp=xp, mask=masks[1], band=band,
                ctf_half=None if ctf_half is None else ctf_half[sel], ctf_mode=ctf_mode)
            q = spectra[:, :, None] * phases[None]  # (n, F, K)
            q = xp.concatenate([q.real, q.imag], axis=1)  # (n, 2F, K)
            corr = matrix.reshape(len(sel), c, -1) @ q  # (n, c, K)
            if apply_mode:
                norm2 = (power[:, None, :] * ref_power.reshape(len(sel), c, -1)).sum(axis=2)
                corr = corr / xp.sqrt(xp.maximum(norm2, 1e-20))[:, :, None]
            corr = to_numpy(corr)
            best_k = np.argmax(corr, axis=2)
            best = np.take_along_axis(corr, best_k[:, :, None], axis=2)[:, :, 0]
            rows = np.arange(len(sel))
            j = np.argmax(best, axis=1)
            angles[sel] = cand[rows, j]
            score[sel] = best[rows, j]
            k = best_k[rows, j]
            peak[sel] = offsets[k]
            if last:
                peak[sel] += shift_step_px * _fine_peak(corr[rows, j], grid[k], lookup)
            n_comparisons += len(sel) * c
        half /= 2.0
    return angles, score, peak, n_comparisons


def _fine_peak(corr, at, lookup):
    """Parabolic ``(dy, dx)`` in grid steps around the peak at grid position ``at``."""
    size = lookup.shape[0]
    out = np.zeros((len(corr), 2))
    rows = np.arange(len(corr))
    mid = corr[rows, lookup[at[:, 0], at[:, 1]]]
    for axis in (0, 1):
        vals = []
        for d in (-1, 1):
            pos = at.copy()
            pos[:, axis] += d
            inside = (pos >= 0).all(1) & (pos < size).all(1)
            idx = np.where(inside, lookup[pos[:, 0].clip(0, size - 1),
                                          pos[:, 1].clip(0, size - 1)], -1)
            vals.append(np.where(idx >= 0, corr[rows, idx.clip(0)], np.nan))
        frac = _parabola(vals[0], mid, vals[1])
        out[:, axis] = np.where(np.isnan(frac), 0.0, frac)
    return out
