"""One search for every class: the poses found against the classes' mean map, the classes ranked
at that pose, the pose then searched again in the best classes' own maps, in one region.

Where the classes' maps share most of the structure (a subunit bound or not, a domain turned by
a few degrees), a particle's pose is set by what they share, and every class's own search finds
nearly the same pose: K searches buy K times the cost for one answer. With ``class_search
"mean"`` (:data:`~..defaults.CLASS_SEARCHES`) the particles are searched once, against the mean
of the class references (:func:`.references.class_references` scales them alike), in the
regions of all their predicted (class, region) pairs or globally, with the same windows,
significance fallback and refinement as one map's search; every class's map is then compared
with the particle at that pose (:func:`.common_pose.decide_at_common_pose`), which ranks the
classes. The mean map blurs what differs, so its pose is biased towards neither class and a little
off for both, and where many classes differ in many places the class it points to is wrong a
little more often: each particle is searched again in the maps of its
:data:`~..defaults.CLASS_MEAN_SECOND_CLASSES` classes that correlate best at the mean map's pose,
in the one region (with its window) of that pose; the class is decided again at the best of
those poses (as :func:`.assign.decide_classes` does after K searches), which gives its
probability, and the particle keeps the pose found in the class decided. The cost is about
1 + 2 / (regions a particle searches) searches and 2 K projections a particle, whatever K.

The mean map stands for the classes only where they share most of their structure: on the
tests' phantom pair whose maps correlate 0.79 (a third of the mass removed) a particle in eight
was classed wrong where each map's own search classed all right; at 0.93 the classes and the
median pose error were those of each map's search (docs/benchmarks_classes.md, "One search for
every class").
``class_search "auto"`` takes it only where every pair of references correlates at least
:data:`~..defaults.CLASS_MEAN_MIN_CORRELATION` (:func:`choose_class_search`).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .. import defaults
from ..align.align import align_particles
from ..align.search_plan import SearchOptions
from ..regions import assign_regions, region_centres_deg
from ..runtime.progress import share
from ..runtime.stacks import RowStack
from .assign import ClassAlignment, decide_classes, full_rows, pick_classes

__all__ = ["mean_map", "align_at_mean_map", "choose_class_search"]


def mean_map(references) -> np.ndarray:
    """The mean of the class references ``(K, B, B, B)``, float32."""
    return np.mean(np.asarray(references, dtype=np.float64), axis=0).astype(np.float32)


def choose_class_search(class_search, references) -> tuple:
    """``("each" or "mean", the choice in words)``: ``class_search`` (None:
    :data:`~..defaults.CLASS_SEARCH`), ``"auto"`` resolved by the references' least pairwise
    correlation against :data:`~..defaults.CLASS_MEAN_MIN_CORRELATION` (the words say which
    and why, for the run's summary); anything else refused."""
    from .class_maps import map_correlation

    chosen = defaults.CLASS_SEARCH if class_search is None else class_search
    if chosen not in defaults.CLASS_SEARCHES:
        raise ValueError(f"class search must be one of {', '.join(defaults.CLASS_SEARCHES)}, "
                         f"got {chosen!r}")
    if len(references) < 2:
        return "each", "one map"
    if chosen != "auto":
        return chosen, chosen
    least = float(map_correlation(references).min())
    gate = defaults.CLASS_MEAN_MIN_CORRELATION
    if least >= gate:
        return "mean", f"mean (auto: every two maps correlate at least {least:.3f} >= {gate:g})"
    return "each", f"each (auto: two maps correlate only {least:.3f} < {gate:g})"


def align_at_mean_map(images, references, *, pixel_size_a, target_resolution_a, ctf=None,
                      progress=None, centres_deg=None, **align_options) -> ClassAlignment:
    """Poses against :func:`mean_map` of ``references`` (one
    :func:`~..align.align.align_particles` with ``align_options``: region hints or global),
    every class's map compared with each particle at its pose, its pose searched again in its
    best classes' maps in the region of the first pose, and the class decided at the best of
    those poses (module docstring).

    Parameters
    ----------
    centres_deg : ndarray of shape (R, 2), optional
        The region centres of ``region_hints`` (in ``align_options``); without them, those of
        :data:`~..defaults.REGION_SPACING_DEG` make the second search's regions.

    Returns
    -------
    ClassAlignment
        ``scores[i, k]``: the second search's score in the classes searched again, ``-inf``
        in the others (no class was searched on its own over all its regions); the
        comparisons lists hold the two searches' sums (``mean_map_search`` True).
    """
    from .common_pose import decide_at_common_pose

    t0 = time.perf_counter()
    n, k = len(images), len(references)
    found = align_particles(images, mean_map(references), pixel_size_a=pixel_size_a,
                            target_resolution_a=target_resolution_a, ctf=ctf,
                            centres_deg=centres_deg, progress=share(progress, 0.8),
                            **align_options)
    decide = dict(pixel_size_a=pixel_size_a, ctf=ctf,
                  ctf_mode=align_options.get("ctf_mode", "apply"),
                  mask_radius_px=align_options.get("mask_radius_px"))
    _, _, cc_first = decide_at_common_pose(images, references, found.angles_deg,
                                           found.shifts_px, **decide)
    symmetry = align_options.get("symmetry", "c1")
    centres = (region_centres_deg(defaults.REGION_SPACING_DEG, symmetry)
               if centres_deg is None else centres_deg)
    region, _ = assign_regions(found.angles_deg, centres, symmetry)
    options = {key: value for key, value in align_options.items()
               if key not in ("region_hints", "region_probabilities", "search")}
    search = align_options.get("search") or SearchOptions()
    one_region = replace(search, probability_mass=None, max_regions=None,
                         fallback_probability=0.0, fallback_significance=0.0)
    searched = _best_classes(cc_first, defaults.CLASS_MEAN_SECOND_CLASSES)
    again_share = share(progress, 0.2 / searched.shape[1])  # every particle counted once
    results = []
    for c in range(k):
        rows = np.flatnonzero((searched == c).any(axis=1))
        again = None if not len(rows) else align_particles(
            RowStack(images, rows), references[c], pixel_size_a=pixel_size_a,
            target_resolution_a=target_resolution_a,
            ctf=None if ctf is None else ctf.subset(rows), region_hints=region[rows, None],
            centres_deg=centres, search=one_region, progress=again_share, **options)
        results.append(full_rows(again, rows, n))
    # the class decided at the best of those poses, each particle in its class's (as after
    # K searches); the first search's regions, fallback and info stay
    decided = decide_classes(results, pick_classes(results), images, references, **decide)
    found.replace_rows(np.arange(n), decided.alignment)
    found.info = dict(found.info, n_classes=k, class_search="mean",
                      class_second_search_comparisons=decided.alignment.n_comparisons)
    return replace(decided, alignment=found, n_comparisons_per_class=[int(found.n_comparisons)],
                   n_refine_comparisons_per_class=[int(found.n_refine_comparisons)],
                   seconds_per_class=[time.perf_counter() - t0], mean_map_search=True)


def _best_classes(cc, count) -> np.ndarray:
    """Each particle's ``count`` classes of highest correlation ``cc`` (N, K), best first."""
    return np.argsort(-np.asarray(cc), axis=1, kind="stable")[:, :max(1, min(count, cc.shape[1]))]

