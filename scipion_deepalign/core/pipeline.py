"""DeepAlign end to end in one call: train the region classifier, predict each particle's
regions, align inside them (:func:`run_deepalign`).

The chain behind ``deepalign run`` and ``deepalign demo``; the protocols run the same stages
as separate ``deepalign train`` / ``predict`` / ``align`` steps instead. Training follows
its :class:`~.cnn.config.TrainConfig` (by default one shared network trained from projections
of ``volume``, the particles giving only their noise and CTFs); each stage is one call of its
own module, so any of them can also be run alone. Prediction and alignment report their
progress (:class:`~.runtime.progress.Progress`, INFO lines), training its epochs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from . import cnn  # its training and prediction load Keras when first used
from .align.align import AlignmentResult, align_particles
from .align.search_plan import SearchOptions
from .cnn.config import TrainConfig
from .cnn.model_folder import ModelFolder
from .defaults import (
    CLASS_PRIOR,
    CLASS_PRIORS,
    REFINE,
    REGION_SPACING_DEG,
    TARGET_RESOLUTION,
    TOP_K,
)
from .runtime.progress import Progress
from .symmetry import normalise_symmetry

__all__ = ["PipelineResult", "run_deepalign"]

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What :func:`run_deepalign` produced.

    Attributes
    ----------
    train_report : TrainReport
    centres_deg : ndarray of shape (R, 2)
        Region centres ``(rot, tilt)`` of the model.
    regions : ndarray of shape (N, k) int
        0-based predicted regions, best first.
    probabilities : ndarray of shape (N, k)
    alignment : AlignmentResult
    seconds : dict
        Wall time of each stage (``train``, ``predict``, ``align``).
    classes : ClassAlignment or None
        Each particle's class, with several maps (:mod:`.classes`); None with one.
    pairs : ClassPairs or None
        With several maps, each particle's predicted (class, region) pairs
        (:func:`~.cnn.pairs.select_pairs`), the ones it was searched in.
    top_pairs : tuple of three ndarray of shape (N, k) or None
        With several maps, each particle's ``top_k`` most probable pairs, 0-based classes and
        regions and their probabilities (:func:`~.cnn.pairs.top_pairs`), of which ``pairs``
        are chosen (``deepalign run`` writes them to ``predicted.star``).
    class_fractions : ndarray of shape (K,) or None
        With several maps, each class's fraction of the particles estimated from the
        network's outputs (:func:`~.cnn.joint.estimate_class_fractions`), before alignment,
        whatever ``class_prior``; None with one map.
    """

    train_report: object
    centres_deg: np.ndarray
    regions: np.ndarray
    probabilities: np.ndarray
    alignment: AlignmentResult
    seconds: dict = field(default_factory=dict)
    classes: object = None
    pairs: object = None
    top_pairs: tuple | None = None
    class_fractions: np.ndarray | None = None


def run_deepalign(train_images, train_angles_deg, images, volume, *, model_dir,
                  pixel_size_a, max_shift_px, symmetry="c1", spacing_deg=REGION_SPACING_DEG,
                  top_k=TOP_K,
                  train_config: TrainConfig | None = None, train_shifts_px=None, ctf=None,
                  step_deg=None, target_resolution_a=TARGET_RESOLUTION, device="auto",
                  volume_pixel_size_a=None, ctf_mode="apply", refine=REFINE,
                  search: SearchOptions | None = None, train_ctf=None,
                  retrain: bool = False,
                  class_prior: str = CLASS_PRIOR,
                  class_search: str | None = None) -> PipelineResult:
    """Train the region classifier, then assign poses to ``images``.

    Parameters
    ----------
    train_images : ndarray of shape (M, B, B) or None
        Training particles, already aligned by another method; None with the training
        source ``projections`` (the default; then ``images`` give the noise and CTFs to
        match).
    train_angles_deg : ndarray of shape (M, 3) or None
        Their poses (:mod:`~scipion_deepalign.core.geometry` convention).
    images : ndarray of shape (N, B, B)
        Particles to align (may include the training ones).
    volume : ndarray of shape (B, B, B), or a sequence of K such maps
        Reference map on the particles' box and pixel size. Several maps are several classes
        (:mod:`.classes`): one network learns class and region from projections of every map
        (:mod:`.cnn.joint`; the training source must be ``projections``), the classes'
        fractions are estimated from its outputs (``class_fractions``; the prior of the pairs
        with ``class_prior`` "estimated"), each particle is aligned against the maps of its
        predicted (class, region) pairs only, in those regions, and takes the class of its
        best score (``classes``, :func:`~.classes.regional.align_class_pairs`); ``regions``
        and ``probabilities`` are then the regions whatever the class, and
        ``volume_pixel_size_a`` is one per map.
    model_dir : str or Path
        Model folder; an interrupted run continues, finished regions are not retrained, and
        a model trained for the same map, geometry, CTF range and options is reused without
        training (``train_report.model_reused``); one trained for other data is refused
        (:class:`~.cnn.model_folder.ModelMismatch`) unless ``retrain``.
    pixel_size_a : float
    max_shift_px : float
        Largest shift searched, original pixels.
    symmetry, spacing_deg : str, float
        Point group (normalised here once and passed down) and region spacing.
    top_k : int
        Regions predicted per particle: all are searched, or, with
        ``search.probability_mass``, as many as that mass needs (with several maps: the
        (class, region) pairs, at most ``search.max_regions``).
    train_config : TrainConfig, optional
        Its ``pixel_size_a`` is filled in when missing.
    train_shifts_px : ndarray of shape (M, 2), optional
    ctf : CTFParams, optional
        CTF of ``images``.
    step_deg, target_resolution_a, device, volume_pixel_size_a, ctf_mode, refine, search
        As in :func:`~scipion_deepalign.core.align.align.align_particles`.
    train_ctf : CTFParams, optional
        CTFs of ``train_images``.
    retrain : bool
        Train over a model already in ``model_dir`` (:func:`~.cnn.train.train_regions`).
    class_search : {"each", "mean"}, optional
        With several maps: each class's pairs searched in its map, or one search against the
        maps' mean (:func:`~.classes.regional.align_class_pairs`); default
        :data:`~.defaults.CLASS_SEARCH`.
    class_prior : {"uniform", "estimated"}
        With several maps, the class prior the (class, region) pairs are chosen under: the
        network's outputs as they are (trained with classes drawn uniformly), or reweighted
        by the classes' fractions estimated from them
        (:func:`~.cnn.joint.estimate_class_fractions`; why uniform is the default:
        :data:`~.defaults.CLASS_PRIOR`).

    Returns
    -------
    PipelineResult
    """
    symmetry = normalise_symmetry(symmetry)
    if class_prior not in CLASS_PRIORS:
        raise ValueError(f"class_prior must be one of {', '.join(CLASS_PRIORS)}, got "
                         f"{class_prior!r}")
    maps = [volume] if np.ndim(volume) == 3 else list(volume)
    reference = maps[0]
    if len(maps) > 1:  # the maps' checks before any training; the network learns them all
        from .classes import class_references

        reference = class_references(maps, pixel_sizes_a=volume_pixel_size_a,
                                     pixel_size_a=pixel_size_a)
    config = train_config or TrainConfig(pixel_size_a=pixel_size_a)
    if config.pixel_size_a is None:
        config.pixel_size_a = pixel_size_a
    seconds = {}
    start = time.perf_counter()
    if train_images is None:  # projections only: the particles give noise and CTFs
        train_images, train_angles_deg, train_shifts_px, train_ctf = images, None, None, ctf
    report = cnn.train_regions(train_images, train_angles_deg, out_dir=model_dir,
                               symmetry=symmetry, spacing_deg=spacing_deg, config=config,
                               shifts_px=train_shifts_px, reference=reference, ctf=train_ctf,
                               retrain=retrain)
    seconds["train"] = time.perf_counter() - start
    if report.model_reused:
        log.info("model reused from %s (not retrained; checked in %.1f s)", model_dir,
                 seconds["train"])
    else:
        log.info("trained the %s network(s) of %d regions (%d reused) in %.0f s",
                 report.network, report.n_regions, len(report.reused), seconds["train"])

    start = time.perf_counter()
    regions, probabilities, pairs, top, fractions = _predict(
        images, model_dir, pixel_size_a=pixel_size_a, top_k=top_k, n_classes=len(maps),
        search=search, class_prior=class_prior)
    seconds["predict"] = time.perf_counter() - start
    centres, _, _ = ModelFolder(model_dir).read_regions()

    start = time.perf_counter()
    options = dict(pixel_size_a=pixel_size_a, max_shift_px=max_shift_px, ctf=ctf,
                   symmetry=symmetry, centres_deg=centres, step_deg=step_deg,
                   target_resolution_a=target_resolution_a, device=device,
                   ctf_mode=ctf_mode, refine=refine, search=search)
    classes = None
    with Progress(len(images), "align") as progress:
        if len(maps) == 1:
            alignment = align_particles(images, maps[0], volume_pixel_size_a=volume_pixel_size_a,
                                        region_hints=regions,
                                        region_probabilities=probabilities,
                                        progress=progress, **options)
        else:
            from .classes import align_class_pairs

            classes = align_class_pairs(images, maps, pairs,
                                        volume_pixel_sizes_a=volume_pixel_size_a,
                                        class_search=class_search,
                                        progress=progress, **options)
            alignment = classes.alignment
    seconds["align"] = time.perf_counter() - start
    return PipelineResult(train_report=report, centres_deg=centres, regions=regions,
                          probabilities=probabilities, alignment=alignment, seconds=seconds,
                          classes=classes, pairs=pairs, top_pairs=top,
                          class_fractions=fractions)


def _predict(images, model_dir, *, pixel_size_a, top_k, n_classes, search, class_prior):
    """``(regions, probabilities, pairs, top, fractions)``: the top-k regions (whatever the
    class) and, with several classes, the (class, region) pairs the search takes, the top-k
    pairs and the classes' estimated fractions (None with one class). With ``class_prior``
    "estimated" the regions and pairs come from the outputs reweighted by the fractions
    (:func:`~.cnn.joint.estimate_class_fractions`)."""
    chunk = cnn.progress_chunk(len(images))
    with Progress(len(images), "predict") as progress:
        if n_classes == 1:
            regions, probabilities = cnn.predict_regions(
                images, model_dir, top_k=top_k, pixel_size_a=pixel_size_a, chunk_size=chunk,
                progress=progress)
            return regions, probabilities, None, None, None
        joint = cnn.predict_probabilities(images, model_dir, pixel_size_a=pixel_size_a,
                                          chunk_size=chunk, progress=progress)
    from .cnn.joint import estimate_class_fractions

    fractions, adjusted = estimate_class_fractions(joint, n_classes)
    if class_prior == "estimated":  # the data's class prior, not the uniform one of training
        joint = adjusted
    regions, probabilities = cnn.top_k_regions(cnn.region_marginal(joint, n_classes), top_k)
    top = cnn.top_pairs(joint, n_classes, top_k)  # written; search_top_pairs reads them back
    pairs = cnn.search_pairs(joint, n_classes, search, top_k=top_k)
    log.info("predicted %.2f (class, region) pairs per particle, %.2f classes",
             float(np.mean((pairs.classes >= 0).sum(axis=1))),
             float(np.mean([len(set(row[row >= 0])) for row in pairs.classes])))
    return regions, probabilities, pairs, top, fractions
