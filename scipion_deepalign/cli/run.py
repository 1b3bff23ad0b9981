"""``deepalign run``: the whole method in one go, train -> predict -> align.

Writes into ``--out DIR``:

* ``model/`` -- the regional CNNs (:func:`scipion_deepalign.core.cnn.train_regions`; an
  interrupted run resumes where it stopped);
* ``predicted.star`` -- ``--particles`` with ``deepalignRegion1..k`` (1-based regions of
  ``model/regions.star``) and ``deepalignRegionProb1..k``;
* ``aligned.star`` -- the same with the poses found by correlation inside those regions
  (:func:`scipion_deepalign.core.align.align_particles`) and ``deepalignScore``,
  ``deepalignRegion``.
"""
from __future__ import annotations

import argparse
import logging
import os

import numpy as np

from ..core import defaults
from .align import BEST_REGION_COLUMN, REGION_COLUMN, SCORE_COLUMN, add_search_args
from .common import (
    CLIError,
    check_choice,
    check_file_exists,
    check_positive,
    check_symmetry,
    ensure_out_dir,
    positive_float,
    positive_int,
)

log = logging.getLogger("deepalign")

PROB_COLUMN = "deepalignRegionProb%d"
OUTPUTS = {"model": "model", "predicted": "predicted.star", "aligned": "aligned.star"}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, metavar="TRAIN.star",
                        help="particles with known poses to train on")
    parser.add_argument("--particles", required=True, metavar="ALL.star",
                        help="particles to align")
    parser.add_argument("--volume", required=True, metavar="REF.mrc", help="reference map")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    parser.add_argument("--spacing", type=positive_float, default=defaults.REGION_SPACING_DEG,
                        metavar="DEG", help="angular spacing of the region centres; "
                        "default %(default)g")
    parser.add_argument("--top-k", type=positive_int, default=defaults.TOP_K, metavar="K",
                        help="regions searched per particle; default %(default)d")
    parser.add_argument("--epochs", type=positive_int, default=10, help="default 10")
    parser.add_argument("--positives-per-region", "--positives", dest="positives_per_region",
                        type=positive_int, default=defaults.train_default("positives_per_region"),
                        metavar="N", help="augmented positives per region and epoch")
    parser.add_argument("--network", choices=defaults.NETWORKS,
                        default=defaults.train_default("network"),
                        help="shared (default, one shared-trunk network) or regional (paper)")
    parser.add_argument("--target-resolution", type=positive_float, default=None, metavar="A",
                        help="downsample to this resolution for training and alignment")
    add_search_args(parser)
    parser.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    check_file_exists(args.train, "--train")
    check_file_exists(args.particles, "--particles")
    check_file_exists(args.volume, "--volume")
    check_choice(args.device, ("auto", "cpu", "gpu"), "--device")
    check_choice(args.network, ("regional", "shared"), "--network")
    check_positive(args.max_shift, "--max-shift", allow_zero=True)
    from ..core.io import load_images, read_particles_star, read_volume, write_particles_star
    from ..core.regions import count_regions

    symmetry = check_symmetry(args.symmetry)
    n_regions = count_regions(args.spacing, symmetry)
    if not 1 <= args.top_k <= n_regions:
        raise CLIError(f"--top-k must be between 1 and the {n_regions} regions of "
                       f"--spacing {args.spacing} ({symmetry}), got {args.top_k}")
    train = read_particles_star(args.train)
    if not train.has_poses:
        raise CLIError(f"--train {args.train}: the particles have no poses (rlnAngleRot/...)")
    particles = read_particles_star(args.particles)
    if train.box_px != particles.box_px:
        raise CLIError(f"--train box {train.box_px} px differs from --particles box "
                       f"{particles.box_px} px")
    volume, volume_pixel = read_volume(args.volume)
    if volume.shape[-1] != particles.box_px:
        raise CLIError(f"--volume box {volume.shape[-1]} px differs from the particle box "
                       f"{particles.box_px} px")
    out = ensure_out_dir(args.out)
    paths = {k: os.path.join(out, v) for k, v in OUTPUTS.items()}

    from ..core.cnn.config import TrainConfig
    from ..core.pipeline import run_deepalign

    config = TrainConfig(pixel_size_a=train.pixel_size_a,
                         target_resolution_a=args.target_resolution, epochs=args.epochs,
                         positives_per_region=args.positives_per_region,
                         network=args.network, seed=args.seed)
    log.info("training %d regions on %d particles", n_regions, len(train))
    outcome = run_deepalign(
        load_images(train), train.angles_deg, load_images(particles), volume,
        model_dir=paths["model"], pixel_size_a=particles.pixel_size_a,
        max_shift_px=(defaults.default_max_shift_px(particles.box_px) if args.max_shift is None
                      else args.max_shift),
        symmetry=symmetry, spacing_deg=args.spacing, top_k=args.top_k, train_config=config,
        train_shifts_px=train.shifts_px, ctf=particles.ctf if args.ctf else None,
        step_deg=args.step, target_resolution_a=args.target_resolution, device=args.device,
        volume_pixel_size_a=volume_pixel, refine=args.refine)
    hints, probs, result = outcome.regions, outcome.probabilities, outcome.alignment
    for j in range(hints.shape[1]):
        particles.extra[REGION_COLUMN % (j + 1)] = hints[:, j] + 1
        particles.extra[PROB_COLUMN % (j + 1)] = probs[:, j]
    write_particles_star(paths["predicted"], particles)
    particles.angles_deg, particles.shifts_px = result.angles_deg, result.shifts_px
    particles.extra[SCORE_COLUMN] = result.score
    particles.extra[BEST_REGION_COLUMN] = result.region + 1
    write_particles_star(paths["aligned"], particles)
    log.info("wrote %s (%d comparisons, median score %.3f)", paths["aligned"],
             result.n_comparisons, float(np.median(result.score)))
    return 0
