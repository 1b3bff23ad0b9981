"""Options and outputs that several ``deepalign`` commands share (one definition each).

* :func:`add_schedule_args` -- what the network learns from and for how long (``train``,
  ``run``);
* :func:`add_search_args`, :func:`add_region_search_args`, :func:`search_options` -- the
  correlation search and its regional windows (``align``, ``run``);
* :func:`write_alignment_columns`, :func:`summarise_alignment` -- an alignment's STAR columns
  and its summary lines (``align``, ``run``);
* :func:`add_class_search_arg` -- ``--class-search`` (``run``, ``align``, ``classify``);
* :func:`add_target_resolution_arg` -- ``--target-resolution`` (``train``, ``run``, ``align``:
  one option, one default).
"""
from __future__ import annotations

import argparse

import numpy as np

from ..core import defaults
from ..core.io import columns
from .common import CLIError, positive_int, step_deg

__all__ = ["add_schedule_args", "add_search_args", "add_region_search_args", "search_options",
           "write_alignment_columns", "summarise_alignment", "add_target_resolution_arg",
           "target_resolution", "summarise_network_input", "add_class_search_arg"]


def add_schedule_args(parser: argparse.ArgumentParser) -> None:
    """What the network learns from and for how long (``deepalign train`` and ``run``)."""
    parser.add_argument("--training-source", choices=defaults.TRAINING_SOURCES,
                        default=defaults.train_default("training_source"),
                        help="projections: new images of --volume for every batch, with the "
                             "particles' CTFs and measured noise (no aligned particles "
                             "needed); particles: the aligned particles (the paper); both: "
                             "mixed; default %(default)s")
    parser.add_argument("--network", choices=defaults.NETWORKS,
                        default=defaults.train_default("network"),
                        help="one shared-trunk network (default, the more accurate in "
                             "docs/benchmarks_cnn.md) or one network per region (paper)")
    parser.add_argument("--trunk", choices=defaults.TRUNKS,
                        default=defaults.train_default("trunk"),
                        help="convolutions of the shared network on the image (the paper's) "
                             "or on its polar resampling, invariant to the in-plane rotation; "
                             "default %(default)s")
    parser.add_argument("--class-output", choices=defaults.CLASS_OUTPUTS,
                        default=defaults.train_default("class_output"),
                        help="several --volume maps: one softmax over the (class, region) "
                             "pairs (joint), or a class softmax beside the region softmax "
                             "(head); one map: ignored; default %(default)s")
    parser.add_argument("--epochs", type=positive_int, default=defaults.train_default("epochs"),
                        help="maximum epochs (the shared network stops when its held-out "
                             "region hit rate stops improving); default %(default)d")
    parser.add_argument("--images-per-epoch", type=positive_int,
                        default=defaults.train_default("images_per_epoch"), metavar="N",
                        help="training images per epoch of the shared network; "
                             "default %(default)d")
    parser.add_argument("--positives", "--positives-per-region", dest="positives",
                        type=positive_int, default=defaults.train_default("positives_per_region"),
                        metavar="N", help="augmented positives per region and epoch of a "
                        "regional network; default %(default)d")
    parser.add_argument("--noise-ramp-epochs", type=int, metavar="N",
                        default=defaults.train_default("noise_ramp_epochs"),
                        help="projections/both: the training projections' noise grows from a "
                             "tenth of the particles' to all of it over the first N epochs "
                             "(a curriculum; 0: off); default %(default)d")
    parser.add_argument("--retrain", action="store_true",
                        help="train again over a model already in the model folder; without "
                             "it a model trained for the same map, pixel size, box, "
                             "symmetry, spacing, CTF range and options is reused, and one "
                             "trained for other data is refused, naming what differs")


def target_resolution(text):
    """argparse type of ``--target-resolution``: ``"auto"``, ``"full"`` or Angstrom."""
    from ..core.resolution import parse_target_resolution

    try:
        return parse_target_resolution(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_target_resolution_arg(parser, *, training: bool, search: bool):
    """``--target-resolution`` (default :data:`~..core.defaults.TARGET_RESOLUTION`), with the
    words of the stages it sets: the network's input and/or the correlation search."""
    from ..core.cnn.config import DEFAULT_INPUT_BOX_PX

    auto = []
    if search:
        auto.append("the search at the resolution the reference supports (estimated from "
                    "--volume), the local refinement finer")
    if training:
        auto.append(f"the network on a {DEFAULT_INPUT_BOX_PX} px input")
    return parser.add_argument(
        "--target-resolution", type=target_resolution, default=defaults.TARGET_RESOLUTION,
        metavar="A|auto|full",
        help=f"images are Fourier-cropped so that Nyquist reaches A Angstrom (faster); "
             f"{defaults.TARGET_RESOLUTION}: {'; '.join(auto)}; {defaults.FULL_RESOLUTION} "
             f"(or 0): the full box; default {defaults.TARGET_RESOLUTION}")


def summarise_network_input(summary, args, particles) -> None:
    """The network input's size and why (``--box``, or ``--target-resolution``'s rule)."""
    from ..core.cnn.checks import input_geometry
    from ..core.resolution import training_input

    box = getattr(args, "box", None)
    if box is not None:
        resolution, why = None, "--box given"
    else:
        resolution, box = training_input(args.target_resolution, particles.box_px)
        why = {defaults.TARGET_RESOLUTION: "auto: the network's measured input box",
               defaults.FULL_RESOLUTION: "full: the particle box"}.get(
            args.target_resolution, "--target-resolution given")
    side, pixel = input_geometry(particles.box_px, particles.pixel_size_a,
                                 target_resolution_a=resolution, target_box_px=box)
    summary.add("network input", f"{side} px at {pixel:.3g} A/px (Nyquist {2 * pixel:.3g} A; "
                                 f"{why})")


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Options of the correlation search shared by ``deepalign align`` and ``deepalign run``."""
    step_px = defaults.GALLERY_STEP_PX
    parser.add_argument("--step", type=step_deg, default=None, metavar="DEG",
                        help="angular step of the reference gallery (directions and in-plane),"
                             f" at most {defaults.MAX_STEP_DEG:g}; default: {step_px[True]:g} "
                             "pixels at the particle radius before the local refinement, "
                             f"{step_px[False]:g} with --no-refine")
    parser.add_argument("--max-shift", type=float, default=None, metavar="PX",
                        help="largest shift searched, original pixels; default box/8")
    parser.add_argument("--device", default="auto", help="auto, cpu or gpu; default auto")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=defaults.REFINE,
                        help="refine each pose below the gallery step (local search, "
                             "half-pixel shifts; more accurate and faster than a finer "
                             "gallery alone, measured); default "
                             + ("on" if defaults.REFINE else "off"))
    parser.add_argument("--ctf", action=argparse.BooleanOptionalAction, default=True,
                        help="use the particles' CTF when the STAR has one (default)")


def add_class_search_arg(parser: argparse.ArgumentParser) -> None:
    """``--class-search`` of ``run``, ``align`` and ``classify`` (several ``--volume`` maps)."""
    parser.add_argument("--class-search", default=defaults.CLASS_SEARCH,
                        choices=defaults.CLASS_SEARCHES,
                        help="with several maps: search each class's map on its own (each: "
                             "K searches, or each class's predicted pairs), or once against "
                             "the maps' mean, every map then compared with the particle at "
                             "the pose found and the pose searched again in the two best "
                             "classes' maps in that pose's region (mean: about one search "
                             "whatever the "
                             "number of classes), or mean where every two maps correlate at "
                             f"least {defaults.CLASS_MEAN_MIN_CORRELATION:g} (auto); default "
                             "%(default)s")


def add_region_search_args(parser: argparse.ArgumentParser) -> None:
    """How the regional search widens around the predicted regions (``align`` and ``run``).

    Defaults are :class:`~scipion_deepalign.core.align.search_plan.SearchOptions`' (measured in
    docs/benchmarks_accuracy.md).
    """
    from ..core.align.search_plan import SearchOptions

    default = SearchOptions.default
    parser.add_argument("--overlap", type=float, default=default("overlap_deg"), metavar="DEG",
                        help="how far each region's search window reaches into its "
                             f"neighbours, degrees (0: the regions' own cells); default "
                             f"{default('overlap_deg'):g}")
    parser.add_argument("--follow", type=float, default=default("follow_deg"), metavar="DEG",
                        help="after the regions' search, also search the directions within "
                             "DEG of the poses that search kept for each particle (its best "
                             "and the refinement's candidate starts) that it did not meet, so "
                             "that a view just across a region border is found (0: never); "
                             f"default {default('follow_deg'):g}")
    parser.add_argument("--probability-mass", type=float,
                        default=default("probability_mass"), metavar="P",
                        help="search regions, best first, until their probabilities add up "
                             "to P (0 < P <= 1; 0: search the --top-k given); default "
                             f"{default('probability_mass')}")
    parser.add_argument("--max-regions", type=int, default=default("max_regions"),
                        metavar="N", help="at most N regions per particle with "
                                          f"--probability-mass; default {default('max_regions')}")
    parser.add_argument("--fallback-probability", type=float,
                        default=default("fallback_probability"), metavar="P",
                        help="particles whose best region probability is below P are "
                             "searched globally (0: never); default "
                             f"{default('fallback_probability')}")
    parser.add_argument("--fallback-significance", type=float,
                        default=default("fallback_significance"), metavar="S",
                        help="after the regional search, particles whose best pose stands "
                             "out from the poses they met by a significance below S are "
                             "searched again globally (about 1: no more than the best of "
                             "pure-noise scores; 0: never). Used only where the best-posed "
                             "quarter of the particles stands clearly above S (the summary "
                             "says); default "
                             f"{default('fallback_significance')}")


def search_options(args):
    """:class:`SearchOptions` from the parsed options (CLIError naming the bad one)."""
    from ..core.align.search_plan import SearchOptions

    mass = args.probability_mass
    try:
        return SearchOptions(overlap_deg=args.overlap, follow_deg=args.follow,
                             probability_mass=None if not mass else mass,
                             max_regions=args.max_regions,
                             fallback_probability=args.fallback_probability or 0.0,
                             fallback_significance=args.fallback_significance or 0.0)
    except ValueError as exc:
        raise CLIError(f"{_search_option_name(str(exc))}: {exc}") from None


def _search_option_name(message: str) -> str:
    for words, option in (("overlap", "--overlap"), ("kept poses", "--follow"),
                          ("mass", "--probability-mass"),
                          ("maximum number", "--max-regions"),
                          ("fallback significance", "--fallback-significance"),
                          ("fallback", "--fallback-probability")):
        if words in message:
            return option
    return "search options"


def write_alignment_columns(particles, result, *, regional: bool) -> None:
    """The alignment's columns on ``particles.extra`` (names in :mod:`~..core.io.columns`)."""
    if regional:
        columns.set_alignment_columns(particles.extra, score=result.score,
                                      significance=result.significance, region=result.region,
                                      fallback=result.fallback,
                                      n_regions_searched=result.n_regions_searched)
    else:
        columns.set_alignment_columns(particles.extra, score=result.score,
                                      significance=result.significance)


def summarise_alignment(summary, result, *, regional: bool):
    """The key numbers of an :class:`~..core.align.AlignmentResult` into ``summary``."""
    info = result.info
    summary.add("score", f"median {float(np.median(result.score)):.3f}")
    if result.significance is not None:
        summary.add("significance", f"median {float(np.median(result.significance)):.2f} "
                                    "(about 1: no more than the best of noise scores)")
    refined = result.n_refine_comparisons
    summary.add("comparisons", f"{result.n_comparisons} ({info['backend']}), "
                               f"{info['n_directions']} directions x {info['n_psi']} in-plane"
                + (f"; {refined} refinement candidates" if refined else ""))
    per_particle = result.n_comparisons / max(1, len(result.score))
    summary.add("comparisons per particle", f"{per_particle:.0f} (with several maps: every "
                                            "class searched, summed)")
    if "resolution" in info:
        refine = info.get("refine_box_px")
        summary.add("resolution", f"{info['resolution']}; {info['box_px']} px search box"
                    + (f", {refine} px refinement box" if refine else ""))
    if regional:
        followed = info.get("mean_tiles_followed")
        summary.add("regions searched per particle",
                    f"{info['mean_regions_searched']:.2f} on average"
                    + ("" if followed is None else
                       f", then {followed:.1f} tiles around the kept poses")
                    + f"; {100 * info['fallback_fraction']:.1f} % sent to the global fallback")
        if info.get("significance_separates") is False:
            summary.add("significance fallback", "not used (on these data the significance "
                                                 "does not tell good poses from bad ones)")
        elif "significance_separates" in info:
            summary.add("significance fallback",
                        f"{100 * info['significance_fallback_fraction']:.1f} % of the particles "
                        "searched again globally (best pose of low significance)")
    return summary


def model_mismatch_error(exc, folder_option: str) -> CLIError:
    """The CLI's words for a :class:`~scipion_deepalign.core.cnn.model_folder.ModelMismatch`."""
    return CLIError(f"{folder_option}: {exc.path} holds a model trained for other data or "
                    f"options (differs: {'; '.join(exc.differences)}): use another "
                    f"{folder_option.split()[0]} folder, or --retrain to train over it")


def summarise_training(summary, report) -> None:
    """The training lines of a summary (``deepalign train`` and ``run``): reused, or the
    held-out region hit rate and accuracy of the networks trained now, and the time."""
    if report.model_reused:
        summary.add("model", f"reused from {report.out_dir} (trained for the same map, "
                             "geometry, CTF range and options: not retrained)")
        summary.stage("training (reused)", report.seconds)
        return
    hit_rate = report.region_hit_rate()
    if hit_rate:
        history = report.histories.get("shared", {})
        epochs = len(history.get("loss", []))
        kept = history.get("best_epoch")
        summary.add("held-out region hit rate", f"{hit_rate['shared']:.3f} (true region "
                    "among those the search takes" + (f"; epoch {kept + 1} of {epochs} kept"
                                                      if kept is not None else "") + ")")
        if "class_accuracy" in history:  # a network of several maps (core.cnn.joint)
            summary.add("held-out class accuracy", f"{history['class_accuracy']:.3f} of "
                        f"{history['n_classes']} classes, {history.get('class_output', 'joint')} "
                        "class output (projections whose most probable class is theirs)")
    from ..core.cnn.summary import training_summary  # the numbers the Train protocol shows

    numbers = training_summary(report.out_dir)
    if "accuracy_mean" in numbers:
        summary.add("held-out accuracy", f"mean {numbers['accuracy_mean']:.3f} "
                                         f"(min {numbers['accuracy_min']:.3f})")
    summary.stage("training", report.seconds)
