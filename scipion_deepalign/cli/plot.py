"""``deepalign plot``: the figures of the Scipion viewers, from files, as PNG, SVG or PDF.

* ``distribution`` -- projection directions of a STAR file's particles on the sphere;
* ``training`` -- loss and accuracy per epoch of a model folder's networks (and, with
  ``--regions-out``, the regions on the sphere);
* ``angular-differences`` -- sorted per-particle differences between two or more STAR files;
* ``fsc`` -- FSC curves of map pairs, or of CSV files written by ``deepalign fsc --csv``.

Every figure comes from :mod:`scipion_deepalign.core.plots`, the code the viewers use; the
format follows the extension of ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import os

import numpy as np

from ..core import defaults
from .common import CLIError, check_file_exists, check_symmetry

FORMATS = (".png", ".svg", ".pdf")
KINDS = {
    "distribution": "projection directions of particles on the sphere",
    "training": "training curves of a model folder",
    "angular-differences": "sorted angular differences between assignments",
    "fsc": "FSC curves of map pairs or of 'deepalign fsc --csv' files",
}


def add_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    parsers = {kind: sub.add_parser(kind, help=text, description=text)
               for kind, text in KINDS.items()}
    for p in parsers.values():
        p.add_argument("--out", required=True, metavar="FIG.png",
                       help="figure file: .png, .svg or .pdf")
    p = parsers["distribution"]
    p.add_argument("--particles", required=True, metavar="ALIGNED.star",
                   help="RELION STAR with rlnAngleRot/Tilt")
    p.add_argument("--symmetry", default=None,
                   help="fold the directions into this group's asymmetric unit")
    p.add_argument("--title", default=None, help="default: the file name and the count")
    p = parsers["training"]
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="deepalign train folder")
    p.add_argument("--regions-out", default=None, metavar="REGIONS.png",
                   help="also draw the regions on the sphere (validation accuracy of each "
                        "regional network, or training particles per region of the shared one)")
    p = parsers["angular-differences"]
    p.add_argument("--inputs", nargs="+", required=True, metavar="A.star",
                   help="two or more STAR files with poses of the same particles")
    p.add_argument("--symmetry", default="c1", help="point group; default c1")
    p.add_argument("--threshold", type=float, default=defaults.CONSENSUS_MAX_ANGLE_DEG,
                   metavar="DEG", help="line drawn at this angle; default %(default)g")
    p = parsers["fsc"]
    p.add_argument("--maps", nargs=2, action="append", default=[], metavar=("MAP1", "MAP2"),
                   help="a pair of maps (repeat for more curves)")
    p.add_argument("--csv", action="append", default=[], metavar="FSC.csv",
                   help="a curve written by 'deepalign fsc --csv' (repeatable)")
    p.add_argument("--label", action="append", default=None,
                   help="name of each curve, maps first (default: from the file names)")
    p.add_argument("--mask-radius", type=float, default=None, metavar="A",
                   help="soft spherical mask radius in Angstrom for the map pairs")


def _check_out(path) -> str:
    if os.path.splitext(path)[1].lower() not in FORMATS:
        raise CLIError(f"--out must end in {', '.join(FORMATS)}, got {path}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"--out: folder not found: {folder}")
    return path


def _stem(path) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _distribution(args):
    from ..core.io import read_particles_star
    from ..core.plots import plot_angular_distribution

    particles = read_particles_star(check_file_exists(args.particles, "--particles"))
    if not particles.has_poses:
        raise CLIError(f"--particles {args.particles} has no angles (rlnAngleRot/Tilt/Psi)")
    angles = particles.angles_deg
    if args.symmetry is not None:
        from ..core.symmetry import to_asymmetric_unit

        angles = to_asymmetric_unit(angles, check_symmetry(args.symmetry))
    title = args.title or f"{os.path.basename(args.particles)} ({len(angles)} particles)"
    plot_angular_distribution(angles, title=title, path=args.out)
    return [args.out]


def _training(args):
    from ..core.cnn.history import read_histories, region_accuracy, shared_region_counts
    from ..core.plots import plot_region_accuracy, plot_region_counts, plot_training_history

    if not os.path.isdir(args.model):
        raise CLIError(f"--model: folder not found: {args.model}")
    histories = read_histories(args.model)
    if not histories:
        raise CLIError(f"--model {args.model}: no trained network (history_*.json) yet")
    written = [args.out]
    if args.regions_out is not None:
        _check_out(args.regions_out)
    plot_training_history(histories, path=args.out)
    if args.regions_out is not None:
        shared = shared_region_counts(args.model)
        if shared is not None:
            plot_region_counts(shared[0], shared[1], overall_accuracy=shared[2],
                               path=args.regions_out)
        else:
            plot_region_accuracy(*region_accuracy(args.model), path=args.regions_out)
        written.append(args.regions_out)
    return written


def _angular_differences(args):
    from ..core.io import read_particles_star
    from ..core.judge.consensus import angular_consensus, match_particles
    from ..core.plots import plot_sorted_angular_differences

    if len(args.inputs) < 2:
        raise CLIError(f"--inputs needs at least two STAR files, got {len(args.inputs)}")
    inputs = [read_particles_star(check_file_exists(p, "--inputs")) for p in args.inputs]
    for path, parts in zip(args.inputs, inputs):
        if not parts.has_poses:
            raise CLIError(f"--inputs {path}: the particles have no poses")
    try:
        _, index_lists = match_particles(*[p.image_names for p in inputs])
    except ValueError as exc:
        raise CLIError(f"--inputs: {exc}") from None
    result = angular_consensus([p.angles_deg[i] for p, i in zip(inputs, index_lists)],
                               symmetry=check_symmetry(args.symmetry),
                               max_angle_deg=args.threshold)
    names = [_stem(p) for p in args.inputs]
    plot_sorted_angular_differences(
        [result.direction_diff_deg[:, k] for k in range(len(result.pairs))],
        [f"{names[i]} vs {names[j]}" for i, j in result.pairs],
        threshold_deg=args.threshold, path=args.out)
    return [args.out]


def read_fsc_csv(path):
    """The ``FSCResult`` of a ``deepalign fsc --csv`` file (pixel size from its Nyquist)."""
    from ..core.judge.fsc import fsc_from_curve

    with open(check_file_exists(path, "--csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        freq = np.array([float(r["frequency_inv_a"]) for r in rows])
        values = np.array([float(r["fsc"]) for r in rows])
        return fsc_from_curve(freq, values)
    except (KeyError, ValueError) as exc:
        raise CLIError(f"--csv {path}: not a 'deepalign fsc --csv' file ({exc})") from None


def _fsc(args):
    from ..core.io import read_volume
    from ..core.judge.fsc import fsc_curve
    from ..core.plots import plot_fsc
    from .fsc import map_pair_label

    if not args.maps and not args.csv:
        raise CLIError("give at least one --maps MAP1 MAP2 or --csv FSC.csv")
    results, labels = [], []
    for path1, path2 in args.maps:
        (map1, px1), (map2, _) = (read_volume(check_file_exists(p, "--maps"))
                                  for p in (path1, path2))
        if map1.shape != map2.shape or px1 is None:
            raise CLIError(f"--maps {path1} {path2}: the maps must have the same shape and a "
                           "pixel size in the header")
        results.append(fsc_curve(map1, map2, pixel_size_a=px1, mask_radius_a=args.mask_radius))
        labels.append(map_pair_label(path1, path2))
    for path in args.csv:
        results.append(read_fsc_csv(path))
        labels.append(_stem(path))
    if args.label is not None:
        if len(args.label) != len(results):
            raise CLIError(f"--label given {len(args.label)} times for {len(results)} curves")
        labels = args.label
    plot_fsc(results, labels, path=args.out)
    return [args.out]


_DRAW = {"distribution": _distribution, "training": _training,
         "angular-differences": _angular_differences, "fsc": _fsc}


def main(args) -> int:
    _check_out(args.out)
    for path in _DRAW[args.kind](args):
        print(f"wrote {path}")
    return 0
