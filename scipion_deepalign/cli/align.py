"""``deepalign align``: angles and shifts by correlation inside the predicted regions.

Reads ``--particles`` (RELION STAR; the region columns written by ``deepalign predict``
are the 1-based region numbers of the model's ``regions.star``, given by
``--model MODEL_DIR`` or ``--regions REGIONS.star``), compares every particle with projections
of ``--volume`` in its most probable regions and around the poses found there
(:func:`scipion_deepalign.core.align.align.align_particles`; windows, adaptive number of
regions, the search around the kept poses and fallback:
:mod:`scipion_deepalign.core.align.search_plan`), or over the whole asymmetric unit
with ``--global``, and writes ``--out`` (RELION 3.1 STAR) with ``rlnAngleRot/Tilt/Psi``,
``rlnOriginXAngst/YAngst``, the score and, in regional mode, the region of the best pose,
whether the particle was searched globally and how many regions were searched (column names
and meanings: :mod:`scipion_deepalign.core.io.columns`).
When the input particles have poses, each particle's angle between its input and its new
projection direction (degrees, nearest symmetry mate) is written too, and the summary gives
its median. With several ``--volume`` maps (same box and pixel size) each particle is aligned
against every map and takes the class that fits it best at the pose of its best score
(:mod:`scipion_deepalign.core.classes.common_pose`): ``rlnClassNumber`` (1-based, the i-th
``--volume``) and its probability are written too.

With ``--model`` of a network trained from several maps (``deepalign train --volume A
--volume B``, or ``deepalign run``'s ``DIR/model``), give one ``--volume`` per class, in the
order the model was trained with: each particle is searched in the (class, region) pairs
``deepalign predict --model`` wrote (the pair columns of
:mod:`scipion_deepalign.core.io.columns`; ``deepalign run``'s ``predicted.star`` has them
too), those the search takes by the rule of ``deepalign run``
(:func:`~scipion_deepalign.core.cnn.pairs.search_top_pairs`), against each class's map inside
those regions, with the significance fallback over every class
(:func:`~scipion_deepalign.core.classes.regional.align_class_pairs`, what ``deepalign run``
calls): the same classes and poses as ``run`` on the same particles. The number of maps must
be the model's number of classes, the particles must carry the pairs, and their box and pixel
size must be the model's and the maps' (each refused before any search, naming the option).
The summary's numbers are also written beside ``--out``
as ``NAME.summary.json`` (:func:`write_summary`; what the Align and Refine protocols show).
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace

import numpy as np

from ..core import defaults
from ..core.io import columns
from .classes import align_against_maps, read_class_maps, summarise_classes, write_class_columns
from .common import (
    CLIError,
    add_particle_args,
    check_choice,
    check_file_exists,
    check_positive,
    check_symmetry,
    lazy_particles_images,
    positive_float,
    read_particles,
)
from .parts import add_part_args, job_count, part_is_done, run_jobs, select_part, write_output
from .shared_options import (
    add_class_search_arg,
    add_region_search_args,
    add_search_args,
    add_target_resolution_arg,
    search_options,
    summarise_alignment,
    write_alignment_columns,
)
from .summary import Summary

log = logging.getLogger("deepalign")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--particles", required=True, metavar="PRED.star",
                        help=f"RELION STAR of the particles (with {columns.REGION_COLUMN % 1}"
                             "..k columns unless --global; with a --model of several maps, "
                             f"the (class, region) pairs {columns.PAIR_CLASS_COLUMN % 1}..k "
                             "that deepalign predict --model writes)")
    parser.add_argument("--volume", required=True, action="append", metavar="REF.mrc",
                        help="reference map, same box and pixel size as the particles; "
                             "repeat it for several classes (one map each: every particle "
                             "takes the class that fits best at its best score's pose, "
                             "written as rlnClassNumber); "
                             "with a --model trained from several maps, one per class of the "
                             "model, in its training order (searched in the predicted "
                             "(class, region) pairs, as deepalign run does)")
    parser.add_argument("--out", required=True, metavar="ALIGNED.star", help="output STAR")
    hints = parser.add_mutually_exclusive_group()
    hints.add_argument("--model", metavar="MODEL_DIR",
                       help="model folder of deepalign train or run (its regions.star; "
                            "a model of several maps: its classes, with the (class, region) "
                            "pairs deepalign predict wrote)")
    hints.add_argument("--regions", metavar="REGIONS.star", help="region centres file")
    parser.add_argument("--global", dest="global_search", action="store_true",
                        help="ignore region hints, search the whole asymmetric unit")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    add_search_args(parser)
    add_region_search_args(parser)
    add_class_search_arg(parser)
    parser.add_argument("--psi-step", type=positive_float, default=None, metavar="DEG",
                        help="in-plane step; default --step")
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="use the first K region (or pair) columns; default all of them")
    add_target_resolution_arg(parser, training=False, search=True)
    parser.add_argument("--ctf-mode", default="apply",
                        help="apply: CTF on the references (default); flip: phase-flip the "
                             "particles here; flipped: the particles are already phase-flipped "
                             "(|CTF| on the references)")
    parser.add_argument("--batch-size", type=int, default=defaults.ALIGN_BATCH, metavar="N",
                        help="particles per correlation block; default %(default)d")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="keep gallery projections here as .npy between runs")
    add_particle_args(parser)
    add_part_args(parser, jobs=True)


def region_hints_from_star(particles, top_k=None) -> np.ndarray:
    """0-based ``(N, k)`` region hints from the 1-based region columns of ``--particles``."""
    n_cols = len(columns.region_columns(particles.extra))
    if not n_cols:
        raise CLIError(f"--particles has no {columns.REGION_COLUMN % 1} column: run deepalign "
                       "predict first, or pass --global")
    if top_k is not None and not 1 <= top_k <= n_cols:
        raise CLIError(f"--top-k must be between 1 and the {n_cols} region columns of "
                       f"--particles, got {top_k}")
    try:
        return columns.region_hints(particles.extra, top_k)
    except ValueError as exc:
        raise CLIError(f"--particles: {exc} (region numbers)") from None


def model_classes(args) -> int:
    """Classes of ``--model`` (1 without it, with ``--global``, or without ``config.json``:
    a region file alone is a single map's); a model of several classes needs one
    ``--volume`` per class."""
    if args.model is None or args.global_search:
        return 1
    from ..core.cnn.model_folder import ModelFolder

    folder = ModelFolder(args.model)
    if not os.path.isdir(args.model) or not folder.config_path.is_file():
        return 1  # load_centres says what is missing
    try:
        n_classes = folder.n_classes()
    except (ValueError, OSError) as exc:
        raise CLIError(f"--model: {exc}") from None
    if n_classes > 1 and len(args.volume) != n_classes:
        raise CLIError(f"--volume: {len(args.volume)} map(s) given, but the model "
                       f"{args.model} was trained on {n_classes} classes: give one --volume "
                       "per class, in the order it was trained with")
    return n_classes


def check_model_particles(args, particles) -> None:
    """The particles' box and pixel size against ``--model``'s (a model of several maps)."""
    from ..core.cnn.model_folder import ModelFolder

    try:
        ModelFolder(args.model).check_particles(particles.box_px, particles.pixel_size_a)
    except ValueError as exc:
        raise CLIError(f"--particles {args.particles}: {exc}") from None


def class_pairs_from_star(particles, n_classes, n_regions, search, top_k=None):
    """The (class, region) pairs the search takes (:func:`~..core.cnn.pairs.search_top_pairs`)
    from the 1-based pair columns of ``--particles``."""
    from ..core.cnn.pairs import search_top_pairs

    n_cols = len(columns.pair_columns(particles.extra))
    if not n_cols:
        raise CLIError(f"--particles has no {columns.PAIR_CLASS_COLUMN % 1} column (the "
                       f"(class, region) pairs of the model's {n_classes} classes): run "
                       "deepalign predict --model MODEL_DIR on them first")
    if top_k is not None and not 1 <= top_k <= n_cols:
        raise CLIError(f"--top-k must be between 1 and the {n_cols} pair columns of "
                       f"--particles, got {top_k}")
    try:
        classes, regions, probs = columns.class_pairs(particles.extra, top_k)
    except ValueError as exc:
        raise CLIError(f"--particles: {exc} (pair columns)") from None
    if classes.max() >= n_classes or regions.max() >= n_regions:
        raise CLIError(f"--particles: pair classes must be in 1..{n_classes} and regions in "
                       f"1..{n_regions} (the model's), got up to class {classes.max() + 1}, "
                       f"region {regions.max() + 1}")
    return search_top_pairs(classes, regions, probs, n_classes, search, top_k=top_k)


def load_centres(args):
    """Region centres and the model's symmetry from ``--model`` or ``--regions``."""
    from ..core.cnn.model_folder import ModelFolder
    from ..core.io import read_regions_star

    if args.model is not None:
        if not os.path.isdir(args.model):
            raise CLIError(f"--model: folder not found: {args.model}")
        path = check_file_exists(str(ModelFolder(args.model).regions_path), "--model")
    elif args.regions is not None:
        path = check_file_exists(args.regions, "--regions")
    else:
        raise CLIError("regional alignment needs --model MODEL_DIR or --regions REGIONS.star "
                       "(or pass --global)")
    centres, symmetry, _ = read_regions_star(path)
    return centres, symmetry


def _direction_change(particles, result, symmetry):
    """Angle between each particle's input and new projection direction (degrees, nearest
    symmetry mate), also put in its column; None when the input has no poses."""
    if particles.angles_deg is None:
        return None
    from ..core.symmetry import symmetric_direction_distance_deg

    change = symmetric_direction_distance_deg(particles.angles_deg, result.angles_deg, symmetry)
    particles.extra[columns.DIRECTION_CHANGE_COLUMN] = change
    return change


def write_summary(out, extra, *, n_input=None, info=None) -> str:
    """``NAME.summary.json`` beside the output ``NAME.star``: the alignment's numbers
    (:func:`~..core.align.summary.alignment_summary`, what the protocols show) and, from the
    alignment's ``info``, which resolution it searched and refined at, and why; its path."""
    from ..core.align.summary import alignment_summary
    from ..core.io import summary_path, write_json

    path = summary_path(out)
    report = alignment_summary(extra, n_input=n_input)
    if info is not None and "resolution" in info:
        report.update(resolution=info["resolution"], search_box_px=info["box_px"],
                      refine_box_px=info.get("refine_box_px"))
    write_json(path, report)
    return path


def _align_pairs(args, images, volumes, volume_pixels, pairs, particles, *, centres, symmetry,
                 max_shift, search, progress):
    """Each particle against its predicted classes' maps, in their regions: the core call of
    ``deepalign run`` (:func:`~..core.classes.regional.align_class_pairs`)."""
    from ..core.classes import align_class_pairs

    return align_class_pairs(
        images, volumes, pairs, pixel_size_a=particles.pixel_size_a, centres_deg=centres,
        volume_pixel_sizes_a=volume_pixels, names=args.volume,
        target_resolution_a=args.target_resolution, search=search,
        ctf=particles.ctf if args.ctf else None, progress=progress, max_shift_px=max_shift,
        symmetry=symmetry, step_deg=args.step, psi_step_deg=args.psi_step,
        device=args.device, batch_size=args.batch_size, ctf_mode=args.ctf_mode,
        cache_dir=args.cache_dir, refine=args.refine, class_search=args.class_search)


def check_args(args) -> None:
    """Checks that need no file content (run before anything is read)."""
    check_file_exists(args.particles, "--particles")
    for path in args.volume:
        check_file_exists(path, "--volume")
    if not args.out.lower().endswith(".star"):
        raise CLIError(f"--out must be a .star file name, got {args.out}")
    check_choice(args.device, defaults.DEVICES, "--device")
    check_choice(args.ctf_mode, defaults.CTF_MODES, "--ctf-mode")
    check_positive(args.max_shift, "--max-shift", allow_zero=True)
    check_positive(args.batch_size, "--batch-size")
    if args.top_k is not None:
        check_positive(args.top_k, "--top-k")


def main(args) -> int:
    summary = Summary("align")
    from ..core.runtime.progress import Progress
    from ..core.symmetry import normalise_symmetry

    check_args(args)
    symmetry = check_symmetry(args.symmetry)
    search = search_options(args)
    n_classes = model_classes(args)  # before any part or search
    n_jobs = job_count(args)
    if n_jobs:
        code = run_jobs(args, n_jobs)
        if code == 0:  # the merged output's summary
            write_summary(args.out, read_particles(args, args.out).extra)
        return code
    particles, part = select_part(args, read_particles(args, args.particles))
    if part_is_done(args, part):
        return 0
    hints = centres = probs = pairs = None
    if not args.global_search:
        centres, model_symmetry = load_centres(args)
        if normalise_symmetry(model_symmetry) != symmetry:
            raise CLIError(f"--symmetry {symmetry} differs from the model's regions "
                           f"({model_symmetry})")
    if n_classes > 1:  # searched in the predicted (class, region) pairs, as deepalign run does
        check_model_particles(args, particles)
        pairs = class_pairs_from_star(particles, n_classes, len(centres), search, args.top_k)
    elif not args.global_search:
        hints = region_hints_from_star(particles, args.top_k)
        if hints.min() < 0 or hints.max() >= len(centres):
            raise CLIError(f"--particles: region numbers must be in 1..{len(centres)} (the "
                           f"regions of the model), got {hints.min() + 1}..{hints.max() + 1}")
        probs = columns.region_probabilities(particles.extra, hints.shape[1])
        if probs is None and search.needs_probabilities:
            log.warning("--particles has no %s columns: every one of its %d region columns "
                        "is searched (no --probability-mass, no --fallback-probability)",
                        columns.PROB_COLUMN % 1, hints.shape[1])
            search = replace(search, probability_mass=None, fallback_probability=0.0)
    box = particles.box_px
    volumes, volume_pixels = read_class_maps(args.volume, box_px=box,
                                             pixel_size_a=particles.pixel_size_a)
    max_shift = defaults.default_max_shift_px(box) if args.max_shift is None else args.max_shift
    n_input = len(particles)
    particles, images = lazy_particles_images(args, particles)  # read block by block
    if hints is not None:  # again, for the particles kept by --skip-bad
        hints = region_hints_from_star(particles, args.top_k)
    if pairs is not None:
        pairs = class_pairs_from_star(particles, n_classes, len(centres), search, args.top_k)
    mode = ("global" if args.global_search else f"regional, top {hints.shape[1]}"
            if pairs is None else f"{n_classes} classes' predicted (class, region) pairs")
    log.info("aligning %d particles (%s mode, box %d px)", len(particles), mode, box)
    with Progress(len(particles), "align") as progress:
        if pairs is not None:
            classes = _align_pairs(args, images, volumes, volume_pixels, pairs, particles,
                                   centres=centres, symmetry=symmetry, max_shift=max_shift,
                                   search=search, progress=progress)
            result = classes.alignment
        else:
            result, classes = align_against_maps(
                images, volumes, volume_pixels, names=args.volume,
                pixel_size_a=particles.pixel_size_a, max_shift_px=max_shift,
                ctf=particles.ctf if args.ctf else None, symmetry=symmetry, region_hints=hints,
                centres_deg=centres, step_deg=args.step, psi_step_deg=args.psi_step,
                target_resolution_a=args.target_resolution, device=args.device,
                batch_size=args.batch_size, ctf_mode=args.ctf_mode, cache_dir=args.cache_dir,
                refine=args.refine, region_probabilities=probs, search=search,
                progress=progress, class_search=args.class_search)
    change = _direction_change(particles, result, symmetry)
    particles.angles_deg = result.angles_deg
    particles.shifts_px = result.shifts_px
    regional = not args.global_search
    write_alignment_columns(particles, result, regional=regional)
    if classes is not None:
        write_class_columns(particles, classes)
        summarise_classes(summary, classes, args.volume)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    write_output(args.out, particles, part)
    summary.wrote(args.out, f"{len(particles)} particles with angles, shifts and "
                            f"{columns.SCORE_COLUMN}")
    summary.wrote(write_summary(args.out, particles.extra, n_input=n_input, info=result.info),
                  "its numbers")
    if change is not None:
        summary.add("direction change from the input poses",
                    f"median {float(np.median(change)):.1f} deg")
    gallery = result.info["gallery_seconds"]
    summarise_alignment(summary, result, regional=regional).stage(
        "gallery", gallery).stage("search", result.info["seconds"] - gallery).print()
    return 0

