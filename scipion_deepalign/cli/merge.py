"""``deepalign merge``: join the part files of ``predict``/``align --part I/N`` into one STAR.

The parts may be given in any order (e.g. a shell glob); the output lists the particles in
the order of the input that was split. A set that is not exactly parts 1..N of one input
(a part missing or given twice, parts of another split or another input) is refused with
a message naming the files; the rules are in :mod:`scipion_deepalign.core.io.parts`.
"""
from __future__ import annotations

import argparse
import logging

from .common import CLIError, check_file_exists

log = logging.getLogger("deepalign")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", required=True, nargs="+", metavar="PART.star",
                        help="the part files (any order), e.g. parts/part_*.star")
    parser.add_argument("--out", required=True, metavar="ALL.star", help="merged STAR")


def main(args) -> int:
    from ..core.io import merge_parts

    if not args.out.lower().endswith(".star"):
        raise CLIError(f"--out must be a .star file name, got {args.out}")
    for path in args.inputs:
        check_file_exists(path, "--inputs")
    try:
        merged = merge_parts(args.inputs, args.out)
    except ValueError as exc:
        raise CLIError(f"--inputs: {exc}") from None
    print(f"wrote {args.out}: {len(merged)} particles from {len(args.inputs)} parts")
    return 0
