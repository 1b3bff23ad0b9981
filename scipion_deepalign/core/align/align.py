"""Correlation alignment of particles against reference galleries, regional or global.

Stages: checks (:mod:`validation_align`) -> **plan** the search geometry
(:meth:`search.Search.create`) and the tiles each particle meets
(:func:`search_plan.plan_alignment`) -> **galleries** (:func:`gallery.group_galleries`) ->
for every block of particles, read end to end: downsample, **search** (:class:`search.Search`)
and **poses** (indices to angles, sub-pixel shift or :mod:`local_refinement`). Only one block
of images is in memory at a time, so ``images`` may be a memory map or any object with
``len()`` and slicing.

Each particle is compared with the gallery of every region in its hint list (``region_hints``,
typically the top-k regions predicted by the CNN) or, in global mode, with one gallery over
the whole asymmetric unit. A comparison is one (particle, direction, in-plane angle) triple;
the shift search inside a disc of ``max_shift_px`` is done at once by FFT cross-correlation
and is not counted separately. The score is a normalised cross-correlation
(:mod:`scipion_deepalign.core.align.matching`); the best pose (optionally the N best, with
weights) is kept, and the shift of the best pose is refined to sub-pixel precision. With
``refine=True`` (the default) the best pose is then refined below the gallery step
(:mod:`scipion_deepalign.core.align.local_refinement`), and the automatic gallery is twice
as coarse.

Poses follow :mod:`scipion_deepalign.core.geometry`: the particle is approximately
``translate_images(project(volume, angles_deg), -shifts_px)``. Shifts are returned in
pixels of the ORIGINAL images even when the search ran on a downsampled box.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from ..defaults import ALIGN_BATCH, REFINE, TARGET_RESOLUTION
from ..resolution import search_resolution
from ..runtime.backend import get_array_module
from ..runtime.progress import Progress, advance
from ..runtime.stacks import RowStack, stack_shape
from .gallery import GalleryCache, group_galleries
from .search import BestPoses, Search
from .search_plan import SearchOptions, plan_alignment
from .validation import validate_inputs

__all__ = ["AlignmentResult", "align_particles", "significance_weights"]

logger = logging.getLogger(__name__)

_REFS_PER_CHUNK = 2048  # rotated references prepared at once
PARTICLE_BLOCK = 8192  # particles read, searched and posed together (default block_size)
_SIGNIFICANCE_WARNING = 0.5  # share of particles the significance fallback warns about
#: the significance fallback is used only when the best-posed quarter of the particles stands
#: this many times above its threshold (75th percentile of the significance): measured, the
#: 70S ribosome's quarter is at 1.78-1.94, 8zpm's (where good and bad poses have the same
#: significance) at 0.91 (docs/benchmarks_accuracy.md)
_SIGNIFICANCE_SEPARATION = 1.25


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
        Number of (particle, direction, in-plane angle) correlations computed.
    n_best_angles_deg, n_best_shifts_px, n_best_scores, n_best_weights : ndarray or None
        The ``n_best`` best poses, shapes (N, n, 3), (N, n, 2), (N, n), (N, n); weights sum to 1
        per particle (see :func:`significance_weights`). ``None`` when ``n_best == 1``.
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

    def replace_rows(self, rows, other: AlignmentResult) -> None:
        """Take the poses of ``other`` (an alignment of particles ``rows``) for those rows."""
        for name in ("angles_deg", "shifts_px", "score", "region", "significance",
                     "n_best_angles_deg", "n_best_shifts_px", "n_best_scores",
                     "n_best_weights"):
            mine = getattr(self, name)
            if mine is not None:
                mine[rows] = getattr(other, name)
        self.n_comparisons += other.n_comparisons


def significance_weights(scores: np.ndarray, *, temperature: float = 0.01) -> np.ndarray:
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


def align_particles(images, volume, *, pixel_size_a, max_shift_px, ctf=None, symmetry="c1",
                    region_hints=None, centres_deg=None, step_deg=None, psi_step_deg=None,
                    target_resolution_a=TARGET_RESOLUTION, device="auto",
                    batch_size=ALIGN_BATCH, n_best=1, ctf_mode="apply",
                    volume_pixel_size_a=None, mask_radius_px=None,
                    cache_dir=None, refine=REFINE, region_probabilities=None,
                    search: SearchOptions | None = None, progress=None,
                    block_size: int = PARTICLE_BLOCK) -> AlignmentResult:
    """Assign a pose to every particle by correlation with projections of ``volume``.

    Parameters
    ----------
    images : array_like of shape (N, B, B)
        Particles (not CTF-corrected), pixel size ``pixel_size_a``: an ndarray, a memory
        map (:func:`io.read_mrc_stack` with ``mmap=True``) or any object with ``len()`` whose
        slices ``images[i:j]`` are ``(j - i, B, B)`` arrays; it is read ``block_size``
        images at a time.
    volume : ndarray of shape (B, B, B)
        Reference map on the same box and pixel size.
    pixel_size_a : float
        Pixel size of ``images`` (and of ``volume``) in Angstrom.
    max_shift_px : float
        Largest shift searched, in original pixels (at most half the box).
    ctf : CTFParams or None
        Per-particle CTF of ``images``; ``None`` for CTF-free images.
    symmetry : str
        Point group of the map ("c1", "c4", "d2", ...).
    region_hints : int array of shape (N, k) or None
        0-based regions to search per particle; ``None`` searches the whole asymmetric
        unit (global mode).
    centres_deg : ndarray of shape (R, 2) or None
        Region centres, required with ``region_hints``. In global mode, when given, the
        global gallery is the union of the region grids (same directions as regional mode).
    step_deg : float or None
        Direction grid step; default the angle that moves a point at the mask radius by one
        pixel of the search box, two with ``refine`` (:func:`.gallery.default_step_deg`).
    psi_step_deg : float or None
        In-plane step; default ``step_deg``.
    target_resolution_a : "auto", "full", float, None or resolution.SearchResolution
        The search runs on images and map downsampled so that Nyquist matches this
        resolution (:func:`projection.downsampled_geometry`), the refinement up to a finer one
        (:func:`..resolution.search_resolution`): ``"auto"`` (default), the resolution the
        reference supports (:func:`..resolution.estimate_map_resolution`); a number of
        Angstrom; ``"full"``, 0 or ``None``, the full box. ``info["resolution"]`` says which.
    device : {"auto", "cpu", "gpu"}
    batch_size : int
        Particles per correlation block (lowered automatically to bound memory, halved on
        out-of-memory errors).
    n_best : int
        Number of best poses kept per particle.
    ctf_mode : {"apply", "flip", "flipped"}
        For particles that are *not* CTF-corrected: ``"apply"`` (default) applies the
        particle's CTF to the references (matched filter: it scored better than phase
        flipping on noisy simulated data, see ``docs/benchmarks_align.md``); ``"flip"``
        phase-flips the particles here and compares them with plain references. For
        particles *already phase-flipped*: ``"flipped"`` applies ``|CTF|`` to the references.
    volume_pixel_size_a : float or None
        Pixel size of the map, checked against ``pixel_size_a`` when given.
    mask_radius_px : float or None
        Radius of the circular mask in original pixels; default 0.45 of the box.
    cache_dir : str or None
        Folder to keep gallery projections as ``.npy`` between runs.
    refine : bool
        Refine the best pose below the gallery step by a local search with direct
        projections (:mod:`local_refinement`; adds 54 comparisons per particle), after a
        gallery twice as coarse when ``step_deg`` is automatic. Default
        :data:`~scipion_deepalign.core.defaults.REFINE` (on: more accurate and faster than
        the fine gallery alone). The N-best poses other than the first are not refined.
    region_probabilities : ndarray of shape (N, k), optional
        Probabilities of ``region_hints`` (needed by the adaptive number of regions and the
        fallback of ``search``).
    search : SearchOptions, optional
        Windows around the regions, adaptive number of regions and the fallbacks to the
        global search (:mod:`search_plan`): before the search, particles with an unsure
        prediction; after it, particles whose best pose stands out too little
        (``fallback_significance``), searched again globally. Default ``SearchOptions()``
        (without ``region_probabilities``: its windows, every hinted region searched, and its
        significance fallback). The significance fallback is used only where the best-posed
        quarter of the particles stands clearly above its threshold (else the significance
        does not tell good poses from bad ones: ``info["significance_separates"]``).
    progress : callable, optional
        Called with the particles done (their share of each chunk of references;
        :mod:`.progress`).
    block_size : int
        Particles read, downsampled, searched and posed together: only this many images
        (and their spectra) are in memory at once. Poses do not depend on it.

    Returns
    -------
    AlignmentResult

    Raises
    ------
    ValueError
        Naming the parameter, for inconsistent inputs (checked before any heavy work; the
        finiteness of the images as each block is read).
    """
    call = dict(locals())  # every argument, for the significance fallback's second search
    t0 = time.perf_counter()
    volume = np.asarray(volume, dtype=np.float32)
    shape = stack_shape(images)
    symmetry, region_hints, centres_deg = validate_inputs(
        shape, volume, pixel_size_a=pixel_size_a, max_shift_px=max_shift_px, ctf=ctf,
        symmetry=symmetry, region_hints=region_hints, centres_deg=centres_deg,
        step_deg=step_deg, psi_step_deg=psi_step_deg, target_resolution_a=target_resolution_a,
        device=device, batch_size=batch_size, n_best=n_best, ctf_mode=ctf_mode,
        volume_pixel_size_a=volume_pixel_size_a, mask_radius_px=mask_radius_px,
        block_size=block_size)
    n, block_size = shape[0], int(block_size)
    resolution = search_resolution(target_resolution_a, volume=volume,
                                   pixel_size_a=pixel_size_a, name="target_resolution_a")
    engine = Search.create(shape[-1], pixel_size_a, max_shift_px=max_shift_px,
                           xp=get_array_module(device), target_resolution_a=resolution.search_a,
                           mask_radius_px=mask_radius_px, step_deg=step_deg,
                           psi_step_deg=psi_step_deg, ctf=ctf, ctf_mode=ctf_mode,
                           batch_size=batch_size, refine=refine)
    refiner = engine.finer(resolution.refine_a) if refine else None
    full_volume, volume = volume, engine.downsample_volume(volume)
    # --- plan and galleries: the tiles of directions each particle meets, projected once ---
    plan = plan_alignment(n, symmetry=symmetry, step_deg=engine.step_deg,
                          centres_deg=centres_deg, region_hints=region_hints,
                          region_probabilities=region_probabilities, options=search)
    t_gal = time.perf_counter()
    galleries = group_galleries(plan, volume, GalleryCache(cache_dir))
    galleries.check_covers(n, engine.step_deg)
    t_gal = time.perf_counter() - t_gal
    # --- search and poses, one block of particles at a time -------------------------------
    spectrum = None
    if refine:
        from ..projection import VolumeSpectrum
        spectrum = VolumeSpectrum(refiner.downsample_volume(full_volume))
    chunk = max(1, _REFS_PER_CHUNK // engine.n_psi)
    bank = None  # every block meets every direction again: prepare the references once
    if n > block_size:
        bank = engine.reference_bank(galleries.projections, chunk=chunk)
    poses = _Poses(n, n_best)
    for start in range(0, n, block_size):
        rows = np.arange(start, min(n, start + block_size))
        block = _read_block(images, rows, shape)
        small = engine.downsample(block)
        ctf_half = engine.ctf_half(rows)
        fine = None
        if refiner is not None:
            fine = ((small, ctf_half) if refiner is engine
                    else (refiner.downsample(block), refiner.ctf_half(rows)))
        spectra, power = engine.particles(small, ctf_half)
        best, count = _search_block(engine, galleries, bank, spectra, power, rows, n_best,
                                     progress)
        poses.significance[rows] = best.significance()
        poses.add(rows, count, *_block_poses(engine, galleries, best, spectra, refiner,
                                             fine, spectrum))
    region = np.full(n, -1)
    if centres_deg is not None:
        from ..regions import assign_regions
        region = assign_regions(poses.gallery_directions, centres_deg, symmetry)[0]
    info = dict(resolution=resolution.describe(), resolution_source=resolution.source,
                estimated_resolution_a=resolution.estimate_a,
                refine_box_px=None if refiner is None else refiner.box_px,
                box_px=engine.box_px, pixel_size_a=engine.pixel_size_a, scale=engine.scale,
                step_deg=engine.step_deg, psi_step_deg=360.0 / engine.n_psi,
                n_directions=len(galleries), n_psi=engine.n_psi, n_shifts=len(engine.offsets),
                backend=engine.xp.__name__, gallery_seconds=t_gal,
                seconds=time.perf_counter() - t0, ctf_mode=ctf_mode if ctf else None,
                refined=bool(refine), n_tiles=len(plan.tiles), n_groups=len(galleries.bounds),
                **plan.info)
    result = poses.result(region, info, n_best=n_best)
    result.fallback = plan.fallback if region_hints is not None else np.zeros(n, bool)
    result.n_regions_searched = plan.n_regions_searched
    if region_hints is not None:
        _significance_fallback(result, call, search or SearchOptions(), len(centres_deg))
    result.info["seconds"] = time.perf_counter() - t0
    logger.info("aligned %d particles: %d comparisons in %.1f s (%s)", n, result.n_comparisons,
                result.info["seconds"], info["backend"])
    return result


def _significance_fallback(result, call, search, n_regions) -> None:
    """Search globally, again, the particles whose best pose in their regions stood out too
    little (:func:`~.search.peak_significance` below ``search.fallback_significance``), and
    take those poses (in place). The global gallery holds every regional direction, so the
    new pose is the best of everything these particles met."""
    threshold = float(search.fallback_significance or 0.0)
    result.info["significance_fallback_fraction"] = 0.0
    if threshold <= 0 or len(result.score) == 0:
        return
    upper = float(np.percentile(result.significance, 75))
    result.info["significance_separates"] = upper >= _SIGNIFICANCE_SEPARATION * threshold
    if not result.info["significance_separates"]:
        logger.info("significance fallback not used: the best-posed quarter of the particles "
                    "has a significance of %.2f or less, too close to the threshold %g for the "
                    "significance to tell good poses from bad ones on these data", upper,
                    threshold)
        return
    redo = np.flatnonzero((result.significance < threshold) & ~result.fallback)
    share = result.info["significance_fallback_fraction"] = len(redo) / len(result.score)
    if len(redo) == 0:
        return
    logger.info("searching %d particles (%.1f %%) globally: their best pose in the predicted "
                "regions stood out too little (significance < %g)", len(redo), 100.0 * share,
                threshold)
    if share > _SIGNIFICANCE_WARNING:
        logger.warning(
            "the significance fallback sends %.0f %% of the particles to the global search "
            "(median significance %.2f, threshold %g): on these data the significance does not "
            "tell good poses from bad ones (small particles searched at a coarse resolution "
            "have significances below 1 even when right), and this costs more than the global "
            "search itself; lower --fallback-significance or set it to 0", 100.0 * share,
            float(np.median(result.significance)), threshold)
    ctf = call["ctf"]
    # when the caller shows progress, this second pass has a progress of its own
    shown = (nullcontext() if call["progress"] is None
             else Progress(len(redo), "align (global fallback)"))
    with shown as progress:
        again = align_particles(**dict(call, images=RowStack(call["images"], redo),
                                       ctf=None if ctf is None else ctf.subset(redo),
                                       region_hints=None, region_probabilities=None,
                                       search=None, progress=progress))
    result.replace_rows(redo, again)
    result.fallback[redo] = True
    result.n_regions_searched[redo] = n_regions
    result.info["fallback_fraction"] = float(result.fallback.mean())
    result.info["mean_regions_searched"] = float(result.n_regions_searched.mean())


def _read_block(images, rows, shape) -> np.ndarray:
    """Images ``rows`` (consecutive) as float32, checked to be finite."""
    block = np.asarray(images[rows[0]:rows[-1] + 1], dtype=np.float32)
    if block.shape != (len(rows),) + tuple(shape[1:]):
        raise ValueError(f"images[{rows[0]}:{rows[-1] + 1}] has shape {block.shape}, expected "
                         f"{(len(rows),) + tuple(shape[1:])}")
    if not np.all(np.isfinite(block)):
        raise ValueError(f"images contain NaN or infinite values (among particles "
                         f"{rows[0]}..{rows[-1]}, 0-based)")
    return block


def _search_block(engine, galleries, bank, spectra, power, rows, n_best, progress):
    """Running N best of one block of particles over its galleries, and the comparisons.

    The references of each chunk are sliced from ``bank`` (a :class:`ReferenceBank`), or
    prepared from the projections when there is none."""
    best = BestPoses(len(rows), n_best)
    local = [m[(m >= rows[0]) & (m <= rows[-1])] - rows[0] for m in galleries.members]
    work = max(1, sum(len(i) * (hi - lo) for i, (lo, hi) in zip(local, galleries.bounds)))
    chunk = max(1, _REFS_PER_CHUNK // engine.n_psi)
    n_comparisons = 0
    for idx, (lo, hi) in zip(local, galleries.bounds):
        if len(idx) == 0:
            continue
        for d0 in range(lo, hi, chunk):
            d1 = min(hi, d0 + chunk)
            refs = (bank.take(d0, d1) if bank is not None
                    else engine.references(galleries.projections[d0:d1]))
            n_comparisons += engine.keep_best(spectra, power, idx, refs, best,
                                              ref_base=d0 * engine.n_psi)
            share = len(idx) * (d1 - d0) / work
            advance(progress, len(rows) * share)  # the particles' share of this chunk
    return best, n_comparisons


def _block_poses(engine, galleries, best, spectra, refiner, fine, spectrum):
    """Poses of one block: angles ``(n, k, 3)``, shifts ``(n, k, 2)`` in original pixels,
    scores ``(n, k)``, refinement comparisons and the gallery direction ``(n, 2)`` of the
    best pose. The best pose's shift is made sub-pixel, or the pose refined (``spectrum``)."""
    dir_index, psi_index = best.ref // engine.n_psi, best.ref % engine.n_psi
    gallery_direction = galleries.directions_deg[dir_index[:, 0]]
    psi_deg = (engine.psi_deg[psi_index] + 180.0) % 360.0 - 180.0
    angles = np.concatenate([galleries.directions_deg[dir_index], psi_deg[..., None]], axis=-1)
    shifts = -engine.offsets[best.shift][..., ::-1].astype(np.float64)  # (x, y) = -(dx, dy)
    score, n_refine = best.score, 0
    if spectrum is not None:
        from .local_refinement import refine_poses

        angles[:, 0], score[:, 0], peak, n_refine = refine_poses(
            fine[0], spectrum, angles[:, 0], search=refiner, ctf_half=fine[1])
        shifts[:, 0] = -peak[:, ::-1] * (refiner.scale / engine.scale)
    else:
        refs = engine.best_references(galleries.projections[dir_index[:, 0]], psi_index[:, 0])
        shifts[:, 0] -= engine.subpixel(spectra, refs,
                                        engine.offsets[best.shift[:, 0]])[:, ::-1]
    return angles, shifts * engine.scale, score, n_refine, gallery_direction


class _Poses:
    """The poses of all particles, filled block by block."""

    def __init__(self, n, n_best):
        self.angles = np.zeros((n, n_best, 3))
        self.shifts = np.zeros((n, n_best, 2))
        self.score = np.zeros((n, n_best), dtype=np.float32)
        self.gallery_directions = np.zeros((n, 2))  # of the best pose, before refinement
        self.significance = np.zeros(n)  # of the best gallery pose
        self.n_comparisons = 0

    def add(self, rows, n_search, angles, shifts, score, n_refine, gallery_direction):
        self.gallery_directions[rows] = gallery_direction
        self.angles[rows], self.shifts[rows], self.score[rows] = angles, shifts, score
        self.n_comparisons += int(n_search) + int(n_refine)

    def result(self, region, info, *, n_best) -> AlignmentResult:
        result = AlignmentResult(
            angles_deg=self.angles[:, 0], shifts_px=self.shifts[:, 0],
            score=self.score[:, 0].astype(np.float64), region=region.astype(np.int64),
            n_comparisons=self.n_comparisons, info=info, significance=self.significance)
        if n_best > 1:
            result.n_best_angles_deg = self.angles
            result.n_best_shifts_px = self.shifts
            result.n_best_scores = self.score.astype(np.float64)
            result.n_best_weights = significance_weights(self.score)
        return result
