"""Local refinement of poses below the gallery step (optional last step of alignment).

Around each particle's best pose, 27 candidate poses are made by small rotations
``R(d) @ A`` in the frame of the image (rotation vector ``d`` with components in
``{-h, 0, h}`` about the image x, y (direction) and z (in-plane) axes), and scored like the
gallery (:class:`scipion_deepalign.core.align.search.Search`: same masks, band, CTF and
normalisation; a finer shift grid in the same disc). The candidates' band spectra are read
straight from the map's 3D spectrum at the band's frequencies
(:func:`..central_slices.band_spectra`: no 2D transform), and the reference mask is
applied there (:func:`.candidates.candidate_references`). The best candidate is kept and
``h`` is halved.
The first search starts from each of :data:`~..defaults.REFINE_STARTS` distinct good gallery
poses (:func:`distinct_starts`: the best, then the next best at least
:data:`START_SEPARATION_STEPS` gallery steps from those taken, among the :data:`START_POOL`
best, scoring no more than :func:`start_score_gap` below the best), and the best of their
refined candidates goes on (on a coarse gallery a noisy particle's
best gallery pose is often not the one nearest the truth). ``h`` follows :func:`half_step_deg`
alone; the particle side (masked, transformed, CTF-weighted band spectra) is made once per
block of particles for every start and search, only its shift window's centre changes.
Every candidate counts as one *refinement* comparison, kept apart from the gallery's
(:mod:`.cost`). Poses follow :mod:`scipion_deepalign.core.geometry`.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..defaults import REFINE_STARTS
from ..geometry import euler_to_matrix, matrix_to_euler
from ..runtime.backend import to_numpy
from ..runtime.progress import advance
from . import matching, shift_gemm
from .candidates import ReferenceMasking, candidate_references

__all__ = ["ITERATIONS", "CANDIDATES_PER_PARTICLE", "LOCAL_SHIFT_MARGIN_PX",
           "local_shift_radius_px", "half_step_deg", "perturbation_matrices", "refine_poses",
           "refine_starts", "distinct_starts", "START_POOL", "START_SCORE_GAP",
           "start_score_gap", "START_SEPARATION_STEPS", "SHIFT_STEP_PX", "local_window_size"]

#: searches of the refinement (``h`` halves after each)
ITERATIONS = 2
#: best gallery poses kept per particle to choose the refinement's starts from
START_POOL = 4 * REFINE_STARTS
#: least rotation between two starts, in gallery steps (nearer poses are one start's
#: neighbourhood)
START_SEPARATION_STEPS = 1.5
#: how far below a particle's best gallery score another start may score and still be refined,
#: in units of a normalised correlation's noise on the search band (:func:`start_score_gap`):
#: a pose further below seldom wins (measured: docs/benchmarks_accuracy.md, "Refinement starts
#: near the best score"); None refines every distinct start of the pool
START_SCORE_GAP = 0.5
#: candidate poses scored per particle by a refinement with the default iterations and
#: starts (27 per search and start): what the forms' cost preview counts, and at most what
#: ``AlignmentResult.n_refine_comparisons`` counts (a particle with fewer distinct starts,
#: :func:`distinct_starts`, is searched once from each)
CANDIDATES_PER_PARTICLE = 27 * (REFINE_STARTS + ITERATIONS - 1)


#: margin of the refinement's local shift window beyond the gallery peak's half-pixel
#: uncertainty (:func:`local_shift_radius_px`), in pixels of the refinement box
LOCAL_SHIFT_MARGIN_PX = 1.0


def local_shift_radius_px(gallery_pixel_px: float) -> float:
    """Radius of the refinement's shift window around the gallery's peak: the peak's
    uncertainty (half a gallery pixel along each axis, ``gallery_pixel_px`` refinement pixels
    each) plus :data:`LOCAL_SHIFT_MARGIN_PX`."""
    return 0.5 * np.sqrt(2.0) * float(gallery_pixel_px) + LOCAL_SHIFT_MARGIN_PX


#: spacing of the refinement's shift grid, in pixels of its box
SHIFT_STEP_PX = 0.5


def local_window_size(gallery, refiner) -> int:
    """Shifts each candidate is scored over when the refinement ``refiner`` (a
    :class:`~.search.Search`) follows the gallery search ``gallery``: the grid of
    :data:`SHIFT_STEP_PX` in :func:`local_shift_radius_px` of the gallery's peak."""
    radius = local_shift_radius_px(gallery.scale / refiner.scale)
    return len(matching.ShiftWindow.disc(min(radius, refiner.max_shift_px), SHIFT_STEP_PX))


def perturbation_matrices(half_step_deg: float) -> np.ndarray:
    """The 27 rotations with rotation vectors in ``{-h, 0, h}**3`` (degrees): (27, 3, 3).

    The identity is first.
    """
    from scipy.spatial.transform import Rotation

    grid = [(0.0, 0.0, 0.0)] + [d for d in itertools.product((-1.0, 0.0, 1.0), repeat=3)
                                if any(d)]
    vectors = np.deg2rad(half_step_deg) * np.asarray(grid)
    return Rotation.from_rotvec(vectors).as_matrix()


def half_step_deg(step_deg: float, search_index: int) -> float:
    """``h`` of the refinement's search ``search_index`` (0: the first, around the starts):
    half the gallery step ``step_deg``, halved after each search. The one statement of the
    schedule."""
    return float(step_deg) / 2.0 ** (int(search_index) + 1)


def refine_poses(images, volume, angles_deg, *, search, ctf_half=None, iterations=ITERATIONS,
                 shift_step_px=SHIFT_STEP_PX, batch_size=128, start_peaks_yx=None,
                 local_shift_px=None, fine_peak=True, progress=None):
    """Refine poses and shifts by local search around each pose (see the module docstring).

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
        Particles on the search box.
    volume : ndarray of shape (B, B, B) or projection.VolumeSpectrum
        Map on the search box (a spectrum is reused as it is).
    angles_deg : ndarray of shape (N, 3) or (N, S, 3)
        Starting poses: one per particle, or ``S`` per particle (best gallery pose first):
        the first search then runs around each start and the remaining searches around the
        best of them. A start equal to an earlier one of its particle (pose and shift window)
        is searched once.
    search : search.Search
        Backend, band, masks, CTF mode, gallery step (``h`` follows :func:`half_step_deg`)
        and shift disc radius of the alignment.
    ctf_half : ndarray of shape (N, B, B // 2 + 1) or None
        CTF of ``images`` (:meth:`Search.ctf_half`).
    iterations : int
        Number of searches (``h`` halves after each).
    shift_step_px : float
        Spacing of the shift grid.
    batch_size : int
        Particles per block: their spectra (masked, transformed, CTF-weighted) are made once
        for every start and search.
    start_peaks_yx : ndarray of shape (N, 2) or (N, S, 2), optional
        Correlation peaks ``(dy, dx)`` of the starting poses, in pixels of ``images`` (the
        gallery's); with ``local_shift_px``, each particle's shifts are searched only within
        ``local_shift_px`` of its start's peak (and within the disc), re-centred after each
        search.
    local_shift_px : float, optional
        Radius of that local shift window (None: the whole disc of ``search.max_shift_px``).
    fine_peak : bool
        Make the last search's peak sub-pixel (parabolic); off where another search follows
        from the returned peaks (its shift grid then stays on the gallery's).
    progress : callable, optional
        Called with the particles' share of each search as it is done (adds up to ``N``;
        :mod:`..runtime.progress`).

    Returns
    -------
    angles_deg : ndarray of shape (N, 3)
    score : ndarray of shape (N,)
    offsets_yx : ndarray of shape (N, 2)
        Correlation peak ``(dy, dx)`` in search pixels (the particle's shift is minus this).
    n_comparisons : int
        Candidate poses scored (27 per search and distinct start).
    """
    from ..projection import VolumeSpectrum

    spec = volume if isinstance(volume, VolumeSpectrum) else VolumeSpectrum(volume)
    starts = np.array(angles_deg, dtype=np.float64)
    if starts.ndim == 2:
        starts = starts[:, None]
    n, n_starts = starts.shape[:2]
    local = start_peaks_yx is not None and local_shift_px is not None
    centres = np.zeros((n, n_starts, 2))  # of each start's window (0: the disc)
    if local:
        centres[:] = np.asarray(start_peaks_yx, dtype=np.float64).reshape(n, n_starts, 2)
    window = matching.ShiftWindow.disc(min(local_shift_px, search.max_shift_px) if local
                                       else search.max_shift_px, shift_step_px)
    scoring = _Scoring(spec, search, window, local)
    fresh = _fresh_starts(starts, centres)
    searches = max(1, int(iterations))
    planned = n_starts + searches - 1  # searches per particle, repeated starts included
    angles, score, peak = np.zeros((n, 3)), np.full(n, -np.inf), np.zeros((n, 2))
    n_comparisons = 0
    for b0 in range(0, n, batch_size):
        sel = np.arange(b0, min(n, b0 + batch_size))
        particles = search.particles(images[sel], None if ctf_half is None else ctf_half[sel])
        trials = [(starts[sel, s], centres[sel, s], fresh[sel, s]) for s in range(n_starts)]
        for it in range(searches):
            last = it == searches - 1 and fine_peak
            best = None
            for pose, centre, rows in trials:
                found = scoring.best_candidates(particles, pose, centre, rows, half_step_deg(
                    search.step_deg, it), fine_peak=last)
                n_comparisons += found[3]
                best = found[:3] if best is None else _keep_better(best, found)
            advance(progress, len(sel) * len(trials) / planned)
            pose, found_score, found_peak = best
            trials = [(pose, found_peak if local else np.zeros_like(found_peak), None)]
        angles[sel], score[sel], peak[sel] = pose, found_score, found_peak
    return angles, score, peak, n_comparisons


def refine_starts(images, volume, angles_deg, start_peaks_yx, *, search, **options):
    """:func:`refine_poses` from several starting poses per particle: the first search around
    each start, then the remaining searches around the best of them.

    Parameters
    ----------
    angles_deg : ndarray of shape (N, S, 3)
        Starting poses of each particle, best gallery pose first.
    start_peaks_yx : ndarray of shape (N, S, 2)
        Their correlation peaks (as :func:`refine_poses`'s ``start_peaks_yx``).
    images, volume, search, options
        As :func:`refine_poses`.

    Returns
    -------
    As :func:`refine_poses` (``n_comparisons`` counts every distinct start's candidates).
    """
    angles_deg = np.asarray(angles_deg, dtype=np.float64)
    if angles_deg.ndim != 3:
        raise ValueError(f"angles_deg must be (N, S, 3), got shape {angles_deg.shape}")
    return refine_poses(images, volume, angles_deg, search=search,
                        start_peaks_yx=start_peaks_yx, **options)


def _fresh_starts(starts, centres):
    """``(N, S)`` bool: start ``s`` of a particle differs (pose or window centre) from all its
    earlier ones; a repeated start would give the same candidates and scores again."""
    n, n_starts = starts.shape[:2]
    fresh = np.ones((n, n_starts), dtype=bool)
    key = np.concatenate([starts, centres], axis=2)
    for s in range(1, n_starts):
        fresh[:, s] = ~(key[:, :s] == key[:, s:s + 1]).all(axis=2).any(axis=1)
    return fresh


def _keep_better(best, found):
    """``best`` (angles, score, peak) of a block, taking ``found``'s rows that score higher
    (ties keep the earlier start)."""
    better = found[1] > best[1]
    for mine, theirs in zip(best, found[:3]):
        mine[better] = theirs[better]
    return best


class _Scoring:
    """One search of the refinement on a block of particles: the 27 candidates around each
    pose scored over the shift window (centred per particle) and the best kept. What does
    not depend on the poses (the map's spectrum, the reference mask in Fourier space, the
    window's phases) is made once per refinement."""

    def __init__(self, spec, search, window, local):
        self.spec, self.search, self.window, self.local = spec, search, window, local
        self.phases = search.band.shift_phases(window.offsets_px, search.xp)
        self.masking = ReferenceMasking.of(search)

    def best_candidates(self, particles, pose, centre, rows, half, *, fine_peak):
        """Best candidate around ``pose`` (n, 3) with the window centred at ``centre`` (n, 2),
        for the particles ``rows`` (bool (n,), None: all; the others get ``-inf``).

        ``particles`` are :meth:`Search.particles` of the block. Returns angles (n, 3), score
        (n,), peak (n, 2) (sub-pixel with ``fine_peak``) and the candidates scored."""
        search, window, xp = self.search, self.window, self.search.xp
        n = len(pose)
        angles, score, peak = np.array(pose), np.full(n, -np.inf), np.array(centre)
        idx = np.arange(n) if rows is None else np.flatnonzero(rows)
        if len(idx) == 0:
            return angles, score, peak, 0
        spectra, power = particles
        if len(idx) < n:
            spectra = spectra[xp.asarray(idx)]
            power = None if power is None else power[xp.asarray(idx)]
        deltas = perturbation_matrices(half)
        c = len(deltas)
        cand = deltas[None] @ euler_to_matrix(pose[idx])[:, None]  # (n, c, 3, 3)
        matrix, ref_power = candidate_references(self.spec, cand.reshape(-1, 3, 3), search,
                                                  self.masking)
        if self.local:
            spectra = spectra * _centre_phases(search, centre[idx])
        corr = to_numpy(matching.correlate_pairs(
            spectra, matrix.reshape(len(idx), c, -1), self.phases, xp=xp, particle_power=power,
            ref_power=None if ref_power is None else ref_power.reshape(len(idx), c, -1)))
        if self.local:  # the disc bounds the shifts as in the gallery search
            outside = (np.hypot(*(centre[idx][:, None] + window.offsets_px[None]).T).T
                       > search.max_shift_px + 1e-6)
            corr[np.broadcast_to(outside[:, None], corr.shape)] = -np.inf
        best, best_k = shift_gemm.best_over_shifts(corr, xp=np)
        r = np.arange(len(idx))
        j = np.argmax(best, axis=1)
        angles[idx] = matrix_to_euler(cand[r, j])
        score[idx] = best[r, j]
        k = best_k[r, j]
        peak[idx] = centre[idx] + window.offsets_px[k]
        if fine_peak:
            peak[idx] += window.step_px * _fine_peak(corr[r, j], window, k)
        return angles, score, peak, len(idx) * c


def start_score_gap(band_weight) -> float | None:
    """:data:`START_SCORE_GAP` in correlation units for a search band of weights
    ``band_weight`` (:attr:`.matching.FourierBand.weight`): the noise of a normalised
    correlation between unit-norm spectra is about one over the root of the band's real
    degrees of freedom (the weights' sum), whatever the signal, so one gap carries across
    boxes and resolutions. None where :data:`START_SCORE_GAP` is None."""
    if START_SCORE_GAP is None:
        return None
    return float(START_SCORE_GAP) / float(np.sqrt(np.sum(band_weight, dtype=np.float64)))


def distinct_starts(angles_deg, order_scores, *, starts=REFINE_STARTS, min_angle_deg,
                    max_gap=None):
    """Indices ``(N, starts)`` of each particle's best poses that are at least
    ``min_angle_deg`` apart (rotation angle), taken greedily in score order; where fewer are
    distinct, the best is repeated (:func:`refine_poses` searches a repeated start once).
    With ``max_gap``, a pose scoring more than ``max_gap`` below its particle's best is not
    taken.

    Parameters
    ----------
    angles_deg : ndarray of shape (N, K, 3)
        Poses, best first.
    order_scores : ndarray of shape (N, K)
        Their scores (``-inf``: not met, never taken).
    starts : int
    min_angle_deg : float
    max_gap : float, optional

    Returns
    -------
    int ndarray of shape (N, starts), column 0 the best pose (0).
    """
    n, k = angles_deg.shape[:2]
    mats = euler_to_matrix(angles_deg.reshape(-1, 3)).reshape(n, k, 3, 3)
    chosen = np.zeros((n, starts), dtype=np.int64)
    count = np.ones(n, dtype=np.int64)
    cos_min = np.cos(np.deg2rad(min_angle_deg))
    lowest = (np.full(n, -np.inf) if max_gap is None
              else np.asarray(order_scores[:, 0], np.float64) - float(max_gap))
    for j in range(1, k):
        trace = np.einsum("nsab,nab->ns", mats[np.arange(n)[:, None], chosen], mats[:, j])
        cos = (trace - 1.0) / 2.0
        taken = np.arange(starts)[None] < count[:, None]
        far = np.where(taken, cos < cos_min, True).all(axis=1)
        ok = (far & (count < starts) & np.isfinite(order_scores[:, j])
              & (order_scores[:, j] >= lowest))
        chosen[ok, count[ok]] = j
        count[ok] += 1
    return chosen


def _centre_phases(search, centres_yx):
    """``exp(2 pi i k.s0 / B)`` per particle ``(n, F)``: a particle's spectrum times it
    correlates at ``s0 + s`` where the plain one does at ``s``."""
    band = search.band
    arg = 2 * np.pi * (np.outer(centres_yx[:, 0], band.ky)
                       + np.outer(centres_yx[:, 1], band.kx)) / band.box_px
    return search.xp.asarray(np.exp(1j * arg).astype(np.complex64))


def _fine_peak(corr, window, k):
    """Parabolic ``(dy, dx)`` in grid steps around the peaks at window positions ``k``."""
    rows = np.arange(len(corr))

    def value_at(dy, dx):
        idx = window.index(window.steps[k] + np.array([dy, dx]))
        value = np.where(idx >= 0, corr[rows, idx.clip(0)], np.nan)
        return np.where(np.isfinite(value), value, np.nan)  # outside the disc: none

    return matching.parabolic_peak(value_at)
