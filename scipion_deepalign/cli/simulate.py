"""``deepalign simulate``: particles with known poses from the built-in phantom or a map.

Writes into ``--out``:

* ``particles.mrcs`` -- the images (float32, pixel size in the header);
* ``particles.star`` -- RELION 3.1 STAR with the true angles, shifts and CTF;
* ``reference.mrc``  -- the clean volume at the particles' box and pixel size.

A ``--volume`` of another box is Fourier-cropped (or padded) to ``--box`` and its pixel size
rescaled by ``old_box / box``. ``--pixel-size`` is the pixel size of ``--volume`` (overriding
its header) or, with the phantom, of the particles (default 4 A).
"""
from __future__ import annotations

import argparse
import logging
import os

from .common import (
    CLIError,
    check_box,
    check_file_exists,
    check_positive,
    ensure_out_dir,
    positive_float,
    positive_int,
)
from .summary import Summary

log = logging.getLogger("deepalign")

PHANTOM_PIXEL_SIZE_A = 4.0
MIN_BOX_PX = 16
OUTPUTS = ("particles.mrcs", "particles.star", "reference.mrc")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created if needed)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--volume", metavar="MAP.mrc",
                        help="map to project (cubic MRC); default: the built-in phantom")
    source.add_argument("--phantom", action="store_true",
                        help="use the built-in phantom (the default)")
    parser.add_argument("--symmetry", default="c1",
                        help="point group of the phantom (c1, cN, dN, t, o, i); default c1")
    parser.add_argument("--n", type=positive_int, required=True, metavar="N",
                        help="number of particles")
    parser.add_argument("--box", type=int, required=True, metavar="B",
                        help=f"image side in pixels (even, >= {MIN_BOX_PX})")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="pixel size in Angstrom of --volume (overrides its header), or of "
                             f"the phantom particles (default {PHANTOM_PIXEL_SIZE_A})")
    parser.add_argument("--snr", type=positive_float, default=0.1, metavar="S",
                        help="signal-to-noise ratio (variance ratio); default 0.1")
    parser.add_argument("--ctf", action=argparse.BooleanOptionalAction, default=True,
                        help="apply a random CTF (default) or not")
    parser.add_argument("--max-shift", type=float, default=0.0, metavar="PX",
                        help="largest random in-plane shift in pixels; default 0")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="random seed; default 0")


def _check(args) -> None:
    check_box(args.box, "--box", minimum=MIN_BOX_PX)
    check_positive(args.pixel_size, "--pixel-size")
    check_positive(args.max_shift, "--max-shift", allow_zero=True)
    if args.max_shift >= args.box / 4:
        raise CLIError(f"--max-shift must be below a quarter of --box ({args.box / 4:g} px), "
                       f"got {args.max_shift}")
    if args.volume is not None:
        check_file_exists(args.volume, "--volume")


def _load_source(args):
    """(volume (B,B,B) at --box, pixel size in A) from --volume or the phantom."""
    if args.volume is None:
        from ..core.simulate import make_phantom

        log.info("phantom %d px, symmetry %s", args.box, args.symmetry)
        try:
            volume = make_phantom(args.box, symmetry=args.symmetry, seed=args.seed)
        except ValueError as exc:
            raise CLIError(f"--symmetry: {exc}") from None
        return volume, args.pixel_size or PHANTOM_PIXEL_SIZE_A

    from ..core.imageops import fourier_crop_volume
    from ..core.io import read_volume

    try:
        volume, header_pixel_a = read_volume(args.volume)
    except ValueError as exc:
        raise CLIError(f"--volume: {exc}") from None
    pixel_a = args.pixel_size or header_pixel_a
    if pixel_a is None:
        raise CLIError(f"--volume {args.volume} has no pixel size in its header (0); "
                       "give it with --pixel-size")
    old_box = volume.shape[0]
    if old_box != args.box:
        log.info("resampling %s from %d to %d px", args.volume, old_box, args.box)
        volume = fourier_crop_volume(volume, args.box)
        pixel_a = pixel_a * old_box / args.box
    return volume, float(pixel_a)


def main(args) -> int:
    summary = Summary("simulate")
    _check(args)
    out = ensure_out_dir(args.out)
    volume, pixel_a = _load_source(args)

    from ..core.io import write_mrc, write_particles
    from ..core.runtime.progress import Progress
    from ..core.simulate import simulate_particles

    log.info("simulating %d particles, box %d px, %.3f A/px, SNR %g, CTF %s, max shift %g px",
             args.n, args.box, pixel_a, args.snr, "on" if args.ctf else "off", args.max_shift)
    with Progress(args.n, "simulate") as progress:
        images, particles = simulate_particles(volume, args.n, pixel_size_a=pixel_a,
                                               snr=args.snr, ctf=args.ctf,
                                               max_shift_px=args.max_shift, seed=args.seed,
                                               progress=progress)
    stack, star, ref = (os.path.join(out, name) for name in OUTPUTS)
    write_mrc(ref, volume, pixel_size_a=pixel_a)
    write_particles(stack, star, images, particles)
    source = "phantom" if args.volume is None else args.volume
    summary.wrote(star, f"{args.n} particles with their true poses and CTFs") \
        .wrote(stack, f"{args.n} images of {args.box} px, {pixel_a:.4g} A/px") \
        .wrote(ref, f"reference map from the {source}, {args.box} px") \
        .add("simulation", f"SNR {args.snr:g}, CTF {'on' if args.ctf else 'off'}, "
                           f"max shift {args.max_shift:g} px, seed {args.seed}").print()
    return 0
