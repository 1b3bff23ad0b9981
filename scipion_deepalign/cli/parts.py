"""``--part I/N`` and ``--jobs N`` / ``--gpus LIST`` of the commands that process particles
one by one (``deepalign predict``, ``deepalign align``); the split and the merge themselves
are :mod:`scipion_deepalign.core.io.parts`.

With ``--part I/N`` a command reads the whole ``--particles`` STAR, keeps part I of N (a
contiguous, balanced slice of the input order) and writes ``--out`` with a part record;
``deepalign merge`` joins the parts. A part whose ``--out`` already holds that part of that
input is not recomputed (a killed array job resumes). ``--jobs N`` runs the N parts as child
processes on this machine (``--gpus 0,1``: one per GPU, round-robin) and merges them into
``--out``; their files are in ``<out>_parts/``.
"""
from __future__ import annotations

import logging
import os
import sys

from .common import CLIError, parse_int_list, positive_int, run_children

log = logging.getLogger("deepalign")

#: options a part child gets from its parent instead of the parent's own values
_PARENT_ONLY = ("--jobs", "--gpus", "--out", "--part")


def add_part_args(parser, *, jobs: bool = False) -> None:
    """``--part I/N`` (and with ``jobs``: ``--jobs N``, ``--gpus LIST``)."""
    parser.add_argument("--part", metavar="I/N",
                        help="process only part I of N of --particles (contiguous, 1-based) "
                             "and write a part file for deepalign merge; a part already in "
                             "--out is not recomputed")
    if not jobs:
        return
    parser.add_argument("--jobs", type=positive_int, metavar="N",
                        help="split into N parts run side by side on this machine, then "
                             "merged into --out (parts kept in <out>_parts/)")
    parser.add_argument("--gpus", metavar="LIST",
                        help="comma-separated GPU ids: one part per GPU (or --jobs parts "
                             "shared round-robin), each child sees only its GPU")


def part_of(args):
    """``(I, N)`` of ``--part``, or None; :class:`CLIError` naming the option."""
    from ..core.io import parse_part

    if getattr(args, "part", None) is None:
        return None
    try:
        return parse_part(args.part)
    except ValueError as exc:
        raise CLIError(f"--part: {exc}") from None


def select_part(args, particles):
    """``(particles of the part, its PartRecord)``; the record is None without ``--part``."""
    from ..core.io import part_record, part_rows

    part = part_of(args)
    if part is None:
        return particles, None
    try:
        record = part_record(particles, *part, options=_result_words(args))
    except ValueError as exc:
        raise CLIError(f"--part {args.part}: {exc}") from None
    log.info("part %d/%d: particles %d-%d of %d", *part, record.first_row + 1,
             record.stop_row, len(particles))
    return particles.subset(part_rows(len(particles), *part)), record


def part_is_done(args, record) -> bool:
    """Whether ``--out`` already holds this part (then the command has nothing to do)."""
    from ..core.io import is_complete_part

    if record is None or not is_complete_part(args.out, record):
        return False
    print(f"{args.out}: part {record.index}/{record.n_parts} already done, not recomputed")
    return True


def write_output(path, particles, record) -> None:
    """``--out``: a part file (with its record) under ``--part``, else a plain STAR."""
    from ..core.io import write_part_star, write_particles_star

    if record is None:
        write_particles_star(path, particles)
    else:
        write_part_star(path, particles, record)


# ----------------------------------------------------------------------------- --jobs
def job_count(args):
    """Number of part children to run (None: run in this process)."""
    gpus = parse_int_list(getattr(args, "gpus", None), "--gpus")
    jobs = getattr(args, "jobs", None) or (len(gpus) if gpus else None)
    if jobs is None or (jobs == 1 and not gpus):
        return None
    if getattr(args, "part", None) is not None:
        raise CLIError("--part runs one part: give it without --jobs or --gpus")
    return jobs


def _common_words(argv):
    """The command's words without :data:`_PARENT_ONLY` (what every part shares)."""
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in _PARENT_ONLY:
            skip = True
        elif not word.startswith(tuple(o + "=" for o in _PARENT_ONLY)):
            words.append(word)
    return words


def _result_words(args):
    """The words that decide a part's result (no verbosity), for its record."""
    words = _common_words(getattr(args, "_argv", None) or [])
    return [w for w in words if w not in ("-v", "-vv", "-vvv", "--verbose")]


def _child_argv(argv, index, n_parts, out):
    """The parent's common words plus this part's ``--part``/``--out``."""
    return [sys.executable, "-m", "scipion_deepalign.cli", *_common_words(argv),
            "--part", f"{index}/{n_parts}", "--out", out]


def run_jobs(args, n_jobs) -> int:
    """Run ``n_jobs`` part children of this command, then merge them into ``--out``."""
    from ..core.io import merge_parts, part_path
    gpus = parse_int_list(getattr(args, "gpus", None), "--gpus")
    paths = [part_path(args.out, i, n_jobs) for i in range(1, n_jobs + 1)]
    os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
    commands = [_child_argv(args._argv, i + 1, n_jobs, p) for i, p in enumerate(paths)]
    envs = None
    if gpus:
        envs = [dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpus[i % len(gpus)]))
                for i in range(n_jobs)]
    codes = run_children(commands, envs)
    failed = [p for p, code in zip(paths, codes) if code != 0]
    if failed:
        log.error("parts failed (run again to redo only them): %s", ", ".join(failed))
        return max(codes)
    merged = merge_parts(paths, args.out)
    print(f"wrote {args.out}: {len(merged)} particles merged from {n_jobs} parts")
    return 0
