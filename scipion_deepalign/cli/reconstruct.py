"""``deepalign reconstruct``: a map (and half maps) from particles with poses.

Reads a RELION STAR with angles (and shifts, CTF), reconstructs by direct Fourier inversion
(:func:`scipion_deepalign.core.judge.reconstruct.reconstruct`) and writes ``--out MAP.mrc``. With
``--halves`` it also writes ``MAP_half1.mrc`` and ``MAP_half2.mrc`` (halves from the STAR's
``rlnRandomSubset`` when it holds 1 and 2, otherwise a random split drawn with ``--seed``) and
prints their FSC 0.143 and 0.5 resolutions; ``--fsc-json`` writes that curve as JSON
(:func:`scipion_deepalign.core.io.write_fsc_json`, what the Scipion protocol reads).

Images are read from their stacks (memory-mapped) one gridding batch at a time, so the
memory does not grow with the number of particles. ``--threads N`` grids the two half maps
(and chunks of particles) side by side, one Fourier grid per thread.
"""
from __future__ import annotations

import argparse
import logging
import os

import numpy as np

from ..core.defaults import RECONSTRUCT_THREADS
from .common import (
    CLIError,
    add_particle_args,
    check_file_exists,
    check_positive,
    check_symmetry,
    lazy_particles_images,
    positive_int,
    read_particles,
)
from .summary import Summary

log = logging.getLogger("deepalign")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--particles", required=True, metavar="ALIGNED.star",
                        help="RELION STAR of particles with angles (and shifts, CTF)")
    parser.add_argument("--out", required=True, metavar="MAP.mrc", help="output map")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    parser.add_argument("--halves", action="store_true",
                        help="also write MAP_half1/2.mrc and print their FSC resolution")
    parser.add_argument("--ctf", action=argparse.BooleanOptionalAction, default=True,
                        help="correct the CTF when the STAR has one (default) or not")
    parser.add_argument("--mask-radius", type=float, default=None, metavar="A",
                        help="soft spherical mask radius in Angstrom for the half-map FSC")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="seed of the random half split; default 0")
    parser.add_argument("--fsc-json", default=None, metavar="FSC.json",
                        help="with --halves: write the FSC curve and resolutions as JSON")
    parser.add_argument("--threads", type=positive_int, default=RECONSTRUCT_THREADS,
                        metavar="N",
                        help="grid the half maps (and chunks of particles) on N threads, one "
                             f"Fourier grid each; default {RECONSTRUCT_THREADS} (speed-up: "
                             "docs/benchmarks.md)")
    add_particle_args(parser)


def _subsets(particles, seed):
    from ..core.judge.reconstruct import half_subsets

    given = particles.extra.get("rlnRandomSubset")
    if given is not None:
        given = np.asarray(given)
        if np.all(np.isin(given, (1, 2))) and np.any(given == 1) and np.any(given == 2):
            log.info("half maps from rlnRandomSubset")
            return given.astype(np.int64)
    return half_subsets(len(particles), seed=seed)


def main(args) -> int:
    from ..core.runtime.progress import Progress

    star = check_file_exists(args.particles, "--particles")
    if not args.out.lower().endswith(".mrc"):
        raise CLIError(f"--out must be an .mrc file name, got {args.out}")
    check_positive(args.mask_radius, "--mask-radius")
    symmetry = check_symmetry(args.symmetry)
    particles = read_particles(args, star)
    if not particles.has_poses:
        raise CLIError(f"--particles {star}: the particles have no poses (rlnAngleRot/Tilt/Psi); "
                       "align them first")
    if args.halves and len(particles) < 2:
        raise CLIError(f"--halves needs at least 2 particles, {star} has {len(particles)}")
    if args.fsc_json and not args.halves:
        raise CLIError("--fsc-json needs --halves (the FSC is between the half maps)")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)

    particles, images = lazy_particles_images(args, particles)  # read per gridding batch
    ctf = particles.ctf if args.ctf else None
    kw = dict(shifts_px=particles.shifts_px, ctf=ctf, pixel_size_a=particles.pixel_size_a,
              symmetry=symmetry, threads=args.threads)
    log.info("reconstructing %d particles, box %d px, symmetry %s, CTF %s", len(particles),
             particles.box_px, symmetry, "corrected" if ctf is not None else "ignored")
    summary = Summary("reconstruct")
    with Progress(len(particles), "reconstruct") as progress:
        if not args.halves:
            _full_map(args, particles, images, kw, progress, summary)
        else:
            _half_maps(args, particles, images, kw, progress, summary)
    summary.print()
    return 0


def _full_map(args, particles, images, kw, progress, summary) -> None:
    from ..core.io import write_mrc
    from ..core.judge.reconstruct import reconstruct

    volume = reconstruct(images, particles.angles_deg, progress=progress, **kw)
    write_mrc(args.out, volume, pixel_size_a=particles.pixel_size_a)
    summary.wrote(args.out, _map_detail(particles, kw, f"{len(particles)} particles"))


def _half_maps(args, particles, images, kw, progress, summary) -> None:
    from ..core.io import half_map_paths, write_fsc_json, write_mrc
    from ..core.judge.fsc import fsc_curve
    from ..core.judge.reconstruct import reconstruct_half_maps

    subsets = _subsets(particles, args.seed)
    half1, half2, full = reconstruct_half_maps(images, particles.angles_deg, subsets=subsets,
                                               progress=progress, **kw)
    path1, path2 = half_map_paths(args.out)
    for path, vol in ((args.out, full), (path1, half1), (path2, half2)):
        write_mrc(path, vol, pixel_size_a=particles.pixel_size_a)
    res = fsc_curve(half1, half2, pixel_size_a=particles.pixel_size_a,
                    mask_radius_a=args.mask_radius)
    if args.fsc_json:
        write_fsc_json(args.fsc_json, res, len(particles))
        summary.wrote(args.fsc_json, "FSC curve of the half maps")
    summary.wrote(args.out, _map_detail(particles, kw, f"{len(particles)} particles"))
    for label, path in ((1, path1), (2, path2)):
        count = int(np.sum(subsets == label))
        summary.wrote(path, _map_detail(particles, kw, f"half {label}: {count} particles"))
    summary.add("FSC 0.143 resolution", f"{res.resolution_0143_a:.2f} A "
                                        f"(0.5: {res.resolution_05_a:.2f} A)")


def _map_detail(particles, kw, which: str) -> str:
    ctf = "CTF corrected" if kw["ctf"] is not None else "no CTF correction"
    return (f"{which}, {particles.box_px} px, "
            f"{particles.pixel_size_a:.4g} A/px, {kw['symmetry']}, {ctf}")
