"""Each particle's class and pose against K reference maps: one alignment per map, the class
whose best pose scores highest wins.

:func:`align_classes` checks the maps (:func:`.references.class_references`), fixes one search
and refinement resolution for all of them (the finest any map supports, so that every class is
scored on the same Fourier band), runs :func:`~..align.align.align_particles` once per map with
the same options (global, or inside the same region windows when region hints are given) and
:func:`pick_classes` keeps, per particle, the class of the highest best-pose score with that
class's pose. Scores compare across classes because each is a normalised cross-correlation with
a unit-norm, zero-mean reference (:mod:`..align.matching`): the maps' scale and mass do not
enter.

With ``common_pose`` (the default, :data:`~..defaults.CLASS_COMMON_POSE`) the searches
only find the poses: the class is then decided by every map at one pose, that of the best
search score (:mod:`.common_pose`), and its probability is the likelihood of the class at that
pose among the K (:func:`.common_pose.class_posteriors`); each particle keeps its pose in the
class decided. Without it, the class of the highest best-pose score wins, and the class
probability is the weight :func:`~..align.poses.pose_weights` gives the classes' best scores,
``exp((cc_k - cc_best) / 0.01)`` normalised over the classes: a relative confidence (a score
lead of 0.01 is a factor e), not a calibrated posterior.

With ``class_search`` ``"mean"`` (or ``"auto"`` on maps alike, :mod:`.mean_map`) the K searches
are replaced by one against the maps' mean, the class decided at its pose.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..align.align import align_particles
from ..align.poses import AlignmentResult, pose_weights
from ..defaults import CLASS_COMMON_POSE, TARGET_RESOLUTION
from ..resolution import search_resolution
from ..runtime.stacks import stack_shape
from .references import class_references

__all__ = ["ClassAlignment", "align_classes", "pick_classes", "shared_resolution",
           "decide_classes", "full_rows"]

#: AlignmentResult fields with one row per particle, taken from the particle's class
_ROW_FIELDS = ("angles_deg", "shifts_px", "score", "region", "fallback", "n_regions_searched",
               "significance", "n_best_angles_deg", "n_best_shifts_px", "n_best_scores",
               "n_best_weights")


@dataclass
class ClassAlignment:
    """Classes and poses of N particles against K maps.

    Attributes
    ----------
    classes : ndarray of shape (N,) int64
        0-based class (the index of the map) whose best pose scored highest.
    probability : ndarray of shape (N,)
        Weight of that class among the K (see the module docstring).
    scores : ndarray of shape (N, K)
        Each class's best-pose score.
    common_pose_cc : ndarray of shape (N, K) or None
        Each map's correlation with the particle at one pose (:mod:`.common_pose`), when the
        class was decided there; None when decided by ``scores``.
    alignment : AlignmentResult
        Each particle's pose, score and region columns in its class; ``n_comparisons`` and
        ``n_refine_comparisons`` summed over the classes.
    n_comparisons_per_class, n_refine_comparisons_per_class : list of int
        What each class's alignment compared (:mod:`..align.cost`'s definition).
    seconds_per_class : list of float
    mean_map_search : bool
        The poses come from one search against the classes' mean map (:mod:`.mean_map`):
        the comparisons lists then hold that one search's.
    class_search : str
        How the classes were searched, in words (:func:`.mean_map.choose_class_search`).
    """

    classes: np.ndarray
    probability: np.ndarray
    scores: np.ndarray
    alignment: AlignmentResult
    n_comparisons_per_class: list = field(default_factory=list)
    n_refine_comparisons_per_class: list = field(default_factory=list)
    seconds_per_class: list = field(default_factory=list)
    common_pose_cc: np.ndarray | None = None
    mean_map_search: bool = False
    class_search: str = ""

    def class_sizes(self) -> np.ndarray:
        """Particles per class, ``(K,)``."""
        return np.bincount(self.classes, minlength=self.scores.shape[1])

    def comparisons_per_particle(self) -> float:
        """Comparisons of every class's search (not the refinement's) per particle: K full
        searches cost K times one map's; a search in predicted pairs
        (:mod:`.regional`) grows with the pairs."""
        return sum(self.n_comparisons_per_class) / max(1, len(self.classes))


def shared_resolution(target_resolution_a, references, *, pixel_size_a):
    """One :class:`~..resolution.SearchResolution` for every class: ``target_resolution_a``
    resolved for each map, the finest search (and its refinement) kept."""
    options = [search_resolution(target_resolution_a, volume=ref, pixel_size_a=pixel_size_a,
                                 name="target_resolution_a") for ref in references]
    return min(options, key=lambda r: 0.0 if r.search_a is None else r.search_a)


def align_classes(images, volumes, *, pixel_size_a, volume_pixel_sizes_a=None, names=None,
                  target_resolution_a=TARGET_RESOLUTION, progress=None,
                  common_pose: bool = CLASS_COMMON_POSE, class_search: str | None = None,
                  **align_options) -> ClassAlignment:
    """Class and pose of every particle against the maps ``volumes``.

    Parameters
    ----------
    images : array_like of shape (N, B, B)
        Particles, as :func:`~..align.align.align_particles` takes them (read once per map).
    volumes : sequence of ndarray of shape (B, B, B)
        One reference map per class (K >= 1), same box and pixel size as the particles.
    pixel_size_a : float
        Pixel size of ``images`` (Å).
    volume_pixel_sizes_a : sequence of (float or None), optional
        Each map's own pixel size, checked against the particles' and each other's.
    names : sequence of str, optional
        The maps' names in messages (their file names).
    target_resolution_a : "auto", "full", float or None
        As in ``align_particles``; resolved once for all maps (:func:`shared_resolution`).
    progress : callable, optional
        Called with the particles done, each map's alignment counting ``1 / K``.
    common_pose : bool
        Decide the class by every map at the best search score's pose (module docstring).
    class_search : {"each", "mean", "auto"}, optional
        Search each map on its own (K searches), or once against the maps' mean and decide
        the class at that pose (:mod:`.mean_map`), or choose by the maps' correlation
        (:func:`.mean_map.choose_class_search`); default :data:`~..defaults.CLASS_SEARCH`.
    **align_options
        Every other keyword of ``align_particles`` (``max_shift_px``, ``ctf``, ``symmetry``,
        ``region_hints``, ``centres_deg``, ``step_deg``, ...), the same for every class.

    Returns
    -------
    ClassAlignment

    Raises
    ------
    ValueError
        Naming the map, when the maps differ in box or pixel size or one does not match the
        particles (before any search); otherwise as ``align_particles``.
    """
    references = class_references(volumes, pixel_sizes_a=volume_pixel_sizes_a, names=names,
                                  pixel_size_a=pixel_size_a)
    box = stack_shape(images)[-1]
    if references.shape[-1] != box:
        raise ValueError(f"the maps' box {references.shape[-1]} px differs from the particles' "
                         f"{box} px")
    resolution = shared_resolution(target_resolution_a, references, pixel_size_a=pixel_size_a)
    k = len(references)
    from .mean_map import align_at_mean_map, choose_class_search

    kind, words = choose_class_search(class_search, references)
    if kind == "mean":
        options = dict(align_options)
        picked = align_at_mean_map(images, references, pixel_size_a=pixel_size_a,
                                   target_resolution_a=resolution, ctf=options.pop("ctf", None),
                                   progress=progress, **options)
        picked.class_search = words
        return picked
    share = None if progress is None else (lambda done: progress(done / k))
    results, seconds = [], []
    for reference in references:
        t0 = time.perf_counter()
        results.append(align_particles(images, reference, pixel_size_a=pixel_size_a,
                                       target_resolution_a=resolution, progress=share,
                                       **align_options))
        seconds.append(time.perf_counter() - t0)
    picked = pick_classes(results)
    if common_pose and k > 1:
        picked = decide_classes(results, picked, images, references,
                                pixel_size_a=pixel_size_a, ctf=align_options.get("ctf"),
                                ctf_mode=align_options.get("ctf_mode", "apply"),
                                mask_radius_px=align_options.get("mask_radius_px"))
    picked.seconds_per_class = seconds
    picked.class_search = words
    return picked


def decide_classes(results, picked: ClassAlignment, images, references, *, pixel_size_a,
                   ctf=None, ctf_mode="apply", mask_radius_px=None) -> ClassAlignment:
    """``picked`` (the classes' searches, :func:`pick_classes`) with each particle's class
    decided by every map at the pose of its best search score
    (:func:`.common_pose.decide_at_common_pose`), its pose the one found in that class (the
    common pose where that class was not searched)."""
    from .common_pose import decide_at_common_pose

    chosen = picked.alignment
    classes, probability, cc = decide_at_common_pose(
        images, references, chosen.angles_deg, chosen.shifts_px, pixel_size_a=pixel_size_a,
        ctf=ctf, ctf_mode=ctf_mode, mask_radius_px=mask_radius_px)
    again = pick_classes(results, classes=classes, probability=probability)
    again.common_pose_cc = cc
    return again


def pick_classes(results, *, classes=None, probability=None) -> ClassAlignment:
    """Per particle, the class whose alignment (``results[k]``, same particles) scored highest.

    Parameters
    ----------
    results : sequence of AlignmentResult
        One per class, of the same N particles.
    classes, probability : ndarrays of shape (N,), optional
        The classes decided otherwise (:func:`decide_classes`) and their probabilities: each
        particle then takes the pose of that class's search, or that of its best search score
        where that class was not searched (score ``-inf``).

    Returns
    -------
    ClassAlignment
    """
    results = list(results)
    scores = np.stack([np.asarray(r.score, dtype=np.float64) for r in results], axis=1)
    if not all(len(r.score) == scores.shape[0] for r in results):
        raise ValueError("every class's alignment must hold the same particles")
    best = np.argmax(scores, axis=1).astype(np.int64)
    rows = np.arange(len(best))
    if classes is None:
        classes = best
        probability = pose_weights(scores)[rows, classes]
    elif probability is None:
        raise ValueError("pick_classes: classes decided otherwise need their probability")
    classes = np.asarray(classes, dtype=np.int64)
    source = np.where(np.isfinite(scores[rows, classes]), classes, best)
    merged = {}
    for name in _ROW_FIELDS:
        values = [getattr(r, name) for r in results]
        merged[name] = (np.stack([np.asarray(v) for v in values])[source, rows]
                        if all(v is not None for v in values) else None)
    comparisons = [int(r.n_comparisons) for r in results]
    refined = [int(r.n_refine_comparisons) for r in results]
    info = dict(results[0].info, n_classes=len(results),
                seconds=sum(r.info.get("seconds", 0.0) for r in results),
                gallery_seconds=sum(r.info.get("gallery_seconds", 0.0) for r in results))
    for key, name in (("fallback_fraction", "fallback"),
                      ("mean_regions_searched", "n_regions_searched")):
        if key in info and merged[name] is not None:  # of the classes kept, not map 1's
            info[key] = float(np.mean(merged[name]))
    if "significance_fallback_fraction" in info:  # the mean over the classes' searches
        info["significance_fallback_fraction"] = float(np.mean(
            [r.info.get("significance_fallback_fraction", 0.0) for r in results]))
    alignment = replace(results[0], n_comparisons=sum(comparisons),
                        n_refine_comparisons=sum(refined), info=info, **merged)
    return ClassAlignment(classes=classes, probability=probability, scores=scores,
                          alignment=alignment, n_comparisons_per_class=comparisons,
                          n_refine_comparisons_per_class=refined)


def full_rows(part: AlignmentResult | None, rows, n: int) -> AlignmentResult:
    """``part`` (of the particles ``rows``) spread over all ``n`` particles: the others get
    score ``-inf`` (never the best class) and zeros; None (no particle): all of them."""
    def spread(values, fill=0):
        if values is None:
            return None
        values = np.asarray(values)
        out = np.full((n,) + values.shape[1:], fill, dtype=values.dtype)
        out[rows] = values
        return out

    if part is None:
        return AlignmentResult(angles_deg=np.zeros((n, 3)), shifts_px=np.zeros((n, 2)),
                               score=np.full(n, -np.inf), region=np.full(n, -1),
                               n_comparisons=0, fallback=np.zeros(n, bool),
                               n_regions_searched=np.zeros(n, int),
                               significance=np.zeros(n))
    fields = {name: spread(getattr(part, name)) for name in (
        "angles_deg", "shifts_px", "region", "fallback", "n_regions_searched", "significance",
        "n_best_angles_deg", "n_best_shifts_px", "n_best_scores", "n_best_weights")}
    fields["region"] = spread(part.region, -1)
    return replace(part, score=spread(np.asarray(part.score, np.float64), -np.inf), **fields)
