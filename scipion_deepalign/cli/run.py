"""``deepalign run``: the whole method in one go, train -> predict -> align.

Writes into ``--out DIR``:

* ``model/`` -- the network (:func:`scipion_deepalign.core.cnn.train_regions`), trained by
  default from projections of ``--volume`` (no ``--train`` needed) or from the aligned
  ``--train`` particles; an interrupted run resumes where it stopped, and a model already
  there that was trained for the same map, pixel size, box, symmetry, spacing, CTF range
  and options is reused without training (a second data set: "train once, align many");
  one trained for other data is refused, naming what differs (``--retrain`` trains over it);
* ``predicted.star`` -- ``--particles`` with the columns of ``deepalign predict`` (top-k
  1-based regions of ``model/regions.star`` and their probabilities);
* ``aligned.star`` -- the same with the poses found by correlation inside the windows of
  those regions (:func:`scipion_deepalign.core.align.align.align_particles`, options of
  :class:`~scipion_deepalign.core.align.search_plan.SearchOptions`) and the columns of
  ``deepalign align``. Column names: :mod:`scipion_deepalign.core.io.columns`.

Several ``--volume`` maps are several classes (:mod:`scipion_deepalign.core.classes`): one
network learns the class and the region from projections of every map
(:mod:`scipion_deepalign.core.cnn.joint`), each particle is aligned against the maps of its
predicted (class, region) pairs only, inside those regions (the summary gives the classes'
fractions estimated from the network's outputs beside those assigned; ``--class-prior
estimated`` chooses the pairs under the estimated fractions), and ``aligned.star`` gets
``rlnClassNumber`` (1-based, the i-th ``--volume``) and its probability;
``predicted.star`` holds the regions whatever the class and the top-k (class, region) pairs
(the columns of ``deepalign predict``; ``deepalign align --model DIR/model --volume A --volume
B`` searches them again as run does).
"""
from __future__ import annotations

import argparse
import logging
import os

import numpy as np

from ..core import defaults
from ..core.io import columns
from .classes import read_class_maps, summarise_classes, write_class_columns
from .common import (
    CLIError,
    add_particle_args,
    check_choice,
    check_file_exists,
    check_positive,
    check_symmetry,
    ensure_out_dir,
    lazy_particles_images,
    positive_float,
    positive_int,
    read_particles,
)
from .shared_options import (
    add_class_search_arg,
    add_region_search_args,
    add_schedule_args,
    add_search_args,
    add_target_resolution_arg,
    model_mismatch_error,
    search_options,
    summarise_alignment,
    summarise_network_input,
    summarise_training,
    write_alignment_columns,
)
from .summary import Summary, spread

log = logging.getLogger("deepalign")

OUTPUTS = {"model": "model", "predicted": "predicted.star", "aligned": "aligned.star"}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", default=None, metavar="TRAIN.star",
                        help="particles with known poses to train on (not needed with "
                             "--training-source projections)")
    parser.add_argument("--particles", required=True, metavar="ALL.star",
                        help="particles to align")
    parser.add_argument("--volume", required=True, action="append", metavar="REF.mrc",
                        help="reference map; repeat it for several classes (one network "
                             "learns the class and the region from projections of each)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    parser.add_argument("--spacing", type=positive_float, default=defaults.REGION_SPACING_DEG,
                        metavar="DEG", help="angular spacing of the region centres; "
                        "default %(default)g")
    parser.add_argument("--top-k", type=positive_int, default=defaults.TOP_K, metavar="K",
                        help="regions predicted per particle (written to predicted.star); "
                             "all are searched unless --probability-mass picks fewer; at "
                             "most the regions of --spacing; default %(default)d")
    add_schedule_args(parser)
    add_target_resolution_arg(parser, training=True, search=True)
    add_search_args(parser)
    add_region_search_args(parser)
    add_class_search_arg(parser)
    parser.add_argument("--class-prior", default=defaults.CLASS_PRIOR,
                        choices=defaults.CLASS_PRIORS,
                        help="with several --volume maps, the class prior each particle's "
                             "(class, region) pairs are chosen under: the network's outputs as "
                             "trained (classes drawn uniformly), or reweighted by the classes' "
                             "fractions estimated from them (always estimated and reported); "
                             "default %(default)s")
    parser.add_argument("--seed", type=int, default=0)
    add_particle_args(parser)


def _check_options(args):
    """The cheap checks, before anything is read: ``(search, symmetry, n_regions, top_k)``."""
    if args.train is None and args.training_source != "projections":
        raise CLIError(f"--training-source {args.training_source} needs --train TRAIN.star "
                       "(aligned particles); without it use --training-source projections")
    if len(args.volume) > 1 and args.training_source != "projections":
        raise CLIError(f"several --volume maps train from projections of each map: use "
                       f"--training-source projections, not {args.training_source}")
    if args.train is not None:
        check_file_exists(args.train, "--train")
    check_file_exists(args.particles, "--particles")
    for path in args.volume:
        check_file_exists(path, "--volume")
    check_choice(args.device, defaults.DEVICES, "--device")
    check_positive(args.max_shift, "--max-shift", allow_zero=True)
    search = search_options(args)
    from ..core.cnn.checks import check_regions

    symmetry = check_symmetry(args.symmetry)
    try:  # the rules of deepalign train and of the core
        n_regions, _ = check_regions(args.spacing, symmetry, spacing_name="--spacing")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    top_k = max(args.top_k, search.max_regions or 0) if search.probability_mass else args.top_k
    # a most: every output of the network where it has fewer (with several maps, the
    # (class, region) pairs, so that the pairs written are the pairs searched)
    return search, symmetry, n_regions, min(top_k, n_regions * max(1, len(args.volume or [])))


def _read_star_inputs(args):
    """The particles, the training particles and the maps, checked against each other."""
    particles = read_particles(args, args.particles)
    train = particles if args.train is None else read_particles(args, args.train, "--train")
    if args.train is not None and not train.has_poses:
        raise CLIError(f"--train {args.train}: the particles have no poses (rlnAngleRot/...)")
    if train.box_px != particles.box_px:
        raise CLIError(f"--train box {train.box_px} px differs from --particles box "
                       f"{particles.box_px} px")
    volumes, volume_pixels = read_class_maps(args.volume, box_px=particles.box_px,
                                             pixel_size_a=particles.pixel_size_a)
    return particles, train, volumes, volume_pixels


def _train_config(args, particles):
    from ..core.cnn.config import TrainConfig
    from ..core.resolution import training_input

    try:
        resolution, box = training_input(args.target_resolution, particles.box_px)
        return TrainConfig(pixel_size_a=particles.pixel_size_a, target_resolution_a=resolution,
                           target_box_px=box, epochs=args.epochs,
                           images_per_epoch=args.images_per_epoch,
                           noise_ramp_epochs=args.noise_ramp_epochs,
                           positives_per_region=args.positives,
                           network=args.network, training_source=args.training_source,
                           trunk=args.trunk, class_output=args.class_output,
                           seed=args.seed)
    except ValueError as exc:
        raise CLIError(f"training options: {exc}") from None


def _write_outputs(args, particles, outcome, paths, n_regions, summary) -> None:
    from ..core.io import write_particles_star

    hints, probs, result = outcome.regions, outcome.probabilities, outcome.alignment
    columns.set_region_hints(particles.extra, hints, probs)
    if outcome.top_pairs is not None:  # what deepalign align --model reads back
        columns.set_pair_columns(particles.extra, *outcome.top_pairs)
    write_particles_star(paths["predicted"], particles)
    particles.angles_deg, particles.shifts_px = result.angles_deg, result.shifts_px
    write_alignment_columns(particles, result, regional=True)
    if outcome.classes is not None:
        write_class_columns(particles, outcome.classes)
        summarise_classes(summary, outcome.classes, args.volume,
                          estimated=outcome.class_fractions)
    write_particles_star(paths["aligned"], particles)
    classes = f"{len(args.volume)} classes x " if len(args.volume) > 1 else ""
    summary.wrote(paths["model"], f"{classes}{n_regions} regions, {args.network} network"
                  + (" (reused)" if outcome.train_report.model_reused else ""))
    summary.wrote(paths["predicted"], f"top-{hints.shape[1]} regions of {len(particles)} "
                                      "particles")
    summary.wrote(paths["aligned"], f"{len(particles)} particles with angles, shifts and "
                                    f"{columns.SCORE_COLUMN}")
    counts = np.bincount(result.region[result.region >= 0], minlength=n_regions)
    summary.add("particles per region", f"{spread(counts)} over {n_regions} regions")
    summarise_network_input(summary, args, particles)
    summarise_alignment(summary, result, regional=True)
    summarise_training(summary, outcome.train_report)  # its own stage: trained or reused
    for stage, seconds in outcome.seconds.items():
        if stage != "train":
            summary.stage(stage, seconds)


def main(args) -> int:
    summary = Summary("run")
    search, symmetry, n_regions, top_k = _check_options(args)
    particles, train, volumes, volume_pixels = _read_star_inputs(args)
    out = ensure_out_dir(args.out)
    paths = {k: os.path.join(out, v) for k, v in OUTPUTS.items()}

    from ..core.pipeline import run_deepalign

    config = _train_config(args, particles)
    # read on demand, a chunk or block at a time, by each stage: memory does not grow with N
    particles, images = lazy_particles_images(args, particles)
    if args.train is None:
        log.info("training the %s network of %d regions from projections of %s",
                 args.network, n_regions, ", ".join(args.volume))
        train, train_images, train_angles = particles, None, None
    else:
        log.info("training %d regions on %d particles (%s)", n_regions, len(train),
                 args.training_source)
        train, train_images = lazy_particles_images(args, train)
        train_angles = train.angles_deg
    from ..core.cnn.model_folder import ModelMismatch

    one = len(volumes) == 1  # one map, or several classes
    try:
        outcome = run_deepalign(
            train_images, train_angles, images, volumes[0] if one else volumes,
            model_dir=paths["model"], pixel_size_a=particles.pixel_size_a,
            max_shift_px=(defaults.default_max_shift_px(particles.box_px)
                          if args.max_shift is None else args.max_shift),
            symmetry=symmetry, spacing_deg=args.spacing, top_k=top_k, train_config=config,
            train_shifts_px=None if args.train is None else train.shifts_px,
            train_ctf=None if args.train is None or not args.ctf else train.ctf,
            ctf=particles.ctf if args.ctf else None,
            step_deg=args.step, target_resolution_a=args.target_resolution,
            device=args.device, volume_pixel_size_a=volume_pixels[0] if one else volume_pixels,
            refine=args.refine, search=search, retrain=args.retrain,
            class_prior=args.class_prior, class_search=args.class_search)
    except ModelMismatch as exc:  # refused before any training
        raise model_mismatch_error(exc, "--out DIR/model") from None
    for message in outcome.train_report.warnings:
        log.warning(message)
    _write_outputs(args, particles, outcome, paths, n_regions, summary)
    summary.print()
    return 0
