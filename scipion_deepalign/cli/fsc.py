"""``deepalign fsc``: Fourier shell correlation of two maps, its resolutions, plot and table.

Prints the 0.143 and 0.5 resolutions; ``--csv`` writes one row per shell (``shell``,
``frequency_inv_a``, ``resolution_a``, ``fsc``), ``--plot`` a PNG of the curve.
"""
from __future__ import annotations

import argparse
import csv
import os

import numpy as np

from ..core.defaults import same_pixel_size
from .common import CLIError, check_file_exists, check_positive
from .summary import Summary


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map1", metavar="MAP1.mrc")
    parser.add_argument("map2", metavar="MAP2.mrc")
    parser.add_argument("--mask-radius", type=float, default=None, metavar="A",
                        help="soft spherical mask radius in Angstrom (default: no mask)")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="pixel size in Angstrom (default: from MAP1's header)")
    parser.add_argument("--plot", default=None, metavar="FSC.png",
                        help="draw the curve (.png, .svg or .pdf); more curves: deepalign plot "
                             "fsc")
    parser.add_argument("--csv", default=None, metavar="FSC.csv", help="write the curve as CSV")


def _pixel_size(args, px1, px2) -> float:
    if args.pixel_size is not None:
        return args.pixel_size
    if px1 is None and px2 is None:
        raise CLIError(f"{args.map1} and {args.map2} have no pixel size in their headers; "
                       "give it with --pixel-size")
    if px1 is not None and px2 is not None and not same_pixel_size(px1, px2):
        raise CLIError(f"the maps have different pixel sizes ({px1:.4g} A in {args.map1}, "
                       f"{px2:.4g} A in {args.map2}); resample one or force --pixel-size")
    return px1 if px1 is not None else px2


def map_pair_label(path1, path2) -> str:
    """How a curve between two map files is named: ``"half1 vs half2"`` (file stems)."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in (path1, path2)]
    return " vs ".join(stems)


def write_fsc_csv(path, result) -> None:
    """One row per shell: shell, frequency_inv_a, resolution_a (inf at DC), fsc."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["shell", "frequency_inv_a", "resolution_a", "fsc"])
        for s, (f, c) in enumerate(zip(result.frequency_inv_a, result.fsc)):
            writer.writerow([s, f"{f:.6g}", f"{1.0 / f:.6g}" if f > 0 else "inf", f"{c:.6f}"])


def main(args) -> int:
    from ..core.io import read_volume

    check_file_exists(args.map1, "MAP1")
    check_file_exists(args.map2, "MAP2")
    check_positive(args.mask_radius, "--mask-radius")
    check_positive(args.pixel_size, "--pixel-size")
    map1, px1 = read_volume(args.map1)
    map2, px2 = read_volume(args.map2)
    if map1.shape != map2.shape:
        raise CLIError(f"the maps differ in shape: {args.map1} is {map1.shape}, "
                       f"{args.map2} is {map2.shape}")
    pixel_size_a = _pixel_size(args, px1, px2)
    if args.mask_radius is not None and args.mask_radius / pixel_size_a < 1:
        raise CLIError(f"--mask-radius {args.mask_radius} A is below one pixel "
                       f"({pixel_size_a:.4g} A)")

    from ..core.judge.fsc import fsc_curve

    result = fsc_curve(map1, map2, pixel_size_a=pixel_size_a, mask_radius_a=args.mask_radius)
    summary = Summary("fsc")
    if args.csv:
        write_fsc_csv(args.csv, result)
        summary.wrote(args.csv, f"{len(result.fsc)} shells")
    if args.plot:
        from ..core.plots import plot_fsc

        plot_fsc([result], [map_pair_label(args.map1, args.map2)], path=args.plot)
        summary.wrote(args.plot, "FSC curve")
    summary.add("maps", f"{args.map1} vs {args.map2} ({map1.shape[0]} px, "
                        f"{pixel_size_a:.4g} A/px)")
    summary.add("FSC 0.143 resolution", f"{result.resolution_0143_a:.2f} A")
    summary.add("FSC 0.5 resolution", f"{result.resolution_05_a:.2f} A")
    summary.add("mean FSC up to Nyquist", f"{np.mean(result.fsc[1:]):.3f}").print()
    return 0
