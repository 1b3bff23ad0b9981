"""``deepalign <command>``: the command-line interface.

Each command lives in ``scipion_deepalign.cli.<command>`` and defines ``add_args(parser)``
and ``main(args) -> int``. Only the module of the command being run is imported (keeping
``deepalign --help`` fast, without TensorFlow), and a command whose module is missing or
broken does not break the others.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..version import __version__
from .common import CLIError, add_logging_args, setup_logging, user_words

__all__ = ["main", "COMMANDS", "build_parser"]

#: Sub-commands and their one-line help, in the order ``--help`` lists them.
COMMANDS = {
    "simulate": "Simulate particles (phantom or a map, CTF, noise, shifts) with known poses",
    "subset": "A random or view-balanced fraction of a particle set (e.g. for training)",
    "train": "Train the region classifier (by default from projections of the map)",
    "predict": "Predict the most probable angular regions of each particle",
    "align": "Assign angles and shifts locally within the predicted regions",
    "run": "Full pipeline: train, predict and align in one go",
    "classify": "3D classes by iteration: align against K class maps, reconstruct, repeat",
    "reconstruct": "Reconstruct a 3D map (and half maps) from aligned particles",
    "fsc": "Fourier shell correlation between two maps and its resolution",
    "consensus": "Agreement between two or more angular assignments",
    "plot": "Draw what the Scipion viewers draw: distribution, training, angular-differences, "
            "fsc",
    "merge": "Join the part outputs of predict/align --part I/N in the input order",
    "demo": "End-to-end demonstration on simulated data",
}


def build_parser(command=None, module=None) -> argparse.ArgumentParser:
    """The top-level parser; ``module.add_args`` gives the options of ``command`` (if given).

    Other commands get only their help line, so ``--help`` never imports their modules.
    """
    parser = argparse.ArgumentParser(
        prog="deepalign",
        description="DeepAlign: 3D angular assignment of cryo-EM particles by regionalised CNNs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_logging_args(parser, default=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_logging_args(p, default=False)
        if name == command and module is not None:
            module.add_args(p)
            p.set_defaults(_main=module.main)
    return parser


def _command_of(argv):
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main(argv=None) -> int:
    """Run ``deepalign`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Exit codes: 0 success, 1 failure during the computation, 2 bad arguments or input
    (argparse errors, and :class:`~.common.CLIError`/``ValueError``/``FileNotFoundError``
    raised before the command's heavy work, reported as ``deepalign <cmd>: error: ...``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # TensorFlow's C++ start-up chatter is noise on a command line; -vv shows Python logging.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = _command_of(argv)
    module = None
    if command is not None:
        try:
            module = importlib.import_module(f"{__name__}.{command}")
        except ImportError as exc:
            print(f"deepalign {command}: error: command not available ({exc})", file=sys.stderr)
            return 2
    parser = build_parser(command, module)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    args._argv = argv  # the words, for commands that re-run themselves in parts (--jobs)
    logger = setup_logging(args.verbose, quiet=args.quiet, progress_every=args.progress_every,
                           stream=sys.stdout if args.log_stdout else None)
    prog = f"deepalign {args.command}"
    try:
        return int(args._main(args) or 0)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        logger.debug("details", exc_info=True)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {user_words(msg)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130

