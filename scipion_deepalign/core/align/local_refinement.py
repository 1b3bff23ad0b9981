"""Local refinement of poses below the gallery step (optional last step of alignment).

Around each particle's best pose, 27 candidate poses are made by small rotations
``R(d) @ A`` in the frame of the image (rotation vector ``d`` with components in
``{-h, 0, h}`` about the image x, y (direction) and z (in-plane) axes), projected directly
from the map and scored like the gallery (:class:`scipion_deepalign.core.align.search.Search`:
same masks, band, CTF and normalisation; a finer shift grid in the same disc). The best
candidate is kept and ``h`` is halved; every candidate counts as one comparison. Poses
follow :mod:`scipion_deepalign.core.geometry`.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..geometry import euler_to_matrix, matrix_to_euler
from ..runtime.backend import to_numpy
from . import matching

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


def refine_poses(images, volume, angles_deg, *, search, ctf_half=None, iterations=2,
                 shift_step_px=0.5, batch_size=128):
    """Refine poses and shifts by local search around each pose (see the module docstring).

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
        Particles on the search box.
    volume : ndarray of shape (B, B, B) or projection.VolumeSpectrum
        Map on the search box (a spectrum is reused as it is).
    angles_deg : ndarray of shape (N, 3)
        Starting poses.
    search : search.Search
        Backend, band, masks, CTF mode, gallery step (the first search uses rotations of
        ``step_deg / 2``) and shift disc radius of the alignment.
    ctf_half : ndarray of shape (N, B, B // 2 + 1) or None
        CTF of ``images`` (:meth:`Search.ctf_half`).
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
    from ..projection import VolumeSpectrum, project

    spec = volume if isinstance(volume, VolumeSpectrum) else VolumeSpectrum(volume)
    angles = np.array(angles_deg, dtype=np.float64)
    n = len(angles)
    score = np.full(n, -np.inf)
    window = matching.ShiftWindow.disc(search.max_shift_px, shift_step_px)
    phases = search.band.shift_phases(window.offsets_px, search.xp)
    peak = np.zeros((n, 2))
    n_comparisons = 0
    half = search.step_deg / 2.0
    for it in range(max(1, int(iterations))):
        last = it == max(1, int(iterations)) - 1
        deltas = perturbation_matrices(half)
        c = len(deltas)
        for start in range(0, n, batch_size):
            sel = np.arange(start, min(n, start + batch_size))
            cand = matrix_to_euler(deltas[None] @ euler_to_matrix(angles[sel])[:, None])
            matrix, ref_power = search.references(project(spec, cand.reshape(-1, 3)),
                                                  rotate=False)
            spectra, power = search.particles(
                images[sel], None if ctf_half is None else ctf_half[sel])
            corr = to_numpy(matching.correlate_pairs(
                spectra, matrix.reshape(len(sel), c, -1), phases, xp=search.xp,
                particle_power=power,
                ref_power=None if ref_power is None else ref_power.reshape(len(sel), c, -1)))
            best, best_k = matching.best_over_shifts(corr, xp=np)
            rows = np.arange(len(sel))
            j = np.argmax(best, axis=1)
            angles[sel] = cand[rows, j]
            score[sel] = best[rows, j]
            k = best_k[rows, j]
            peak[sel] = window.offsets_px[k]
            if last:
                peak[sel] += shift_step_px * _fine_peak(corr[rows, j], window, k)
            n_comparisons += len(sel) * c
        half /= 2.0
    return angles, score, peak, n_comparisons


def _fine_peak(corr, window, k):
    """Parabolic ``(dy, dx)`` in grid steps around the peaks at window positions ``k``."""
    rows = np.arange(len(corr))

    def value_at(dy, dx):
        idx = window.index(window.steps[k] + np.array([dy, dx]))
        return np.where(idx >= 0, corr[rows, idx.clip(0)], np.nan)

    return matching.parabolic_peak(value_at)
