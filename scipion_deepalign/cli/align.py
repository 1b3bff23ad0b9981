"""``deepalign align``: angles and shifts by correlation inside the predicted regions.

Reads ``--particles`` (RELION STAR; the region columns written by ``deepalign predict``
are the 1-based region numbers of the model's ``regions.star``, given by
``--model MODEL_DIR`` or ``--regions REGIONS.star``), compares every particle with projections
of ``--volume`` in the search windows of its most probable regions
(:func:`scipion_deepalign.core.align.align.align_particles`; windows, adaptive number of regions
and fallback: :mod:`scipion_deepalign.core.align.search_plan`), or over the whole asymmetric unit
with ``--global``, and writes ``--out`` (RELION 3.1 STAR) with ``rlnAngleRot/Tilt/Psi``,
``rlnOriginXAngst/YAngst``, the score and, in regional mode, the region of the best pose,
whether the particle was searched globally and how many regions were searched (column names
and meanings: :mod:`scipion_deepalign.core.io.columns`).
When the input particles have poses, each particle's angle between its input and its new
projection direction (degrees, nearest symmetry mate) is written too, and the summary gives
its median. With several ``--volume`` maps (same box and pixel size) each particle is aligned
against every map and takes the class whose best pose scores highest
(:mod:`scipion_deepalign.core.classes`): ``rlnClassNumber`` (1-based, the i-th ``--volume``)
and its probability are written too. The summary's numbers are also written beside ``--out``
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
                             "..k columns unless --global)")
    parser.add_argument("--volume", required=True, action="append", metavar="REF.mrc",
                        help="reference map, same box and pixel size as the particles; "
                             "repeat it for several classes (one map each: every particle "
                             "takes the class of its best score, written as rlnClassNumber)")
    parser.add_argument("--out", required=True, metavar="ALIGNED.star", help="output STAR")
    hints = parser.add_mutually_exclusive_group()
    hints.add_argument("--model", metavar="MODEL_DIR",
                       help="model folder of deepalign train (its regions.star)")
    hints.add_argument("--regions", metavar="REGIONS.star", help="region centres file")
    parser.add_argument("--global", dest="global_search", action="store_true",
                        help="ignore region hints, search the whole asymmetric unit")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    add_search_args(parser)
    add_region_search_args(parser)
    parser.add_argument("--psi-step", type=positive_float, default=None, metavar="DEG",
                        help="in-plane step; default --step")
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="use the first K region columns; default all of them")
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
    n_jobs = job_count(args)
    if n_jobs:
        code = run_jobs(args, n_jobs)
        if code == 0:  # the merged output's summary
            write_summary(args.out, read_particles(args, args.out).extra)
        return code
    particles, part = select_part(args, read_particles(args, args.particles))
    if part_is_done(args, part):
        return 0
    hints = centres = probs = None
    if not args.global_search:
        centres, model_symmetry = load_centres(args)
        if normalise_symmetry(model_symmetry) != symmetry:
            raise CLIError(f"--symmetry {symmetry} differs from the model's regions "
                           f"({model_symmetry})")
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
    log.info("aligning %d particles (%s mode, box %d px)", len(particles),
             "global" if hints is None else f"regional, top {hints.shape[1]}", box)
    with Progress(len(particles), "align") as progress:
        result, classes = align_against_maps(
            images, volumes, volume_pixels, names=args.volume,
            pixel_size_a=particles.pixel_size_a, max_shift_px=max_shift,
            ctf=particles.ctf if args.ctf else None, symmetry=symmetry, region_hints=hints,
            centres_deg=centres, step_deg=args.step, psi_step_deg=args.psi_step,
            target_resolution_a=args.target_resolution, device=args.device,
            batch_size=args.batch_size, ctf_mode=args.ctf_mode, cache_dir=args.cache_dir,
            refine=args.refine, region_probabilities=probs, search=search, progress=progress)
    change = _direction_change(particles, result, symmetry)
    particles.angles_deg = result.angles_deg
    particles.shifts_px = result.shifts_px
    write_alignment_columns(particles, result, regional=hints is not None)
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
    summarise_alignment(summary, result, regional=hints is not None).stage(
        "gallery", gallery).stage("search", result.info["seconds"] - gallery).print()
    return 0

