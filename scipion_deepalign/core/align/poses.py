"""From the gallery search's best indices to poses, and the alignment's result.

:func:`block_poses` turns the :class:`.search.BestPoses` of one block of particles into angles
and shifts (in pixels of the original images), the best pose's shift made sub-pixel or the
pose refined below the gallery step (:mod:`.local_refinement`); :class:`BlockPoses` gathers
them for all particles into an :class:`AlignmentResult`. Poses follow
:mod:`scipion_deepalign.core.geometry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["AlignmentResult", "pose_weights", "read_block", "block_poses", "BlockPoses",
           "gallery_poses_kept"]


@dataclass
class AlignmentResult:
    """Poses found by :func:`align_particles`.

    Attributes
    ----------
    angles_deg : ndarray of shape (N, 3)
        ``(rot, tilt, psi)`` in degrees.
    shifts_px : ndarray of shape (N, 2)
        ``(shift_x, shift_y)`` in pixels of the original images (RELION origin convention).
    score : ndarray of shape (N,)
        Normalised cross-correlation of the best pose.
    region : ndarray of shape (N,) int
        0-based region of the best pose's direction; -1 in global mode.
    n_comparisons : int
        Number of (particle, gallery direction, in-plane angle) correlations computed: the
        gallery search's, as :mod:`.cost` counts them (the fallback's second pass included).
    n_best_angles_deg, n_best_shifts_px, n_best_scores, n_best_weights : ndarray or None
        The ``n_best`` best poses, shapes (N, n, 3), (N, n, 2), (N, n), (N, n); weights sum to 1
        per particle (see :func:`pose_weights`). ``None`` when ``n_best == 1``.
    info : dict
        Search settings actually used (box, pixel size, steps, backend, timings, fraction of
        particles sent to the global fallback).
    fallback : ndarray of shape (N,) bool
        Particles searched globally: their prediction was unsure, or their best pose in
        the predicted regions stood out too little (``SearchOptions.fallback_significance``;
        all False in global mode).
    n_regions_searched : ndarray of shape (N,) int or None
        Regions searched per particle.
    significance : ndarray of shape (N,) or None
        :func:`~.search.peak_significance` of the best gallery pose among every pose the
        particle was compared with (about 1: no more than the best of as many noise scores).
    n_refine_comparisons : int
        Candidate poses scored by the local refinement (:mod:`.local_refinement`), counted
        apart from the gallery's comparisons.
    """

    angles_deg: np.ndarray
    shifts_px: np.ndarray
    score: np.ndarray
    region: np.ndarray
    n_comparisons: int
    n_best_angles_deg: np.ndarray | None = None
    n_best_shifts_px: np.ndarray | None = None
    n_best_scores: np.ndarray | None = None
    n_best_weights: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    fallback: np.ndarray | None = None
    n_regions_searched: np.ndarray | None = None
    significance: np.ndarray | None = None
    n_refine_comparisons: int = 0

    def replace_rows(self, rows, other: AlignmentResult) -> None:
        """Rows ``rows`` take their poses, and the columns that go with them (region,
        significance, n best, where both have them), from ``other`` (an alignment of particles
        ``rows``); its comparisons are added."""
        for name in ("angles_deg", "shifts_px", "score", "region", "significance",
                     "n_best_angles_deg", "n_best_shifts_px", "n_best_scores",
                     "n_best_weights"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None:
                mine[rows] = theirs
        self.n_comparisons += other.n_comparisons
        self.n_refine_comparisons += other.n_refine_comparisons


def pose_weights(scores: np.ndarray, *, temperature: float = 0.01) -> np.ndarray:
    """Weights of the N best poses, ``exp((cc - cc_best) / temperature)`` normalised.

    Parameters
    ----------
    scores : ndarray of shape (N, n)
        Correlations, best first.
    temperature : float
        Correlation difference that lowers a weight by a factor e.

    Returns
    -------
    ndarray of shape (N, n), rows summing to 1.
    """
    s = np.asarray(scores, dtype=np.float64)
    w = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)
    return w / w.sum(axis=1, keepdims=True)


def read_block(images, rows, shape) -> np.ndarray:
    """Images ``rows`` (consecutive) as float32, checked to be finite."""
    block = np.asarray(images[rows[0]:rows[-1] + 1], dtype=np.float32)
    if block.shape != (len(rows),) + tuple(shape[1:]):
        raise ValueError(f"images[{rows[0]}:{rows[-1] + 1}] has shape {block.shape}, expected "
                         f"{(len(rows),) + tuple(shape[1:])}")
    if not np.all(np.isfinite(block)):
        raise ValueError(f"images contain NaN or infinite values (among particles "
                         f"{rows[0]}..{rows[-1]}, 0-based)")
    return block


def block_poses(engine, galleries, best, spectra, refiner, fine, spectrum, *, n_best,
                progress=None):
    """Poses of one block: angles ``(n, n_best, 3)``, shifts ``(n, n_best, 2)`` in original
    pixels, scores ``(n, n_best)``, refinement comparisons and the gallery direction ``(n, 2)``
    of the best gallery pose. The best pose's shift is made sub-pixel, or the pose refined
    (``spectrum``) from the best of ``best``'s poses (:func:`gallery_poses_kept`), reporting
    the block's particles to ``progress`` as it goes (not without a refinement)."""
    dir_index, psi_index = best.ref // engine.n_psi, best.ref % engine.n_psi
    gallery_direction = galleries.directions_deg[dir_index[:, 0]]
    psi_deg = (engine.psi_deg[psi_index] + 180.0) % 360.0 - 180.0
    angles = np.concatenate([galleries.directions_deg[dir_index], psi_deg[..., None]], axis=-1)
    shifts = -engine.offsets[best.shift][..., ::-1].astype(np.float64)  # (x, y) = -(dx, dy)
    score, n_refine = best.score, 0
    if spectrum is not None:
        from .local_refinement import (
            START_SEPARATION_STEPS,
            distinct_starts,
            local_shift_radius_px,
            refine_starts,
            start_score_gap,
        )

        ratio = engine.scale / refiner.scale  # refinement pixels per gallery pixel
        take = distinct_starts(angles, best.score,
                               min_angle_deg=START_SEPARATION_STEPS * engine.step_deg,
                               max_gap=start_score_gap(engine.band.weight))
        rows = np.arange(len(angles))[:, None]
        angles[:, 0], score[:, 0], peak, n_refine = refine_starts(
            fine[0], spectrum, angles[rows, take],
            engine.offsets[best.shift[rows, take]] * ratio, search=refiner, ctf_half=fine[1],
            local_shift_px=local_shift_radius_px(ratio), progress=progress)
        shifts[:, 0] = -peak[:, ::-1] * (refiner.scale / engine.scale)
    else:
        refs = engine.best_references(galleries.projections[dir_index[:, 0]], psi_index[:, 0])
        shifts[:, 0] -= engine.subpixel(spectra, refs,
                                        engine.offsets[best.shift[:, 0]])[:, ::-1]
    return (angles[:, :n_best], shifts[:, :n_best] * engine.scale, score[:, :n_best], n_refine,
            gallery_direction)


def gallery_poses_kept(n_best: int, refine: bool) -> int:
    """Gallery poses a search keeps per particle: the ``n_best`` reported and, when it
    refines, the pool the refinement's starts are chosen from
    (:data:`.local_refinement.START_POOL`)."""
    from .local_refinement import START_POOL

    return max(int(n_best), START_POOL if refine else 1)


class BlockPoses:
    """The poses of all particles of one search, filled block by block."""

    def __init__(self, n, n_best):
        self.angles = np.zeros((n, n_best, 3))
        self.shifts = np.zeros((n, n_best, 2))
        self.score = np.zeros((n, n_best), dtype=np.float32)
        self.gallery_directions = np.zeros((n, 2))  # of the best pose, before refinement
        self.significance = np.zeros(n)  # of the best gallery pose
        self.n_comparisons = self.n_refine_comparisons = 0

    def add(self, rows, n_search, angles, shifts, score, n_refine, gallery_direction):
        self.gallery_directions[rows] = gallery_direction
        self.angles[rows], self.shifts[rows], self.score[rows] = angles, shifts, score
        self.n_comparisons += int(n_search)
        self.n_refine_comparisons += int(n_refine)

    def result(self, region, info, *, n_best) -> AlignmentResult:
        result = AlignmentResult(
            angles_deg=self.angles[:, 0], shifts_px=self.shifts[:, 0],
            score=self.score[:, 0].astype(np.float64), region=region.astype(np.int64),
            n_comparisons=self.n_comparisons, info=info, significance=self.significance,
            n_refine_comparisons=self.n_refine_comparisons)
        if n_best > 1:
            result.n_best_angles_deg = self.angles
            result.n_best_shifts_px = self.shifts
            result.n_best_scores = self.score.astype(np.float64)
            result.n_best_weights = pose_weights(self.score)
        return result
