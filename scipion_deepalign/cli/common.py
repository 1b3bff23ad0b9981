"""Helpers shared by the ``deepalign`` sub-commands: argument checks, errors, logging.

A sub-command module ``scipion_deepalign.cli.<name>`` defines ``add_args(parser)`` and
``main(args) -> int``. Checks on the arguments that run before any heavy work raise
:class:`CLIError` (or ``ValueError``/``FileNotFoundError``); the dispatcher turns them into
``deepalign <name>: error: <message>`` on stderr and exit code 2, like argparse does.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["CLIError", "check_file_exists", "check_positive", "check_box",
           "check_choice", "ensure_out_dir", "positive_int", "positive_float",
           "setup_logging", "LOG_NAME"]

LOG_NAME = "deepalign"


class CLIError(ValueError):
    """Bad input found by a command before heavy work; reported as a one-line error, exit 2.

    Parameters
    ----------
    message : str
        Should name the offending option, e.g. ``"--n must be positive, got 0"``.
    """


def check_file_exists(path, option: str) -> str:
    """``path`` if it is an existing file, else :class:`CLIError` naming ``option``."""
    if path is None or not os.path.isfile(path):
        raise CLIError(f"{option}: file not found: {path}")
    return os.fspath(path)


def check_positive(value, option: str, *, allow_zero=False):
    """``value`` if > 0 (or >= 0 with ``allow_zero``), else :class:`CLIError` naming it."""
    if value is None:
        return value
    if not (value >= 0 if allow_zero else value > 0):
        word = "non-negative" if allow_zero else "positive"
        raise CLIError(f"{option} must be {word}, got {value}")
    return value


def check_box(value, option: str = "--box", *, minimum=16):
    """An even image side of at least ``minimum`` pixels, else :class:`CLIError`."""
    if value < minimum or value % 2:
        raise CLIError(f"{option} must be an even number of pixels >= {minimum}, got {value}")
    return value


def check_choice(value, choices, option: str):
    if value not in choices:
        raise CLIError(f"{option} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_symmetry(name, option: str = "--symmetry") -> str:
    """The normalised point-group name, or :class:`CLIError` naming the option."""
    from ..core.symmetry import normalise_symmetry

    try:
        return normalise_symmetry(name)
    except ValueError as exc:
        raise CLIError(f"{option}: {exc}") from None


def ensure_out_dir(path, option: str = "--out") -> str:
    """Create the output folder (and parents); :class:`CLIError` if that is impossible."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{option}: cannot create folder {path}: {exc.strerror}") from exc
    return os.fspath(path)


def _typed(kind, test, word):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {word}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


#: argparse ``type=`` that accepts integers > 0 (argparse then names the option on error).
positive_int = _typed(int, lambda v: v > 0, "a positive integer")
#: argparse ``type=`` that accepts floats > 0.
positive_float = _typed(float, lambda v: v > 0, "positive")


def setup_logging(verbose: int = 0) -> logging.Logger:
    """Log to stderr: warnings by default, progress lines (INFO) with ``-v``, DEBUG with ``-vv``.

    Configures the ``deepalign`` logger (commands) and ``scipion_deepalign`` (the loggers of
    core modules, ``logging.getLogger(__name__)``); returns the former.
    """
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s deepalign: %(message)s", "%H:%M:%S"))
    for name in (LOG_NAME, "scipion_deepalign"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return logging.getLogger(LOG_NAME)
