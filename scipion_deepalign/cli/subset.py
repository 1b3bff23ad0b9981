"""``deepalign subset``: a random or view-balanced fraction of a particle set (e.g. for training).

``--balanced`` (particles with poses) takes equal numbers from every region of a
``--spacing`` grid on the projection sphere (:mod:`scipion_deepalign.core.subset`), so that
preferred views do not dominate the training subset. The output STAR keeps every column and
optics group of the input; image names are rewritten to be valid from the output's folder.
"""
from __future__ import annotations

import argparse
import logging
import os

import numpy as np

from ..core.defaults import REGION_SPACING_DEG
from .common import CLIError, add_particle_args, check_symmetry, positive_float, read_particles
from .summary import Summary, spread

log = logging.getLogger("deepalign")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--particles", required=True, metavar="ALL.star",
                        help="particles to choose from (RELION STAR)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--fraction", type=positive_float, metavar="F",
                      help="fraction of the particles to keep, in (0, 1]")
    size.add_argument("--count", type=int, metavar="N", help="number of particles to keep")
    parser.add_argument("--out", required=True, metavar="SUBSET.star", help="output STAR file")
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="random seed; default 0")
    parser.add_argument("--balanced", action="store_true",
                        help="equal numbers per region of the projection sphere (needs poses)")
    parser.add_argument("--spacing", type=positive_float, default=REGION_SPACING_DEG, metavar="DEG",
                        help="region spacing of --balanced in degrees; default %(default)g")
    parser.add_argument("--symmetry", default="c1",
                        help="point group for the regions of --balanced; default c1")
    add_particle_args(parser, images=False)


def _size(args, n: int) -> int:
    from ..core.subset import subset_size

    if args.count is not None:
        if not 0 < args.count <= n:
            raise CLIError(f"--count must be in [1, {n}] (the number of particles), "
                           f"got {args.count}")
        return args.count
    if args.fraction > 1:
        raise CLIError(f"--fraction must be in (0, 1], got {args.fraction}")
    return subset_size(n, args.fraction)


def _check(args):
    symmetry = check_symmetry(args.symmetry)
    particles = read_particles(args, args.particles)
    if args.balanced and not particles.has_poses:
        raise CLIError(f"--balanced needs poses, but {args.particles} has no angles")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CLIError(f"--out: folder not found: {out_dir}")
    return particles, symmetry, _size(args, len(particles))


def main(args) -> int:
    particles, symmetry, size = _check(args)
    from ..core.io import write_particles_star
    from ..core.subset import balanced_subset, random_subset

    summary = Summary("subset")
    detail = f"{size} of {len(particles)} particles"
    if args.balanced:
        rows, per_region = balanced_subset(particles.angles_deg, size, symmetry=symmetry,
                                           spacing_deg=args.spacing, seed=args.seed)
        detail += f", balanced over {len(per_region)} regions of {args.spacing:g} deg"
    else:
        rows = random_subset(len(particles), size, seed=args.seed)
        detail += f", random, seed {args.seed}"
    write_particles_star(args.out, particles.subset(rows))
    summary.wrote(args.out, detail)
    if args.balanced:
        summary.add("particles per region", f"{spread(per_region)}; "
                                            f"{int(np.sum(per_region == 0))} regions empty")
    summary.print()
    return 0
