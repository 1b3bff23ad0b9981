"""``deepalign train``: train the regional CNNs on particles with known poses.

Writes the model folder ``--out`` (layout in :mod:`scipion_deepalign.core.cnn.model_folder`).
Training is resumable: run the same command again after an interruption and only the
regions without a model are trained. ``--regions 1,5,7`` trains only those regions (e.g.
one process per GPU). With several ``--gpus`` the regions are shared out round-robin between
one child process per GPU. All arguments are checked before TensorFlow is imported.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..core import defaults
from ..core.cnn.config import DEFAULT_INPUT_BOX_PX
from .common import (
    CLIError,
    add_particle_args,
    check_file_exists,
    check_positive,
    check_symmetry,
    lazy_particles_images,
    load_particles_images,
    logging_options,
    parse_int_list,
    particle_options,
    positive_float,
    positive_int,
    read_particles,
    run_children,
    set_devices,
)
from .shared_options import (
    add_schedule_args,
    add_target_resolution_arg,
    model_mismatch_error,
    summarise_network_input,
    summarise_training,
)
from .summary import Summary

log = logging.getLogger("deepalign")

LOSS_CHOICES = defaults.LOSSES


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--particles", required=True, metavar="PARTICLES.star",
                        help="training particles with poses (RELION STAR); with "
                             "--training-source projections any particles of the data set "
                             "(they give the CTFs and the noise to match, no poses needed)")
    parser.add_argument("--volume", metavar="REF.mrc", default=None, action="append",
                        help="reference map (needed by the projections and both sources), "
                             "same box and pixel size as the particles; repeat it for "
                             "several classes: one network learns the class and the region "
                             "(--training-source projections)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR",
                        help="model folder (created; reused to continue a training)")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    parser.add_argument("--spacing", type=positive_float, default=defaults.REGION_SPACING_DEG,
                        metavar="DEG", help="angular spacing of the region centres in "
                        "degrees; default %(default)g")
    size = parser.add_mutually_exclusive_group()
    add_target_resolution_arg(size, training=True, search=False)
    size.add_argument("--box", type=positive_int, metavar="B",
                      help="or to this box size (pixels); neither: "
                           f"{DEFAULT_INPUT_BOX_PX} px (or the particle box when smaller)")
    add_schedule_args(parser)
    parser.add_argument("--batch-size", type=positive_int,
                        default=defaults.train_default("batch_size"), help="default %(default)d")
    parser.add_argument("--head", choices=defaults.HEADS, default=defaults.train_default("head"),
                        help="output of the shared network: one softmax over the regions "
                             "(softened labels) or a sigmoid per region; default %(default)s")
    parser.add_argument("--label-softness", type=float,
                        default=defaults.train_default("label_softness"), metavar="F",
                        help="width of the softened labels as a fraction of --spacing "
                             "(0: one-hot); default %(default)g")
    parser.add_argument("--loss", choices=LOSS_CHOICES, default=None,
                        help="binary cross-entropy or mean absolute error; default "
                             "TrainConfig's (see docs/benchmarks_cnn.md)")
    parser.add_argument("--learning-rate", type=positive_float, default=None, metavar="LR",
                        help="Adam learning rate; default TrainConfig's")
    parser.add_argument("--validation-fraction", type=float,
                        default=defaults.train_default("validation_fraction"), metavar="F",
                        help="particles held out for early stopping; default %(default)g")
    parser.add_argument("--patience", type=int, default=defaults.train_default("patience"),
                        help="early stopping: epochs without a gain in the held-out region "
                             "hit rate (shared network) or validation loss (regional) "
                             "(0: off); default %(default)d")
    parser.add_argument("--min-particles", type=positive_int,
                        default=defaults.train_default("min_particles_per_region"), metavar="N",
                        help="regional network: regions with fewer training particles are "
                             "skipped; default %(default)d")
    parser.add_argument("--regions", metavar="LIST",
                        help="comma-separated 1-based regions to train (default all)")
    parser.add_argument("--gpus", metavar="LIST",
                        help="comma-separated GPU ids (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads for the network library")
    parser.add_argument("--seed", type=int, default=defaults.train_default("seed"), metavar="K",
                        help="default %(default)d")
    add_particle_args(parser)


def _check(args):
    """Validate everything cheap (:mod:`~scipion_deepalign.core.cnn.checks`, the rules the
    core applies too, in the words of the options); returns (particles, symmetry,
    n_regions, regions)."""
    from ..core.cnn import checks

    if not 0 <= args.validation_fraction < 1:
        raise CLIError(f"--validation-fraction must be in [0, 1), got {args.validation_fraction}")
    check_positive(args.patience, "--patience", allow_zero=True)
    symmetry = check_symmetry(args.symmetry)
    regions = parse_int_list(args.regions, "--regions")
    try:
        n_regions, _ = checks.check_regions(args.spacing, symmetry, regions,
                                            spacing_name="--spacing", regions_name="--regions")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    check_file_exists(args.particles, "--particles")
    if args.training_source != "particles":
        if args.volume is None:
            raise CLIError(f"--training-source {args.training_source} needs --volume REF.mrc")
        for path in args.volume:
            check_file_exists(path, "--volume")
        if args.network != "shared":
            raise CLIError(f"--training-source {args.training_source} trains the shared "
                           "network: use --network shared or --training-source particles")
    if args.volume is not None and len(args.volume) > 1 \
            and args.training_source != "projections":
        raise CLIError(f"several --volume maps train from projections of each map: use "
                       f"--training-source projections, not {args.training_source}")
    particles = read_particles(args, args.particles)
    if not particles.has_poses and args.training_source != "projections":
        raise CLIError(f"--particles {args.particles} has no poses (rlnAngleRot/Tilt/Psi): "
                       f"--training-source {args.training_source} needs particles with known "
                       "angles (--training-source projections does not)")
    try:
        resolution, box = _input_size(args, particles.box_px)
        checks.input_geometry(particles.box_px, particles.pixel_size_a,
                              target_resolution_a=resolution, target_box_px=box,
                              resolution_name="--target-resolution", box_name="--box")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return particles, symmetry, n_regions, regions


def _input_size(args, box_px):
    """``(target_resolution_a, target_box_px)`` of the network input: ``--box`` when given,
    else ``--target-resolution`` (:func:`~..core.resolution.training_input`)."""
    from ..core.resolution import training_input

    resolution, box = training_input(args.target_resolution, box_px)
    return resolution, box if args.box is None else args.box


def _reference(args, config, particles):
    """The ``--volume`` map, or the K maps scaled alike ((K, B, B, B): one network of K
    classes); None for the particles source."""
    if config.training_source == "particles":
        return None
    from .classes import read_class_maps, training_references

    if len(args.volume) > 1:
        return training_references(args.volume, box_px=particles.box_px,
                                   pixel_size_a=particles.pixel_size_a)
    volumes, _ = read_class_maps(args.volume, box_px=particles.box_px,
                                 pixel_size_a=particles.pixel_size_a)
    return volumes[0]


def _child_command(args, regions, gpu) -> list[str]:
    """``deepalign train`` for one GPU and a share of the regions, from parsed ``args``."""
    cmd = [sys.executable, "-m", "scipion_deepalign.cli", "train",
           "--particles", args.particles, "--out", args.out, "--symmetry", args.symmetry,
           "--spacing", repr(args.spacing), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--positives", str(args.positives),
           "--training-source", args.training_source,
           "--network", args.network, "--validation-fraction", repr(args.validation_fraction),
           "--patience", str(args.patience), "--min-particles", str(args.min_particles),
           "--seed", str(args.seed), "--regions", ",".join(map(str, regions)),
           "--gpus", str(gpu)]
    resolution = (None if args.target_resolution == defaults.TARGET_RESOLUTION
                  else args.target_resolution)
    for option, value in (("--target-resolution", resolution), ("--box", args.box),
                          ("--loss", args.loss), ("--learning-rate", args.learning_rate),
                          ("--threads", args.threads)):
        if value is not None:
            cmd += [option, str(value)]
    return cmd + particle_options(args) + logging_options(args)


def _fan_out(args, gpus, regions) -> int:
    """One child process per GPU, each training its round-robin share of the regions.

    Every child writes the same ``config.json`` (atomically), so the shared folder stays
    consistent; the exit code is the worst of the children's.
    """
    if args.retrain:  # once, here: the children continue the emptied folder
        from ..core.cnn.model_folder import ModelFolder

        ModelFolder(args.out).clear()
    commands = []
    for i, gpu in enumerate(gpus):
        share = regions[i::len(gpus)]
        if share:
            log.info("GPU %s: regions %s", gpu, share)
            commands.append(_child_command(args, share, gpu))
    return max(run_children(commands))


def _summarise(summary, args, config, report) -> None:
    parts = [f"{len(report.trained)} trained"]
    if report.reused:
        parts.append(f"{len(report.reused)} already there")
    if report.too_few:
        parts.append(f"{len(report.too_few)} skipped for too few particles "
                     f"({','.join(map(str, report.too_few))})")
    classes = f"{report.n_classes} classes x " if report.n_classes > 1 else ""
    summary.wrote(args.out, f"{classes}{report.n_regions} regions, {args.network} network "
                            f"trained from {config.training_source}")
    summary.add("models", ", ".join(parts))
    summarise_training(summary, report)
    summary.print()


def main(args) -> int:
    summary = Summary("train")
    particles, symmetry, n_regions, regions = _check(args)
    gpus = parse_int_list(args.gpus, "--gpus")
    if gpus is not None and len(gpus) > 1 and args.network == "regional":
        return _fan_out(args, gpus, regions or list(range(1, n_regions + 1)))
    set_devices(gpus, args.threads)

    from ..core.cnn import TrainConfig, train_regions

    resolution, box = _input_size(args, particles.box_px)
    options = dict(pixel_size_a=particles.pixel_size_a,
                   target_resolution_a=resolution, target_box_px=box,
                   epochs=args.epochs, batch_size=args.batch_size,
                   images_per_epoch=args.images_per_epoch,
                   positives_per_region=args.positives, network=args.network,
                   training_source=args.training_source, head=args.head, trunk=args.trunk,
                   class_output=args.class_output,
                   label_softness=args.label_softness,
                   noise_ramp_epochs=args.noise_ramp_epochs,
                   validation_fraction=args.validation_fraction, patience=args.patience,
                   seed=args.seed, min_particles_per_region=args.min_particles)
    if args.loss is not None:
        options["loss"] = args.loss
    if args.learning_rate is not None:
        options["learning_rate"] = args.learning_rate
    try:
        config = TrainConfig(**options)
    except ValueError as exc:
        raise CLIError(f"training options: {exc}") from None
    reference = _reference(args, config, particles)
    if config.training_source == "projections":
        # the particles give the noise to match (a sample of their images) and the CTFs to
        # draw from (all of them, from the STAR file): memory does not grow with the set
        from ..core.cnn.synthetic import noise_sample_rows

        rows = noise_sample_rows(len(particles))
        log.info("reading %d of the %d particles of %s (the noise to match)", len(rows),
                 len(particles), args.particles)
        _, images = load_particles_images(args, particles, rows)
        angles = shifts = None
    else:
        # read on demand, in chunks: only the small network inputs of all particles are held
        log.info("checking the %d particles of %s", len(particles), args.particles)
        particles, images = lazy_particles_images(args, particles)
        angles, shifts = particles.angles_deg, particles.shifts_px
    from ..core.cnn.model_folder import ModelMismatch

    try:
        report = train_regions(images, angles, out_dir=args.out, symmetry=symmetry,
                               spacing_deg=args.spacing, config=config, shifts_px=shifts,
                               regions=regions, reference=reference, ctf=particles.ctf,
                               retrain=args.retrain)
    except ModelMismatch as exc:
        raise model_mismatch_error(exc, "--out") from None
    summarise_network_input(summary, args, particles)
    _summarise(summary, args, config, report)
    for message in report.warnings:
        log.warning(message)
    return 0
