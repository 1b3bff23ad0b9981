"""3D classification by iteration: align against the class maps, assign, reconstruct, filter.

Each iteration of :func:`classify`:

1. aligns every particle against the K current maps (:func:`.assign.align_classes`: a global
   search of each map, at the resolution the maps support; with a focus mask the maps are
   multiplied by it first, :func:`.class_maps.focus_maps`, so the classes are compared on
   the masked part only) and gives each particle the class of its best score;
2. reconstructs each class's half maps from its particles with their new poses and CTFs,
   and low-passes the class map where the halves' FSC falls below
   :data:`~..defaults.CLASSIFY_FILTER_FSC` (:func:`.class_maps.reconstruct_class_maps`): the
   next iteration's references. A class left without particles in both halves keeps its
   previous map (its resolution is None, the report lists it).

With a ``network`` (:class:`.network.ClassNetwork`, ``deepalign classify --cnn``) step 1
searches each particle in its predicted (class, region) pairs only
(:func:`.regional.align_class_pairs`) instead of globally in every map: the first network is
trained on the starting maps, each later one fine-tuned from the previous iteration's on
projections of the new filtered maps (:mod:`.network`); the report gives each iteration's
training seconds, epochs, the model it was fine-tuned from, and the comparisons per particle
(those of the global search too).

It stops after ``iterations`` or, from the second iteration on, as soon as fewer than
``stop_fraction`` (:data:`~..defaults.CLASSIFY_STOP_FRACTION`) of the particles changed class.

``n_classes=K`` with one map starts with every class from that map: the first iteration
aligns every particle against it and draws the first classes by ``first_split``
(:data:`~..defaults.CLASSIFY_START`): ``"variance"`` splits the particles by how their
residuals against the map vary (:func:`.split.variance_split`), ``"random"`` puts each in a
random class (balanced; RELION's start, which on the benchmark's mixtures never found the
classes); each class's map is then reconstructed from its particles. Without a focus mask,
the later iterations of a one-map start compare the particles with the class maps confined
to where they differ most (:func:`.class_maps.difference_focus`,
:data:`~..defaults.CLASSIFY_FOCUS_FRACTION` of the box): against the whole maps the hard
assignment keeps the first classes, errors included. The particles' halves are drawn once
(``seed``) and kept for the whole run. ``start`` resumes after a finished iteration.

What a result means: the class probability (:mod:`.assign`, :mod:`.common_pose`) says how
much better the particle fits its class's map than the others, not whether the maps are
right, and a homogeneous set split in K classes converges too, with confident probabilities,
because each particle joins the map its own noise helped make. Compare the class maps' correlation
(:meth:`ClassIteration.map_correlation`) with the classes' half-map correlations: two classes
of one structure correlate about as well as a class's half maps
(``tests/core/classes/test_iterate.py`` gives the numbers measured).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..defaults import (
    CLASSIFY_FILTER_FSC,
    CLASSIFY_FOCUS_FRACTION,
    CLASSIFY_ITERATIONS,
    CLASSIFY_SPLIT_RESOLUTION,
    CLASSIFY_START,
    CLASSIFY_STARTS,
    CLASSIFY_STOP_FRACTION,
)
from ..judge.reconstruct import half_subsets
from ..runtime.stacks import stack_shape
from .assign import align_classes
from .class_maps import (
    ClassMaps,
    difference_focus,
    focus_maps,
    map_correlation,
    reconstruct_class_maps,
    sphere_weight,
)
from .regional import align_class_pairs
from .split import variance_split

__all__ = ["ClassState", "ClassIteration", "Classification", "classify", "changed_fraction",
           "alike_classes"]


@dataclass
class ClassState:
    """What the next iteration starts from (a finished iteration, or the start).

    Attributes
    ----------
    iteration : int
        Iterations finished (0 at the start).
    classes : ndarray of shape (N,) int64 or None
        0-based class of each particle after it (None at the start).
    maps : ndarray of shape (K, B, B, B)
        The references of the next iteration.
    changed_fraction : float or None
        Fraction of the particles whose class changed in it (None: no previous classes).
    """

    iteration: int
    classes: np.ndarray | None
    maps: np.ndarray
    changed_fraction: float | None = None


@dataclass
class ClassIteration(ClassState):
    """One iteration done: its state plus the alignment and the class maps' numbers.

    Attributes
    ----------
    probability : ndarray of shape (N,)
        Weight of each particle's class among the K (:mod:`.assign`; 1/K in a random start).
    alignment : AlignmentResult
        Each particle's pose in its class.
    class_maps : ClassMaps
    subsets : ndarray of shape (N,) of 1 and 2
        Each particle's half (the same in every iteration; RELION's ``rlnRandomSubset``).
    seconds : float
        The whole iteration (the network's training included).
    comparisons_per_particle : float or None
        Projection comparisons of the search per particle, over all the classes.
    network : NetworkStep or None
        The iteration's network (:mod:`.network`); None: the global search.
    split : dict or None
        How the first classes of a one-map start were drawn (:meth:`.split.VarianceSplit.report`,
        or ``{"kind": "random"}``); None in every other iteration.
    focus_fraction : float
        The particles were compared with the class maps confined to this fraction of the box
        where they differ most (:func:`.class_maps.difference_focus`); 0: the whole maps.
    """

    probability: np.ndarray = None
    alignment: object = None
    class_maps: ClassMaps = None
    subsets: np.ndarray = None
    seconds: float = 0.0
    comparisons_per_particle: float | None = None
    network: object = None
    split: dict | None = None
    focus_fraction: float = 0.0

    def class_sizes(self) -> np.ndarray:
        """Particles per class, ``(K,)``."""
        return np.bincount(self.classes, minlength=len(self.maps))

    def map_correlation(self) -> np.ndarray:
        """Correlation of every pair of class maps inside the particle's sphere, ``(K, K)``:
        near the classes' half-map correlations, the classes hardly differ (a homogeneous
        set split in two; the class probability does not tell it, see the module docstring)."""
        return map_correlation(self.maps, sphere_weight(self.maps.shape[-1]))

    def alike_classes(self) -> list:
        """``(k, m, map correlation, half-map correlation)`` (classes 1-based) of every pair
        of non-empty classes whose maps correlate at least as well as the less consistent of
        their own half maps: one structure split in two, however confident the class
        probability looks (the negative control, docs/benchmarks_classes.md)."""
        return alike_classes(self.report())

    def report(self) -> dict:
        """The iteration's numbers, JSON-ready (classes 1-based, as ``rlnClassNumber``)."""
        maps = self.class_maps
        return {"iteration": self.iteration, "class_sizes": self.class_sizes().tolist(),
                "changed_fraction": self.changed_fraction,
                "resolution_0143_a": maps.resolution_0143_a,
                "resolution_05_a": maps.resolution_05_a, "filter_a": maps.filter_a,
                "kept_previous_map": [k + 1 for k, kept in enumerate(maps.kept_previous)
                                      if kept],
                "median_class_probability": float(np.median(self.probability)),
                "half_map_correlation": maps.half_correlation,
                "map_correlation": np.round(self.map_correlation(), 4).tolist(),
                "comparisons_per_particle": self.comparisons_per_particle,
                "network": None if self.network is None else self.network.report(),
                "first_split": self.split, "focus_fraction": self.focus_fraction,
                "seconds": round(self.seconds, 3)}


@dataclass
class Classification:
    """The iterations :func:`classify` ran (after ``start``) and why it stopped.

    Attributes
    ----------
    iterations : list of ClassIteration
    stopped : str
        ``"converged"`` (fewer than ``stop_fraction`` changed class) or ``"iterations"``.
    """

    iterations: list
    stopped: str


def alike_classes(report: dict) -> list:
    """:meth:`ClassIteration.alike_classes` from an iteration's report (``classify.json``)."""
    corr, halves = report["map_correlation"], report["half_map_correlation"]
    sizes = report["class_sizes"]
    out = []
    for k in range(len(sizes)):
        for m in range(k + 1, len(sizes)):
            if (sizes[k] and sizes[m] and halves[k] is not None and halves[m] is not None
                    and corr[k][m] >= min(halves[k], halves[m])):
                out.append((k + 1, m + 1, corr[k][m], min(halves[k], halves[m])))
    return out


def changed_fraction(previous, classes) -> float | None:
    """Fraction of the particles whose class differs from ``previous`` (None: no previous)."""
    if previous is None:
        return None
    return float(np.mean(np.asarray(previous) != np.asarray(classes)))


def classify(images, volumes, *, pixel_size_a: float, n_classes: int | None = None,
             iterations: int = CLASSIFY_ITERATIONS,
             stop_fraction: float = CLASSIFY_STOP_FRACTION, mask=None, ctf=None,
             symmetry: str = "c1", seed: int = 0, start: ClassState | None = None,
             on_iteration=None, progress=None, network=None,
             filter_fsc: float = CLASSIFY_FILTER_FSC, first_split: str = CLASSIFY_START,
             split_resolution_a: float = CLASSIFY_SPLIT_RESOLUTION,
             focus_fraction: float | None = None, **align_options) -> Classification:
    """Classify the particles by iteration (see the module docstring).

    Parameters
    ----------
    images : array_like of shape (N, B, B)
        The particles (an array, a memmap or a loader with ``shape`` and ``[rows]``).
    volumes : sequence of ndarray of shape (B, B, B)
        One starting map per class (K >= 2), or one map with ``n_classes``.
    pixel_size_a : float
    n_classes : int, optional
        K >= 2 classes started from the one map of ``volumes`` (a random first assignment).
    iterations : int
        Most iterations, counting those before ``start``.
    stop_fraction : float
        Stop once fewer than this fraction of the particles change class.
    mask : ndarray of shape (B, B, B), optional
        Focus mask (:func:`.class_maps.check_mask`): the classes are compared on it only.
    ctf : CTFParams, optional
        Used by the search and by the reconstructions.
    symmetry : str
    seed : int
        Seed of the halves and of a random start.
    start : ClassState, optional
        Resume after this finished iteration (its maps, classes and changed fraction).
    on_iteration : callable, optional
        Called with each :class:`ClassIteration` when it is done (e.g. to write it).
    progress : callable, optional
        Called with the particles aligned (each iteration aligns N).
    network : ClassNetwork, optional
        Search each particle in the (class, region) pairs of a network trained, then
        fine-tuned, on the class maps (:mod:`.network`); None: globally in every map.
    filter_fsc : float
        Each class map is low-passed where its half maps' FSC falls below it
        (:func:`.class_maps.reconstruct_class_maps`).
    first_split : {"variance", "random"}
        How the first classes of a one-map start (``n_classes``) are drawn (module docstring).
    split_resolution_a : float
        The variance split compares the particles up to this resolution
        (:func:`.split.variance_split`).
    focus_fraction : float, optional
        Compare the particles with the class maps confined to this fraction of the box where
        they differ most (:func:`.class_maps.difference_focus`; 0: the whole maps). None:
        :data:`~..defaults.CLASSIFY_FOCUS_FRACTION` for a one-map start without ``mask``,
        else 0.
    **align_options
        Every other keyword of :func:`~..align.align.align_particles` (``max_shift_px``,
        ``step_deg``, ``target_resolution_a``, ``device``, ...) except region hints.

    Returns
    -------
    Classification

    Raises
    ------
    ValueError
        Fewer than 2 classes, ``n_classes`` with several maps, a bad ``iterations`` or
        ``stop_fraction``.
    """
    maps = np.stack([np.asarray(v, dtype=np.float32) for v in volumes])
    if n_classes is not None and len(maps) != 1:
        raise ValueError(f"n_classes starts every class from one map; {len(maps)} maps given")
    k = len(maps) if n_classes is None else int(n_classes)
    if k < 2:
        raise ValueError(f"a classification needs at least 2 classes, got {k}")
    if not int(iterations) >= 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if not 0 <= stop_fraction < 1:
        raise ValueError(f"stop_fraction must be in [0, 1), got {stop_fraction}")
    if not 0 < filter_fsc < 1:
        raise ValueError(f"filter_fsc must be in (0, 1), got {filter_fsc}")
    if first_split not in CLASSIFY_STARTS:
        raise ValueError(f"first_split must be one of {', '.join(CLASSIFY_STARTS)}, "
                         f"got {first_split!r}")
    if focus_fraction is None:
        focus_fraction = CLASSIFY_FOCUS_FRACTION if n_classes and mask is None else 0.0
    if not 0 <= focus_fraction < 1 or (focus_fraction and mask is not None):
        raise ValueError("focus_fraction must be in [0, 1) and 0 with a focus mask, got "
                         f"{focus_fraction}")
    n = stack_shape(images)[0]
    subsets = half_subsets(n, seed=seed)
    common = dict(pixel_size_a=pixel_size_a, ctf=ctf, symmetry=symmetry, mask=mask,
                  subsets=subsets, progress=progress, align_options=align_options,
                  filter_fsc=filter_fsc)
    state = start or ClassState(0, None, np.repeat(maps, k, axis=0) if n_classes else maps)
    done = []
    while state.iteration < iterations:
        if state.changed_fraction is not None and state.changed_fraction < stop_fraction:
            return Classification(done, "converged")
        if state.iteration == 0 and n_classes:
            state = _one_map_start(images, maps[0], k, seed=seed, kind=first_split,
                                   split_resolution_a=split_resolution_a, **common)
        else:
            state = _iteration(images, state, network=network, focus_fraction=focus_fraction,
                               **common)
        done.append(state)
        if on_iteration is not None:
            on_iteration(state)
    converged = state.changed_fraction is not None and state.changed_fraction < stop_fraction
    return Classification(done, "converged" if converged else "iterations")


def _iteration(images, state, *, network, pixel_size_a, ctf, symmetry, mask, subsets, progress,
               align_options, filter_fsc, focus_fraction) -> ClassIteration:
    """Align against ``state.maps`` (globally, or in the network's pairs; focused by the
    mask or on where they differ), assign, reconstruct and filter the class maps."""
    t0 = time.perf_counter()
    step = None
    compared = (difference_focus(state.maps, fraction=focus_fraction, pixel_size_a=pixel_size_a)
                if focus_fraction else focus_maps(state.maps, mask))
    if network is None:
        found = align_classes(images, compared, pixel_size_a=pixel_size_a,
                              ctf=ctf, symmetry=symmetry, progress=progress, **align_options)
    else:
        step = network.predict_pairs(images, state.maps, iteration=state.iteration + 1,
                                     pixel_size_a=pixel_size_a, symmetry=symmetry, ctf=ctf)
        search = network.search
        found = align_class_pairs(images, compared, step.pairs,
                                  pixel_size_a=pixel_size_a, centres_deg=step.centres_deg,
                                  search=search, ctf=ctf, symmetry=symmetry,
                                  progress=progress, **align_options)
    done = _finish(images, state, found.classes, found.probability, found.alignment, t0,
                   pixel_size_a=pixel_size_a, ctf=ctf, symmetry=symmetry, subsets=subsets,
                   comparisons=found.comparisons_per_particle(), network=step,
                   filter_fsc=filter_fsc)
    done.focus_fraction = float(focus_fraction)
    return done


def _one_map_start(images, volume, k, *, seed, kind, split_resolution_a, pixel_size_a, ctf,
                   symmetry, mask, subsets, progress, align_options,
                   filter_fsc) -> ClassIteration:
    """The first iteration from one map: poses against it, the first classes by ``kind``
    (the variance split, its directions inside the focus mask, or at random, balanced)."""
    t0 = time.perf_counter()
    focused = focus_maps(volume[None], mask)
    found = align_classes(images, focused, pixel_size_a=pixel_size_a, ctf=ctf,
                          symmetry=symmetry, progress=progress, **align_options)
    n, aligned = len(found.classes), found.alignment
    if kind == "variance":
        split = variance_split(images, volume, aligned.angles_deg, k=k,
                               pixel_size_a=pixel_size_a, shifts_px=aligned.shifts_px, ctf=ctf,
                               symmetry=symmetry, seed=seed, mask=mask,
                               resolution_a=split_resolution_a)
        classes, report = split.classes, split.report()
    else:
        classes = (np.random.default_rng([seed, 2]).permutation(n) % k).astype(np.int64)
        report = {"kind": "random"}
    start = ClassState(0, None, np.repeat(volume[None], k, axis=0))
    done = _finish(images, start, classes, np.full(n, 1.0 / k), aligned, t0,
                   pixel_size_a=pixel_size_a, ctf=ctf, symmetry=symmetry, subsets=subsets,
                   comparisons=found.comparisons_per_particle(), filter_fsc=filter_fsc)
    done.split = report
    return done


def _finish(images, state, classes, probability, alignment, t0, *, pixel_size_a, ctf,
            symmetry, subsets, filter_fsc, comparisons=None, network=None) -> ClassIteration:
    maps = reconstruct_class_maps(images, classes, alignment.angles_deg, previous=state.maps,
                                  subsets=subsets, shifts_px=alignment.shifts_px, ctf=ctf,
                                  pixel_size_a=pixel_size_a, symmetry=symmetry,
                                  filter_fsc=filter_fsc)
    return ClassIteration(iteration=state.iteration + 1, classes=classes, maps=maps.maps,
                          changed_fraction=changed_fraction(state.classes, classes),
                          probability=probability, alignment=alignment, class_maps=maps,
                          subsets=subsets, seconds=time.perf_counter() - t0,
                          comparisons_per_particle=comparisons, network=network)
