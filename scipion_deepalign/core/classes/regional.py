"""Each particle against its predicted classes only: the regional class search (issue 25).

A network of K classes (:mod:`..cnn.joint`) gives each particle its most probable
(class, region) pairs (:class:`~..cnn.pairs.ClassPairs`). :func:`align_class_pairs` runs,
for each class ``k``, :func:`~..align.align.align_particles` against map ``k`` on the
particles that have a pair of class ``k`` only, with those pairs' regions as their hints
(the windows around them, and the significance fallback's global search of that map); a
particle's class is the class whose best pose scores highest among the classes it was
searched in (:func:`~.assign.pick_classes`, the other classes' scores being ``-inf``).

The significance fallback searches the particles it catches globally over every class: a
particle whose pose in its chosen class stood out too little (that class's fallback searched
it globally, or the fallback's rule, :func:`~..align.fallback.fallback_catches`, applied to
the chosen poses of all the particles catches it) was probably given the wrong pairs, its
class perhaps among them. It is then searched globally against every map it was not yet
searched globally in, and :func:`~.assign.pick_classes` decides again over all the classes;
a particle of class B given only class A pairs is found that way. The other particles are not
searched again.

The cost grows with the predicted pairs, not with K full searches: the comparisons are
counted per class (``n_comparisons_per_class``, the fallback's global searches of every
class included) and per particle
(:meth:`~.assign.ClassAlignment.comparisons_per_particle`). At last every map is compared
with the particle at the pose of its best search score (:func:`~.assign.decide_classes`, the
default): the class and its probability are decided there, over all the K classes, those the
network did not predict included (without it, the class probability is the weight of the class
among the classes searched, :mod:`.assign`, those not predicted counting 0).

With ``class_search`` ``"mean"`` (or ``"auto"`` on maps alike) a particle is searched once, in
the regions of all its pairs, against the maps' mean (:mod:`.mean_map`): the classes named by
its pairs then only widen its regions, and the class is decided over all K at the pose found.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..align.align import align_particles
from ..align.fallback import fallback_catches
from ..align.poses import AlignmentResult
from ..align.search_plan import SearchOptions
from ..defaults import CLASS_COMMON_POSE, TARGET_RESOLUTION
from ..runtime.stacks import RowStack, stack_shape
from .assign import decide_classes, full_rows, pick_classes, shared_resolution
from .mean_map import align_at_mean_map, choose_class_search
from .references import class_references

__all__ = ["align_class_pairs"]


def align_class_pairs(images, volumes, pairs, *, pixel_size_a, centres_deg,
                      volume_pixel_sizes_a=None, names=None,
                      target_resolution_a=TARGET_RESOLUTION, search=None, ctf=None,
                      progress=None, common_pose: bool = CLASS_COMMON_POSE,
                      class_search: str | None = None, **align_options):
    """Class and pose of every particle, searched in its predicted (class, region) pairs.

    Parameters
    ----------
    images : array_like of shape (N, B, B)
        Particles, as :func:`~..align.align.align_particles` takes them.
    volumes : sequence of K ndarray of shape (B, B, B)
        One map per class, in the order the network was trained with.
    pairs : ClassPairs
        Each particle's pairs (:func:`~..cnn.pairs.select_pairs`), at least one per particle.
    pixel_size_a : float
    centres_deg : ndarray of shape (R, 2)
        The model's region centres.
    volume_pixel_sizes_a, names, target_resolution_a
        As in :func:`~.assign.align_classes`.
    search : SearchOptions, optional
        Its window overlap and significance fallback (over every class for the particles it
        catches: module docstring); the pairs are already chosen, so its probability mass,
        number of regions and probability fallback are not applied again.
    ctf : CTFParams, optional
        CTFs of ``images``.
    progress : callable, optional
        Called with the particles done, each class's share weighing its particles.
    common_pose : bool
        Decide the class by every map at the best search score's pose, the classes not
        searched included (:func:`~.assign.decide_classes`), after the fallback.
    class_search : {"each", "mean", "auto"}, optional
        ``"mean"``: one search against the maps' mean in the regions of all a particle's
        pairs, the class decided at its pose (:mod:`.mean_map`); ``"auto"``: that where the
        maps correlate enough (:func:`.mean_map.choose_class_search`); default
        :data:`~..defaults.CLASS_SEARCH`.
    **align_options
        Every other keyword of ``align_particles`` (``max_shift_px``, ``symmetry``,
        ``step_deg``, ...), the same for every class.

    Returns
    -------
    ClassAlignment
        As :func:`~.assign.align_classes`; ``scores[i, k]`` is ``-inf`` where particle ``i``
        was not searched in class ``k``; ``n_regions_searched`` counts its pairs, or all the
        regions for the particles the significance fallback searched globally over every
        class (``alignment.fallback``; their share: ``info["class_fallback_fraction"]``).
    """
    references = class_references(volumes, pixel_sizes_a=volume_pixel_sizes_a, names=names,
                                  pixel_size_a=pixel_size_a)
    n = stack_shape(images)[0]
    if len(references) != pairs.n_classes or len(pairs.classes) != n:
        raise ValueError(f"{len(references)} maps and {n} particles, but pairs of "
                         f"{pairs.n_classes} classes for {len(pairs.classes)} particles")
    if not np.all(pairs.classes[:, 0] >= 0):
        raise ValueError("every particle needs at least one (class, region) pair")
    resolution = shared_resolution(target_resolution_a, references, pixel_size_a=pixel_size_a)
    options = replace(search or SearchOptions(), probability_mass=None, max_regions=None,
                      fallback_probability=0.0)
    kind, words = choose_class_search(class_search, references)
    if kind == "mean":
        picked = align_at_mean_map(
            images, references, pixel_size_a=pixel_size_a, target_resolution_a=resolution,
            ctf=ctf, progress=progress, region_hints=pair_regions(pairs),
            centres_deg=centres_deg, search=options, **align_options)
        picked.alignment.info["mode"] = "class pairs, one search (mean map)"
        picked.class_search = words
        return picked
    members = [pairs.members(k)[:2] for k in range(len(references))]
    total = sum(len(rows) for rows, _ in members)
    share = None if progress is None else (lambda done: progress(done * n / total))
    results, seconds = [], []
    for reference, (rows, hints) in zip(references, members):
        t0 = time.perf_counter()
        part = None
        if len(rows):
            part = align_particles(
                RowStack(images, rows), reference, pixel_size_a=pixel_size_a,
                target_resolution_a=resolution, region_hints=hints, centres_deg=centres_deg,
                search=options, ctf=None if ctf is None else ctf.subset(rows),
                progress=share, **align_options)
        results.append(full_rows(part, rows, n))
        seconds.append(time.perf_counter() - t0)
    picked = pick_classes(results)
    caught = _caught(picked.alignment, options.fallback_significance)
    if caught.any():  # the significance fallback over every class
        for k, reference in enumerate(references):
            rows = np.flatnonzero(caught & ~results[k].fallback)
            if len(rows):
                t0 = time.perf_counter()
                again = align_particles(
                    RowStack(images, rows), reference, pixel_size_a=pixel_size_a,
                    target_resolution_a=resolution, centres_deg=centres_deg, search=options,
                    ctf=None if ctf is None else ctf.subset(rows), **align_options)
                results[k].replace_rows(rows, again)
                results[k].fallback[rows] = True
                seconds[k] += time.perf_counter() - t0
        picked = pick_classes(results)
    if common_pose and len(references) > 1:
        picked = decide_classes(results, picked, images, references, pixel_size_a=pixel_size_a,
                                ctf=ctf, ctf_mode=align_options.get("ctf_mode", "apply"),
                                mask_radius_px=align_options.get("mask_radius_px"))
    picked.seconds_per_class = seconds
    picked.alignment.fallback = caught
    picked.alignment.info["class_fallback_fraction"] = float(caught.mean())
    picked.alignment.n_regions_searched = np.where(caught, len(centres_deg),
                                                   (pairs.classes >= 0).sum(axis=1))
    picked.alignment.info["mean_regions_searched"] = float(
        np.mean(picked.alignment.n_regions_searched))
    picked.alignment.info["mode"] = "class pairs"
    picked.class_search = words
    return picked


def pair_regions(pairs) -> np.ndarray:
    """Each particle's regions of all its (class, region) pairs, best pair first, ``(N, m)``
    (a region in several pairs, or a row's end, repeats its first region: searched once)."""
    regions = np.asarray(pairs.regions)
    return np.where(regions >= 0, regions, regions[:, :1])


def _caught(alignment: AlignmentResult, threshold) -> np.ndarray:
    """The particles to search globally over every class: those the significance fallback
    searched globally in their chosen class, or that its rule catches among the chosen poses
    (:func:`~..align.fallback.fallback_catches`)."""
    caught = np.asarray(alignment.fallback, bool).copy()
    if alignment.significance is not None:
        caught |= fallback_catches(alignment.significance, threshold)[0]
    return caught
