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
import re
import subprocess
import sys
import warnings

from ..core import defaults

__all__ = ["CLIError", "check_file_exists", "check_positive", "check_box",
           "check_choice", "ensure_out_dir", "positive_int", "positive_float", "step_deg",
           "setup_logging", "add_logging_args", "logging_options", "show_plain_warning",
           "LOG_NAME", "add_particle_args",
           "read_particles", "load_particles_images", "lazy_particles_images",
           "particle_options", "user_words", "run_children", "parse_int_list", "set_devices"]

#: Core argument names -> the option a command-line user knows them by (see user_words).
OPTION_WORDS = {
    "pixel_size_a": "--pixel-size", "max_shift_px": "--max-shift", "out_dir": "--out",
    "model_dir": "--model", "datadir": "--datadir", "target_resolution_a":
    "--target-resolution", "target_box_px": "--box", "spacing_deg": "--spacing",
    "psi_step_deg": "--psi-step", "step_deg": "--step", "top_k": "--top-k",
    "batch_size": "--batch-size", "learning_rate": "--learning-rate",
    "mask_radius_a": "--mask-radius",
}
#: Advice meant for library callers -> what a command-line user can do instead.
ADVICE_WORDS = {"pass box_px": "name the folder of the stacks with --datadir DIR"}
NO_PARTICLE_LEFT = "--skip-bad: no particle is left (every image holds NaN or Inf)"
_WORD = re.compile(r"(?<![\w-])(" + "|".join(OPTION_WORDS) + r")(?!\w)")

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
#: argparse ``type=`` of an angular step: in (0, ``defaults.MAX_STEP_DEG``] degrees.
step_deg = _typed(float, lambda v: 0 < v <= defaults.MAX_STEP_DEG,
                  f"in (0, {defaults.MAX_STEP_DEG:g}] degrees")


def user_words(message: str) -> str:
    """A core message in the command line's words: argument names become option names.

    ``"pass pixel_size_a"`` -> ``"pass --pixel-size"``; a missing image stack gets a hint
    about ``--datadir``.
    """
    message = str(message)
    for advice, words in ADVICE_WORDS.items():
        message = message.replace(advice, words)
    message = _WORD.sub(lambda m: OPTION_WORDS[m.group(1)], message)
    if message.startswith("image stack not found") and "--datadir" not in message:
        message += "; --datadir DIR names the folder of the stacks"
    return message


# ----------------------------------------------------------------------------- particles
def add_particle_args(parser: argparse.ArgumentParser, *, images: bool = True) -> None:
    """``--datadir``, ``--pixel-size`` and (with ``images``) ``--skip-bad``: options of every
    command that reads particles (see :func:`read_particles`, :func:`load_particles_images`)."""
    parser.add_argument("--datadir", metavar="DIR",
                        help="folder tried first for relative image stacks (default: the "
                             "STAR file's folder, then its parents, then the current folder)")
    parser.add_argument("--pixel-size", type=positive_float, metavar="A",
                        help="pixel size in Angstrom (default: from the STAR file, else the "
                             "stack header)")
    if not images:
        return
    parser.add_argument("--skip-bad", action="store_true",
                        help="drop particles whose images hold NaN or Inf, with a warning "
                             "(default: stop and name them)")


def read_particles(args, path, option: str = "--particles"):
    """Particles of the STAR ``path`` given by ``option``, read with ``--datadir`` and
    ``--pixel-size``; :class:`CLIError` for a missing file or ``--datadir``. A command with
    ``--ctf`` on says so when the file has no CTF."""
    from ..core.io import read_particles_star

    check_file_exists(path, option)
    datadir = getattr(args, "datadir", None)
    if datadir is not None and not os.path.isdir(datadir):
        raise CLIError(f"--datadir: folder not found: {datadir}")
    particles = read_particles_star(path, pixel_size_a=getattr(args, "pixel_size", None),
                                    datadir=datadir)
    if particles.ctf is None and getattr(args, "ctf", False):  # a command that uses the CTF
        logging.getLogger(LOG_NAME).warning(
            "%s (%s) has no CTF (no rlnDefocusU column): its particles are compared without "
            "one - right for simulated or CTF-corrected images only", path, option)
    return particles


def load_particles_images(args, particles, index=None):
    """``(particles, images)``, without the non-finite images under ``--skip-bad``."""
    from ..core.io import load_particle_images

    rows, images = load_particle_images(particles, index,
                                        skip_bad=getattr(args, "skip_bad", False))
    if len(rows) == 0:
        raise CLIError(NO_PARTICLE_LEFT)
    return particles.subset(rows), images


def lazy_particles_images(args, particles):
    """``(particles, images)`` as :func:`load_particles_images`, the images read on demand.

    ``images`` is a :class:`~..core.io.ParticleImages` (memory-mapped, read in blocks by
    its user). Every image is checked first, in chunks, before any heavy work: a non-finite
    one stops the command naming the particles, or under ``--skip-bad`` is dropped.
    """
    from ..core.io import ParticleImages, finite_particle_rows

    rows = finite_particle_rows(particles, skip_bad=getattr(args, "skip_bad", False))
    if len(rows) == 0:
        raise CLIError(NO_PARTICLE_LEFT)
    if len(rows) < len(particles):
        particles = particles.subset(rows)
    return particles, ParticleImages(particles)


def particle_options(args) -> list[str]:
    """The :func:`add_particle_args` options of ``args`` as command-line words."""
    words = []
    if getattr(args, "datadir", None) is not None:
        words += ["--datadir", str(args.datadir)]
    if getattr(args, "pixel_size", None) is not None:
        words += ["--pixel-size", repr(args.pixel_size)]
    return words + (["--skip-bad"] if getattr(args, "skip_bad", False) else [])


def run_children(commands, envs=None) -> list[int]:
    """Run ``commands`` (argv lists) side by side as child processes; their exit codes.

    ``envs``: one environment per command (e.g. its ``CUDA_VISIBLE_DEVICES``), else ours.
    Used by the commands that fan out over GPUs or parts (``train --gpus``, ``--jobs``).
    """
    envs = envs or [None] * len(commands)
    children = [subprocess.Popen(cmd, env=env) for cmd, env in zip(commands, envs)]
    return [child.wait() for child in children]


def parse_int_list(text, option: str) -> list[int] | None:
    """``"1,5,7"`` -> ``[1, 5, 7]`` (None for None); :class:`CLIError` naming ``option``."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise CLIError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise CLIError(f"{option} is empty")
    return values


def set_devices(gpus, threads) -> None:
    """Environment for the network library; must run before Keras is imported."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ[name] = str(threads)
    if "keras" in sys.modules and gpus is not None:
        logging.getLogger(LOG_NAME).warning("--gpus given after Keras was imported: it may be "
                                            "ignored")


def add_logging_args(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """``-v``, ``-q`` and ``--progress-every``, accepted before and after the command name
    (``default``: the top-level parser sets the defaults, the sub-parsers leave them)."""
    from ..core.runtime.progress import DEFAULT_LOG_STEP

    def value(v):
        return v if default else argparse.SUPPRESS

    parser.add_argument("-v", "--verbose", action="count", default=value(0),
                        help="-vv adds debug lines (progress lines are shown by default)")
    parser.add_argument("-q", "--quiet", action="store_true", default=value(False),
                        help="no progress lines or bars: warnings, errors and the summary only")
    parser.add_argument("--progress-every", type=positive_float, default=value(None),
                        metavar="PERCENT", help="percent of a step between two progress "
                        "lines when stderr is not a terminal; default "
                        f"{100 * DEFAULT_LOG_STEP:g}")
    parser.add_argument("--log-stdout", action="store_true", default=value(False),
                        help="progress and warning lines on stdout instead of stderr (for "
                             "logs that keep the two apart, e.g. Scipion's step logs)")


def logging_options(args) -> list[str]:
    """The :func:`add_logging_args` options of ``args`` as command-line words (for children)."""
    words = ["-v"] * int(getattr(args, "verbose", 0) or 0)
    if getattr(args, "quiet", False):
        words.append("-q")
    if getattr(args, "progress_every", None) is not None:
        words += ["--progress-every", repr(args.progress_every)]
    if getattr(args, "log_stdout", False):
        words.append("--log-stdout")
    return words


def setup_logging(verbose: int = 0, *, quiet: bool = False, progress_every: float | None = None,
                  stream=None) -> logging.Logger:
    """Log to stderr: progress lines (INFO) by default, DEBUG with ``-vv``, warnings only
    with ``quiet`` (``-q``).

    Configures the ``deepalign`` logger (commands) and ``scipion_deepalign`` (the loggers of
    core modules, ``logging.getLogger(__name__)``, and
    :mod:`~scipion_deepalign.core.runtime.progress`);
    returns the former. ``progress_every`` (percent) sets the step between progress lines;
    ``stream`` is where the lines go (default stderr).
    Python warnings (``warnings.warn`` in the core) print as plain ``WARNING: <text>`` lines.
    """
    from ..core.runtime.progress import DEFAULT_LOG_STEP, set_log_step

    warnings.showwarning = show_plain_warning
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    if progress_every is not None and not 0 < progress_every <= 100:
        raise CLIError(f"--progress-every must be in (0, 100], got {progress_every}")
    set_log_step(DEFAULT_LOG_STEP if progress_every is None else progress_every / 100)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter("%(asctime)s deepalign: %(message)s", "%H:%M:%S"))
    for name in (LOG_NAME, "scipion_deepalign"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return logging.getLogger(LOG_NAME)


def show_plain_warning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` for a command line: ``WARNING: <text>``, no source location."""
    stream = sys.stderr if file is None else file
    try:
        stream.write(f"WARNING: {user_words(message)}\n")
    except OSError:  # stderr closed: nowhere to warn
        pass
