"""Correlation alignment of particles against reference galleries, regional or global.

Stages: checks (:mod:`validation_align`) -> **plan** the search geometry
(:meth:`search.Search.create`) and the tiles each particle meets
(:func:`search_plan.plan_alignment`) -> **galleries** (:func:`gallery.group_galleries`) ->
for every block of particles, read end to end: downsample, **search**
(:func:`.gallery_search.search_block`), the search **around the kept poses** (the tiles near
them that the block's particles did not meet: :meth:`_Run.follow`) and **poses** (indices to
angles, sub-pixel shift or :mod:`local_refinement`) -> the significance **fallback**
(:mod:`.fallback`: the same steps, globally, for the particles whose pose stood out too little,
on the same galleries). Only one block
of images is in memory at a time, so ``images`` may be a memory map or any object with
``len()`` and slicing.

Each particle is compared with the gallery of every region in its hint list (``region_hints``,
typically the top-k regions predicted by the CNN) or, in global mode, with one gallery over
the whole asymmetric unit. A comparison is one (particle, direction, in-plane angle) triple
(:mod:`.cost`, the one definition the forms show too); the shift search inside a disc of
``max_shift_px`` is done at once and is not counted separately, and the refinement's
candidates are counted apart (``n_refine_comparisons``). The score is a normalised cross-correlation
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
from dataclasses import dataclass

import numpy as np

from ..defaults import ALIGN_BATCH, REFINE, TARGET_RESOLUTION
from ..resolution import search_resolution
from ..runtime.backend import get_array_module
from ..runtime.progress import share
from ..runtime.stacks import RowStack, stack_shape
from .cost import gallery_work, refine_work
from .fallback import significance_fallback
from .gallery import GalleryCache, group_galleries
from .gallery_search import REFS_PER_CHUNK, block_comparisons, search_block, wants_bank
from .poses import (
    AlignmentResult,
    BlockPoses,
    block_poses,
    gallery_poses_kept,
    pose_weights,
    read_block,
)
from .search import Search
from .search_plan import SearchOptions, plan_alignment, plan_search
from .validation import validate_inputs

__all__ = ["AlignmentResult", "align_particles", "pose_weights"]

logger = logging.getLogger(__name__)

PARTICLE_BLOCK = 8192  # particles read, searched and posed together (default block_size)


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
        projections (:mod:`local_refinement`; at most
        :data:`~.local_refinement.CANDIDATES_PER_PARTICLE` candidates per particle, counted in
        ``n_refine_comparisons``), after a
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
        Called with the particles done (:mod:`.progress`): each block's particles split
        between its gallery search (their share of each chunk of references) and its local
        refinement (of each search) by the work of the two (:meth:`_Run.search_share`), so
        the whole is reached only when the last block is refined.
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
    n = shape[0]
    resolution = search_resolution(target_resolution_a, volume=volume,
                                   pixel_size_a=pixel_size_a, name="target_resolution_a")
    engine = Search.create(shape[-1], pixel_size_a, max_shift_px=max_shift_px,
                           xp=get_array_module(device), target_resolution_a=resolution.search_a,
                           mask_radius_px=mask_radius_px, step_deg=step_deg,
                           psi_step_deg=psi_step_deg, ctf=ctf, ctf_mode=ctf_mode,
                           batch_size=batch_size, refine=refine)
    run = _Run.create(engine, volume, refine=refine, resolution=resolution,
                      cache=GalleryCache(cache_dir), shape=shape, n_best=n_best,
                      block_size=block_size, symmetry=symmetry, centres_deg=centres_deg)
    # --- plan: the tiles of directions each particle meets --------------------------------
    plan = plan_alignment(n, symmetry=symmetry, step_deg=engine.step_deg,
                          centres_deg=centres_deg, region_hints=region_hints,
                          region_probabilities=region_probabilities, options=search)
    # --- galleries, search and poses ------------------------------------------------------
    result = run.search(plan, images, np.arange(n), progress)
    result.info.update(resolution=resolution.describe(), resolution_source=resolution.source,
                       estimated_resolution_a=resolution.estimate_a,
                       refine_box_px=None if run.refiner is None else run.refiner.box_px,
                       ctf_mode=ctf_mode if ctf else None, refined=bool(refine), **plan.info)
    result.fallback = plan.fallback if region_hints is not None else np.zeros(n, bool)
    result.n_regions_searched = plan.n_regions_searched
    if region_hints is not None:
        # --- the significance fallback: a global search of the unsure, same galleries ---
        options = search or SearchOptions()
        significance_fallback(
            result, threshold=options.fallback_significance, n_regions=len(centres_deg),
            search_globally=lambda redo, shown: run.search(
                plan_search(plan.tiles, len(redo)), RowStack(images, redo), redo, shown),
            show_progress=progress is not None)
    result.info.update(seconds=time.perf_counter() - t0,
                       n_refine_comparisons=result.n_refine_comparisons,
                       n_projected=run.cache.n_projected)
    logger.info("aligned %d particles: %d comparisons (and %d in the refinement) in %.1f s "
                "(%s)", n, result.n_comparisons, result.n_refine_comparisons,
                result.info["seconds"], engine.xp.__name__)
    return result


@dataclass
class _Run:
    """What every search of one alignment shares: the search and refinement settings, the
    maps on their boxes and the gallery cache (so the fallback's global pass projects only
    the directions the first pass did not meet)."""

    engine: Search
    refiner: Search | None
    volume: np.ndarray  # on the search box
    spectrum: object  # VolumeSpectrum of the map on the refinement's box, or None
    cache: GalleryCache
    shape: tuple
    n_best: int
    block_size: int
    symmetry: str
    centres_deg: np.ndarray | None

    @classmethod
    def create(cls, engine, volume, *, refine, resolution, **shared) -> _Run:
        refiner = engine.finer(resolution.refine_a) if refine else None
        spectrum = None
        if refiner is not None:
            from ..projection import VolumeSpectrum
            spectrum = VolumeSpectrum(refiner.downsample_volume(volume))
        return cls(engine, refiner, engine.downsample_volume(volume), spectrum, **shared)

    def search_share(self, galleries, rows) -> float:
        """The gallery search's share of the work on the block of particles ``rows``, the
        rest the local refinement's (:func:`.cost.gallery_work`, :func:`.cost.refine_work`):
        how each particle's progress is split between the two."""
        if self.refiner is None:
            return 1.0
        from .local_refinement import CANDIDATES_PER_PARTICLE, local_window_size

        engine = self.engine
        searched = gallery_work(block_comparisons(galleries, rows, engine.n_psi),
                                len(engine.band), len(engine.offsets))
        refined = refine_work(len(rows) * CANDIDATES_PER_PARTICLE, len(self.refiner.band),
                              local_window_size(engine, self.refiner))
        return searched / (searched + refined)

    def follow(self, plan, galleries, bank, best, spectra, power, rows, kept):
        """The second search of the block ``rows``: the tiles around the gallery poses its
        first search kept that it did not meet (:meth:`.search_plan.SearchPlan.follow`),
        taken into ``best`` (in place). Their references are gathered from the first
        search's ``bank`` (when there is one and it holds their directions).

        Returns the galleries of both searches (the first's alone when nothing was followed),
        the second search's comparisons and its tiles summed over the block's particles."""
        engine = self.engine
        kept_refs = np.where(np.isfinite(best.score), best.ref, best.ref[:, :1])
        followed = plan.follow(rows, galleries.directions_deg[kept_refs // engine.n_psi])
        if followed is None:
            return galleries, 0, 0.0
        t0 = time.perf_counter()
        around = group_galleries(followed, self.volume, self.cache)
        index = None if bank is None else galleries.indices_of(around.directions_deg)
        around_bank = None if index is None else bank.subset(index, xp=engine.xp)
        more, count = search_block(engine, around, around_bank, spectra, power, rows, kept)
        best.absorb(more, ref_base=len(galleries) * engine.n_psi)
        tiles = followed.info["mean_tiles_followed"]
        logger.debug("around the kept poses: %.2f tiles a particle, %d comparisons in %d "
                     "groups, %.2f s", tiles, count, len(around.bounds), time.perf_counter() - t0)
        return galleries.joined(around), count, tiles * len(rows)

    def search(self, plan, images, ctf_rows, progress) -> AlignmentResult:
        """Poses of the particles ``images`` (``len(ctf_rows)``; their rows of the CTF are
        ``ctf_rows``) over the galleries of ``plan``, read ``block_size`` at a time."""
        t0, engine, n = time.perf_counter(), self.engine, len(ctf_rows)
        galleries = group_galleries(plan, self.volume, self.cache)
        galleries.check_covers(n, engine.step_deg)
        t_gal = time.perf_counter() - t0
        # the prepared references of every direction, made once (when they fit) where they
        # are met more than once: by several blocks, by the second search around the kept
        # poses, or gathered by tile sets
        bank = None
        if wants_bank(galleries, n, int(self.block_size), follows=bool(plan.follow_deg)):
            bank = engine.reference_bank(galleries.projections,
                                         chunk=max(1, REFS_PER_CHUNK // engine.n_psi))
        poses, n_followed = BlockPoses(n, self.n_best), 0.0
        for start in range(0, n, int(self.block_size)):
            rows = np.arange(start, min(n, start + int(self.block_size)))
            block = read_block(images, rows, self.shape)
            small, ctf_half = engine.downsample(block), engine.ctf_half(ctf_rows[rows])
            fine = None
            if self.refiner is not None:
                fine = ((small, ctf_half) if self.refiner is engine else
                        (self.refiner.downsample(block), self.refiner.ctf_half(ctf_rows[rows])))
            spectra, power = engine.particles(small, ctf_half)
            searched = self.search_share(galleries, rows)
            kept = gallery_poses_kept(self.n_best, fine is not None)
            best, count = search_block(engine, galleries, bank, spectra, power, rows, kept,
                                       share(progress, searched))
            block_galleries, more, followed = self.follow(plan, galleries, bank, best,
                                                          spectra, power, rows, kept)
            count, n_followed = count + more, n_followed + followed
            poses.significance[rows] = best.significance()
            poses.add(rows, count, *block_poses(engine, block_galleries, best, spectra,
                                                self.refiner, fine, self.spectrum,
                                                n_best=self.n_best,
                                                progress=share(progress, 1.0 - searched)))
        region = np.full(n, -1)
        if self.centres_deg is not None:
            from ..regions import assign_regions
            region = assign_regions(poses.gallery_directions, self.centres_deg,
                                    self.symmetry)[0]
        info = dict(box_px=engine.box_px, pixel_size_a=engine.pixel_size_a,
                    scale=engine.scale, step_deg=engine.step_deg,
                    psi_step_deg=360.0 / engine.n_psi, n_directions=len(galleries),
                    n_psi=engine.n_psi, n_shifts=len(engine.offsets),
                    backend=engine.xp.__name__, gallery_seconds=t_gal,
                    n_tiles=len(plan.tiles), n_groups=len(galleries.bounds),
                    mean_tiles_followed=n_followed / max(n, 1) if plan.follow_deg else None,
                    reference_bank=bank is not None)
        return poses.result(region, info, n_best=self.n_best)
