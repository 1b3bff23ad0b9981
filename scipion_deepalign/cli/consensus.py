"""``deepalign consensus``: keep the particles on whose poses two or more assignments agree.

Particles are matched across the ``--inputs`` STAR files by image name (index and stack file
name); the inputs must share box and pixel size. Writes into ``--out``:

* ``agree.star`` / ``disagree.star`` -- the common particles (metadata of input 1, image paths
  rewritten for their new folder) with the poses of input ``--keep-from``; by default an
  agreeing particle gets the poses of the first input of its agreeing group (input 1 unless
  ``--min-agree`` lets it be outvoted) and a disagreeing one those of input 1;
* ``differences.csv`` -- per particle: name, agree, and per pair of inputs ``i``-``j`` the
  direction, in-plane and shift differences (the one schema, written and read back by
  :mod:`scipion_deepalign.core.io.results`, also what the Scipion protocol reads);
* ``summary.json`` -- the counts and per-pair numbers of the printed summary
  (:func:`consensus_stats`).
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace

import numpy as np

from ..core import defaults
from .common import (
    CLIError,
    add_particle_args,
    check_file_exists,
    check_positive,
    check_symmetry,
    ensure_out_dir,
    read_particles,
)
from .summary import Summary

log = logging.getLogger("deepalign")

def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", nargs="+", required=True, metavar="A.star",
                        help="two or more STAR files with poses of the same particles")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    parser.add_argument("--max-angle", type=float, default=defaults.CONSENSUS_MAX_ANGLE_DEG,
                        metavar="DEG", help="largest angle between projection directions; "
                        "default %(default)g")
    parser.add_argument("--max-inplane", type=float, default=None, metavar="DEG",
                        help="largest in-plane difference (default: --max-angle)")
    parser.add_argument("--max-shift", type=float, default=None, metavar="PX",
                        help="largest shift difference in pixels (default: not checked)")
    parser.add_argument("--min-agree", type=int, default=None, metavar="M",
                        help="keep a particle when some M inputs agree pairwise "
                             "(default: all inputs)")
    parser.add_argument("--keep-from", type=int, default=None, metavar="K",
                        help="write the poses of input K (1-based); default: the first input "
                             "of each particle's agreeing group, else input 1")
    parser.add_argument("--plot", default=None, metavar="DIFF.png",
                        help="write the sorted angular differences as PNG")
    add_particle_args(parser, images=False)


def _check(args) -> None:
    n = len(args.inputs)
    if n < 2:
        raise CLIError(f"--inputs needs at least two STAR files, got {n}")
    for path in args.inputs:
        check_file_exists(path, "--inputs")
    check_positive(args.max_angle, "--max-angle")
    check_positive(args.max_inplane, "--max-inplane")
    check_positive(args.max_shift, "--max-shift")
    if args.min_agree is not None and not 2 <= args.min_agree <= n:
        raise CLIError(f"--min-agree must be between 2 and {n} (the number of inputs), "
                       f"got {args.min_agree}")
    if args.keep_from is not None and not 1 <= args.keep_from <= n:
        raise CLIError(f"--keep-from must be between 1 and {n}, got {args.keep_from}")


def _with_poses(matched, shift_sets, source, keep_from):
    """Input 1's particles with, per particle, the poses of input ``keep_from`` or ``source``."""
    which = np.where(source >= 0, source, 0) if keep_from is None \
        else np.full(len(source), keep_from - 1)
    angles = np.stack([p.angles_deg for p in matched])[which, np.arange(len(which))]
    shifts = np.stack(shift_sets)[which, np.arange(len(which))]
    return replace(matched[0], angles_deg=angles, shifts_px=shifts)


def consensus_stats(inputs, common, result) -> dict:
    """The numbers of the summary: ``n_inputs``, ``n_common``, ``n_agree``, ``pairs``
    (1-based), ``fraction_under_deg`` (threshold -> per pair) and ``median_angle_diff_deg``."""
    fractions = result.fraction_below(defaults.CONSENSUS_REPORT_THRESHOLDS_DEG)
    return {"n_inputs": [len(p) for p in inputs], "n_common": len(common),
            "n_agree": int(result.agree.sum()),
            "pairs": [[int(i) + 1, int(j) + 1] for i, j in result.pairs],
            "fraction_under_deg": {f"{t:g}": np.asarray(f, float).tolist()
                                   for t, f in fractions.items()},
            "median_angle_diff_deg": np.median(result.direction_diff_deg, axis=0).tolist()}


def main(args) -> int:
    from ..core.io import (
        CONSENSUS_OUTPUTS,
        write_differences_csv,
        write_json,
        write_particles_star,
    )
    from ..core.judge.consensus import angular_consensus, check_same_geometry, match_particles

    _check(args)
    symmetry = check_symmetry(args.symmetry)
    inputs = [read_particles(args, path, "--inputs") for path in args.inputs]
    for path, parts in zip(args.inputs, inputs):
        if not parts.has_poses:
            raise CLIError(f"--inputs {path}: the particles have no poses "
                           "(rlnAngleRot/Tilt/Psi)")
    try:
        check_same_geometry(inputs, args.inputs)
        common, index_lists = match_particles(*[p.image_names for p in inputs])
    except ValueError as exc:
        raise CLIError(f"--inputs: {exc}") from None
    matched = [p.subset(idx) for p, idx in zip(inputs, index_lists)]
    shift_sets = [np.zeros((len(common), 2)) if p.shifts_px is None else p.shifts_px
                  for p in matched]
    result = angular_consensus(
        [p.angles_deg for p in matched], symmetry=symmetry, max_angle_deg=args.max_angle,
        max_inplane_deg=args.max_inplane, shift_sets=shift_sets, max_shift_px=args.max_shift,
        min_agree=args.min_agree)

    out = ensure_out_dir(args.out)
    keep = _with_poses(matched, shift_sets, result.source, args.keep_from)
    agree_path, disagree_path, csv_path, json_path = (os.path.join(out, name)
                                                      for name in CONSENSUS_OUTPUTS)
    for path, mask in ((agree_path, result.agree), (disagree_path, ~result.agree)):
        if np.any(mask):
            write_particles_star(path, keep.subset(mask))
        elif os.path.exists(path):
            os.remove(path)  # no stale file from an earlier run
    labels = [os.path.basename(p) for p in args.inputs]
    if len(set(labels)) < len(labels):
        labels = [f"{k + 1}:{label}" for k, label in enumerate(labels)]
    write_differences_csv(csv_path, common, result)
    stats = consensus_stats(inputs, common, result)
    write_json(json_path, stats)
    if args.plot:
        from ..core.plots import plot_sorted_angular_differences

        plot_sorted_angular_differences(
            [result.direction_diff_deg[:, p] for p in range(len(result.pairs))],
            [f"{labels[i]} vs {labels[j]}" for i, j in result.pairs],
            threshold_deg=args.max_angle, path=args.plot)

    _summarise(args, stats, labels, (agree_path, disagree_path, csv_path, json_path))
    return 0


def _summarise(args, stats, labels, paths) -> None:
    agree_path, disagree_path, csv_path, json_path = paths
    n_common, n_agree = stats["n_common"], stats["n_agree"]
    summary = Summary("consensus")
    if n_agree:
        summary.wrote(agree_path, f"{n_agree} particles that agree")
    if n_agree < n_common:
        summary.wrote(disagree_path, f"{n_common - n_agree} particles that disagree")
    summary.wrote(csv_path, "per-particle differences")
    summary.wrote(json_path, "the numbers of this summary")
    if args.plot:
        summary.wrote(args.plot, "sorted angular differences")
    summary.add("particles", f"{n_common} in common "
                             f"({', '.join(str(n) for n in stats['n_inputs'])} in the inputs); "
                             f"{n_agree} agree ({100 * n_agree / n_common:.1f}%), "
                             f"{n_common - n_agree} disagree")
    fractions = stats["fraction_under_deg"]
    for p, (i, j) in enumerate(stats["pairs"]):
        parts = ", ".join(f"{100 * fractions[t][p]:.1f}% < {t} deg" for t in fractions)
        summary.add(f"{labels[i - 1]} vs {labels[j - 1]}", "median direction difference "
                    f"{stats['median_angle_diff_deg'][p]:.2f} deg; {parts}")
    if n_agree == 0:
        summary.add("no particle agrees", f"{agree_path} not written")
    if n_agree == n_common:
        summary.add("every particle agrees", f"{disagree_path} not written")
    summary.print()
