"""Correlation alignment of particles against reference galleries, regional or global.

Each particle is compared with the gallery of every region in its hint list (``region_hints``,
typically the top-k regions predicted by the CNN) or, in global mode, with one gallery over
the whole asymmetric unit. A comparison is one (particle, direction, in-plane angle) triple;
the shift search inside a disc of ``max_shift_px`` is done at once by FFT cross-correlation
and is not counted separately. The score is a normalised cross-correlation
(:mod:`scipion_deepalign.core.matching`); the best pose (optionally the N best, with
weights) is kept, and the shift of the best pose is refined to sub-pixel precision. With
``refine=True`` the best pose is then refined below the gallery step
(:mod:`scipion_deepalign.core.local_refinement`).

Poses follow :mod:`scipion_deepalign.core.geometry`: the particle is approximately
``translate_images(project(volume, angles_deg), -shifts_px)``. Shifts are returned in
pixels of the ORIGINAL images even when the search ran on a downsampled box.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import matching
from .backend import get_array_module, is_out_of_memory, to_numpy
from .gallery import (
    Gallery,
    GalleryCache,
    default_step_deg,
    psi_grid_deg,
    rotate_selected,
)
from .progress import advance
from .search_plan import SearchOptions, build_tiles, plan_search, select_regions
from .validation_align import validate_inputs

__all__ = ["AlignmentResult", "align_particles", "significance_weights"]

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 1 << 23  # bound on n * m * K (correlations held at once, 32 MB float32)
_REFS_PER_CHUNK = 2048  # rotated references prepared at once
_PARTICLE_BLOCK = 8192  # particles whose spectra are held at once


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
        Particles searched globally because their prediction was unsure (all False in
        global mode).
    n_regions_searched : ndarray of shape (N,) int or None
        Regions searched per particle.
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
                    target_resolution_a=None, device="auto", batch_size=256, n_best=1,
                    ctf_mode="apply", volume_pixel_size_a=None, mask_radius_px=None,
                    cache_dir=None, refine=False, region_probabilities=None,
                    search: SearchOptions | None = None, progress=None) -> AlignmentResult:
    """Assign a pose to every particle by correlation with projections of ``volume``.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
        Particles (not CTF-corrected), pixel size ``pixel_size_a``.
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
        pixel of the search box.
    psi_step_deg : float or None
        In-plane step; default ``step_deg``.
    target_resolution_a : float or None
        Downsample images and map so that Nyquist matches this resolution (see
        :func:`projection.downsampled_geometry`); ``None`` keeps the full box.
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
        projections (:mod:`local_refinement`; adds 54 comparisons per particle). The N-best
        poses other than the first are not refined.
    region_probabilities : ndarray of shape (N, k), optional
        Probabilities of ``region_hints`` (needed by the adaptive number of regions and the
        fallback of ``search``).
    search : SearchOptions, optional
        Windows around the regions, adaptive number of regions and fallback to the global
        search (:mod:`search_plan`); default ``SearchOptions()`` (without
        ``region_probabilities``: its windows, every hinted region searched, no fallback).
    progress : callable, optional
        Called with the particles done (their share of each chunk of references;
        :mod:`.progress`).

    Returns
    -------
    AlignmentResult

    Raises
    ------
    ValueError
        Naming the parameter, for inconsistent inputs (checked before any heavy work).
    """
    t0 = time.perf_counter()
    images = np.asarray(images, dtype=np.float32)
    volume = np.asarray(volume, dtype=np.float32)
    checked = validate_inputs(
        images, volume, pixel_size_a=pixel_size_a, max_shift_px=max_shift_px, ctf=ctf,
        symmetry=symmetry, region_hints=region_hints, centres_deg=centres_deg,
        step_deg=step_deg, psi_step_deg=psi_step_deg, target_resolution_a=target_resolution_a,
        device=device, batch_size=batch_size, n_best=n_best, ctf_mode=ctf_mode,
        volume_pixel_size_a=volume_pixel_size_a, mask_radius_px=mask_radius_px)
    symmetry, region_hints, centres_deg = checked
    xp = get_array_module(device)
    n, box = images.shape[0], images.shape[-1]

    # --- search box -------------------------------------------------------------------------
    from .imageops import fourier_crop, fourier_crop_volume

    small, pixel_small = box, float(pixel_size_a)
    if target_resolution_a is not None:
        from .projection import downsampled_geometry
        small, pixel_small = downsampled_geometry(box, pixel_size_a, target_resolution_a)
        small = int(small)
    scale = box / small
    if small < box:
        images = np.asarray(fourier_crop(images, small), dtype=np.float32)
        volume = np.asarray(fourier_crop_volume(volume, small), dtype=np.float32)
    radius_small = (0.45 * box if mask_radius_px is None else mask_radius_px) / scale
    step = default_step_deg(radius_small) if step_deg is None else float(step_deg)
    psi = psi_grid_deg(step if psi_step_deg is None else float(psi_step_deg))
    offsets = matching.shift_window(small, max_shift_px / scale)
    band = matching.FourierBand.of_box(small)
    phases = band.shift_phases(offsets, xp)
    # References are masked at the particle radius; particles at that radius plus the largest
    # shift, so that a shifted particle keeps all of its signal.
    masks = (matching.soft_mask(small, radius_small),
             matching.soft_mask(small, min(small / 2 - 1, radius_small + max_shift_px / scale)))

    # --- plan: which tiles of directions each particle is compared with -------------------
    if search is None:  # the defaults; without probabilities, every hinted region is searched
        search = SearchOptions()
        if region_probabilities is None:
            search = replace(search, probability_mass=None, fallback_probability=0.0)
    plan = _plan(n, symmetry=symmetry, step=step, centres_deg=centres_deg,
                 region_hints=region_hints, region_probabilities=region_probabilities,
                 search=search)

    # --- galleries: projections of the tiles someone needs ------------------------------------
    cache = GalleryCache(cache_dir)
    t_gal = time.perf_counter()
    galleries, members_of = _grouped_galleries(plan, volume, cache, small)
    uncovered = np.ones(n, dtype=bool)
    for gal, members in zip(galleries, members_of):
        if len(gal):
            uncovered[members] = False
    if uncovered.any():
        raise ValueError(
            f"step_deg {step:g} is too coarse for the regions: {int(uncovered.sum())} "
            "particles have no gallery direction in their regions; use a smaller step_deg")
    t_gal = time.perf_counter() - t_gal
    dir_offset = np.cumsum([0] + [len(g) for g in galleries])
    all_dirs = np.concatenate([g.directions_deg for g in galleries])

    # --- search -------------------------------------------------------------------------------
    ctf_half = None
    if ctf is not None:
        from .ctf import ctf_images
        ctf_half = matching.ctf_half_plane(ctf_images(small, pixel_small, ctf))
    apply_mode = ctf is not None and ctf_mode in ("apply", "flipped")

    best_score = np.full((n, n_best), -np.inf, dtype=np.float32)
    best_ref = np.zeros((n, n_best), dtype=np.int64)  # global direction index * P + psi index
    best_shift = np.zeros((n, n_best), dtype=np.int64)
    n_comparisons = 0
    n_psi = len(psi)
    state = {"batch": int(batch_size)}
    dirs_per_chunk = max(1, _REFS_PER_CHUNK // n_psi)
    for p0 in range(0, n, _PARTICLE_BLOCK):
        block = np.arange(p0, min(n, p0 + _PARTICLE_BLOCK))
        ctf_block = None if ctf_half is None else ctf_half[block]
        spectra, power = matching.prepare_particles(images[block], xp=xp, mask=masks[1],
                                                    band=band,
                                                    ctf_half=ctf_block, ctf_mode=ctf_mode)
        in_block = [m[(m >= block[0]) & (m <= block[-1])] for m in members_of]
        block_work = max(1, sum(len(i) * len(g) for i, g in zip(in_block, galleries)))
        for gal, idx, offset in zip(galleries, in_block, dir_offset[:-1]):
            if len(idx) == 0 or len(gal) == 0:
                continue
            for d0 in range(0, len(gal), dirs_per_chunk):
                # Mask first, then rotate: the circular mask commutes with the rotation.
                masked = matching.mask_zero_mean(gal.projections[d0:d0 + dirs_per_chunk],
                                                 masks[0])
                ref_matrix, ref_power = matching.prepare_references(
                    _rotated(masked, psi), xp=xp, mask=None, band=band, with_power=apply_mode)
                n_comparisons += _match_chunk(
                    xp, spectra, power, idx, p0, ref_matrix, ref_power, phases, state,
                    best_score, best_ref, best_shift, ref_base=(offset + d0) * n_psi)
                share = len(idx) * min(dirs_per_chunk, len(gal) - d0) / block_work
                advance(progress, len(block) * share)  # the particles' share of this chunk

    # --- poses ------------------------------------------------------------------------------------
    dir_index, psi_index = best_ref // n_psi, best_ref % n_psi
    psi_deg = (psi[psi_index] + 180.0) % 360.0 - 180.0
    angles = np.concatenate([all_dirs[dir_index], psi_deg[..., None]], axis=-1)
    shifts_small = -offsets[best_shift][..., ::-1].astype(np.float64)  # (x, y) = -(dx, dy)
    if refine:
        from .local_refinement import refine_poses

        angles[:, 0], score0, peak, n_refine = refine_poses(
            images, volume, angles[:, 0], xp=xp, band=band, masks=masks, step_deg=step,
            max_shift_px=max_shift_px / scale, ctf_half=ctf_half, ctf_mode=ctf_mode)
        best_score[:, 0] = score0
        shifts_small[:, 0] = -peak[:, ::-1]
        n_comparisons += n_refine
    else:
        all_proj = np.concatenate([g.projections for g in galleries])
        refs = rotate_selected(matching.mask_zero_mean(all_proj[dir_index[:, 0]], masks[0]),
                               psi, psi_index[:, 0])
        shifts_small[:, 0] -= matching.subpixel_offsets(
            xp, images, ctf_half, ctf_mode, masks[1], band, refs,
            offsets[best_shift[:, 0]])[:, ::-1]
    shifts = shifts_small * scale
    if centres_deg is not None:
        from .regions import assign_regions
        region = assign_regions(all_dirs[dir_index[:, 0]], centres_deg, symmetry)[0]
    else:
        region = np.full(n, -1)
    result = AlignmentResult(
        angles_deg=angles[:, 0], shifts_px=shifts[:, 0], score=best_score[:, 0].astype(np.float64),
        region=region.astype(np.int64), n_comparisons=int(n_comparisons),
        info=dict(box_px=small, pixel_size_a=pixel_small, scale=scale, step_deg=step,
                  psi_step_deg=360.0 / n_psi, n_directions=len(all_dirs), n_psi=n_psi,
                  n_shifts=len(offsets), backend=xp.__name__, gallery_seconds=t_gal,
                  seconds=time.perf_counter() - t0, ctf_mode=ctf_mode if ctf else None,
                  refined=bool(refine), n_tiles=len(plan.tiles),
                  n_groups=len(galleries), **plan.info))
    result.fallback = plan.fallback if region_hints is not None else np.zeros(n, bool)
    result.n_regions_searched = plan.n_regions_searched
    if n_best > 1:
        result.n_best_angles_deg = angles
        result.n_best_shifts_px = shifts
        result.n_best_scores = best_score.astype(np.float64)
        result.n_best_weights = significance_weights(best_score)
    logger.info("aligned %d particles: %d comparisons in %.1f s (%s)", n, n_comparisons,
                result.info["seconds"], xp.__name__)
    return result


def _plan(n, *, symmetry, step, centres_deg, region_hints, region_probabilities, search):
    """Tiles and per-tile particle lists (:mod:`search_plan`)."""
    if centres_deg is None:  # global search without regions: tiles of a 30-degree grid
        from .regions import region_centres_deg
        centres_deg = region_centres_deg(30.0, symmetry)
    tiles = build_tiles(centres_deg, symmetry, step, overlap_deg=search.overlap_deg)
    if region_hints is None:
        return plan_search(tiles, n)
    probs = None
    if region_probabilities is not None:
        probs = np.asarray(region_probabilities, dtype=np.float64)
        if probs.shape != region_hints.shape:
            raise ValueError(f"region_probabilities must have the shape of region_hints "
                             f"{region_hints.shape}, got {probs.shape}")
    elif search.needs_probabilities:
        raise ValueError("the adaptive number of regions and the global fallback need the "
                         "region probabilities of the prediction")
    lists = select_regions(region_hints, probs, probability_mass=search.probability_mass,
                           max_regions=search.max_regions)
    return plan_search(tiles, n, region_lists=lists,
                       top_probability=None if probs is None else probs[:, 0],
                       fallback_probability=search.fallback_probability)


def _grouped_galleries(plan, volume, cache, box):
    """One gallery per set of tiles searched by exactly the same particles.

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
    # one projection call for every direction needed (the groups are slices of it)
    projections = cache.projections(volume, np.concatenate(group_dirs)) if group_dirs else None
    galleries, members_of, start = [], [], 0
    for (members, tiles), dirs in zip(groups.values(), group_dirs):
        galleries.append(Gallery(tiles[0], dirs, projections[start:start + len(dirs)]))
        members_of.append(members)
        start += len(dirs)
    if not galleries:
        galleries = [Gallery(-1, np.zeros((0, 2)), np.zeros((0, box, box), np.float32))]
        members_of = [np.zeros(0, dtype=np.int64)]
    return galleries, members_of


def _rotated(projections, psi):
    from .gallery import rotate_to_psi
    refs = rotate_to_psi(projections, psi)
    return refs.reshape(-1, refs.shape[-2], refs.shape[-1])


def _match_chunk(xp, spectra, power, idx, p0, ref_matrix, ref_power, phases, state,
                 best_score, best_ref, best_shift, *, ref_base):
    """Correlate particles ``idx`` with one reference chunk; merge into the running best.

    ``spectra``/``power`` hold the particle block starting at particle ``p0``. Returns the
    number of comparisons (particles times references).
    """
    m, k = ref_matrix.shape[0], phases.shape[1]
    start = 0
    while start < len(idx):
        nb = max(1, min(state["batch"], _BLOCK_ELEMENTS // (m * k)))
        sel = idx[start:start + nb]
        local = xp.asarray(sel - p0)
        try:
            score, shift = matching.correlate_block(
                spectra[local], ref_matrix, phases, xp=xp,
                particle_power=None if power is None else power[local], ref_power=ref_power)
            score, shift = to_numpy(score), to_numpy(shift)
        except Exception as exc:
            if not is_out_of_memory(exc) or nb == 1:
                raise
            state["batch"] = max(1, nb // 2)
            logger.warning("out of memory with %d particles per block; retrying with %d",
                           nb, state["batch"])
            _free_gpu_memory(xp)
            continue
        matching.merge_best(score, shift, sel, ref_base, best_score, best_ref, best_shift)
        start += len(sel)
    return len(idx) * m


def _free_gpu_memory(xp):
    if xp is not np:
        try:
            xp.get_default_memory_pool().free_all_blocks()
        except Exception:  # pragma: no cover - best effort
            pass
