"""``deepalign classify``: 3D classes by iteration (:mod:`scipion_deepalign.core.classes.iterate`).

Reads ``--particles`` (RELION STAR, with CTF) and either several ``--volume`` maps (one per
class) or one ``--volume`` with ``--classes K`` (every class from that map, the particles in
random classes in the first iteration, as RELION does). Each iteration aligns every particle
globally against the K class maps (at the resolution they support), gives it the class of
its best score, reconstructs each class's half maps and low-passes its map at their FSC 0.5;
it stops after ``--iterations`` or once fewer than ``--stop-fraction`` of the particles
change class. ``--mask`` focuses the comparison: the class maps are multiplied by it before
the search. Writes ``--out FOLDER`` (layout:
:class:`~scipion_deepalign.core.classes.classify_folder.ClassifyFolder`): ``classes.star``,
``class_NNN.mrc``, ``classify.json`` and one ``itNNN/`` folder per iteration; a run killed
and started again with the same inputs resumes after its last finished iteration.

``--cnn`` searches each particle in the (class, region) pairs a network predicts instead of
globally in every map (:mod:`scipion_deepalign.core.classes.network`): the network of
``deepalign run --volume A --volume B`` is trained on the starting maps (``--epochs``,
``--images-per-epoch``, ``--spacing``) into ``itNNN/model/``, and each later iteration
fine-tunes the previous one's for ``--finetune-epochs`` on projections of the new filtered
class maps before predicting and searching again (``--top-k`` pairs, or
``--probability-mass``; the significance fallback searches the particles it catches globally
over every class). The summary's table gives each iteration's training seconds and
comparisons per particle.
"""
from __future__ import annotations

import argparse
import logging
import os

from ..core import defaults
from .classes import read_class_maps
from .common import (
    CLIError,
    add_particle_args,
    check_choice,
    check_file_exists,
    check_positive,
    check_symmetry,
    ensure_out_dir,
    lazy_particles_images,
    positive_float,
    positive_int,
    read_particles,
)
from .shared_options import (
    add_class_search_arg,
    add_region_search_args,
    add_search_args,
    add_target_resolution_arg,
    model_mismatch_error,
    search_options,
)
from .summary import Summary

log = logging.getLogger("deepalign")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--particles", required=True, metavar="PARTICLES.star",
                        help="RELION STAR of the particles (with CTF)")
    parser.add_argument("--volume", required=True, action="append", metavar="REF.mrc",
                        help="starting map of a class (repeat it, one per class), or one map "
                             "with --classes K; same box and pixel size as the particles")
    parser.add_argument("--classes", type=positive_int, default=None, metavar="K",
                        help="K classes started from the one --volume (the first classes "
                             "drawn by --start)")
    parser.add_argument("--start", choices=defaults.CLASSIFY_STARTS, default=None,
                        help="--classes: how the first classes are drawn: variance (by how the "
                             "particles' differences from the map vary), random (RELION's "
                             f"start); default {defaults.CLASSIFY_START}")
    parser.add_argument("--split-resolution", type=positive_float, default=None, metavar="A",
                        help="--start variance: compare the particles' differences from the map "
                             "up to this resolution (finer for a small changing part); default "
                             f"{defaults.CLASSIFY_SPLIT_RESOLUTION:g}")
    parser.add_argument("--iterations", type=positive_int, default=defaults.CLASSIFY_ITERATIONS,
                        metavar="N", help="most iterations; default %(default)d")
    parser.add_argument("--stop-fraction", type=float, default=defaults.CLASSIFY_STOP_FRACTION,
                        metavar="F", help="stop once fewer than this fraction of the particles "
                                          "change class; default %(default)g")
    parser.add_argument("--filter-fsc", type=float, default=defaults.CLASSIFY_FILTER_FSC,
                        metavar="F", help="low-pass each class map where its half maps' FSC "
                                          "falls below F (the next iteration's reference); "
                                          "default %(default)g")
    parser.add_argument("--mask", default=None, metavar="MASK.mrc",
                        help="focus the comparison of the classes on this part (0..1, the "
                             "particles' box): the class maps are multiplied by it")
    parser.add_argument("--out", required=True, metavar="FOLDER", help="output folder")
    parser.add_argument("--symmetry", default="c1", help="point group; default c1")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the half maps' split and of the first classes; default 0")
    add_search_args(parser)
    add_class_search_arg(parser)
    add_target_resolution_arg(parser, training=False, search=True)
    add_particle_args(parser)
    net = parser.add_argument_group("network (--cnn)")
    net.add_argument("--cnn", action="store_true",
                     help="search each particle in the (class, region) pairs of a network "
                          "trained on the starting maps and fine-tuned on each iteration's "
                          "maps (itNNN/model/), not globally in every map")
    for flag, kind, default, metavar, words in _NETWORK_OPTIONS:
        net.add_argument(flag, type=kind, default=None, metavar=metavar,
                         help=f"--cnn: {words}; default {default}")
    add_region_search_args(net)


#: the --cnn options: (flag, type, default, metavar, help); None by default, so that one
#: given without --cnn is refused, naming it
_NETWORK_OPTIONS = (
    ("--spacing", positive_float, defaults.REGION_SPACING_DEG, "DEG",
     "angular spacing of the network's region centres"),
    ("--top-k", positive_int, defaults.TOP_K, "K",
     "(class, region) pairs searched per particle (the most, with --probability-mass)"),
    ("--epochs", positive_int, defaults.train_default("epochs"), "N",
     "maximum epochs of the first network"),
    ("--images-per-epoch", positive_int, defaults.train_default("images_per_epoch"), "N",
     "training projections per epoch"),
    ("--finetune-epochs", positive_int, defaults.CLASSIFY_FINETUNE_EPOCHS, "N",
     "epochs each later iteration fine-tunes the previous network for"),
)


def _check_args(args):
    check_file_exists(args.particles, "--particles")
    for path in args.volume:
        check_file_exists(path, "--volume")
    if args.mask is not None:
        check_file_exists(args.mask, "--mask")
    if args.classes is not None and len(args.volume) != 1:
        raise CLIError(f"--classes starts every class from one --volume; {len(args.volume)} "
                       "given (give one map, or one map per class without --classes)")
    if args.classes is None and len(args.volume) < 2:
        raise CLIError("give one --volume per class (at least 2), or one --volume and "
                       "--classes K")
    for flag, value in (("--start", args.start), ("--split-resolution", args.split_resolution)):
        if value is not None and args.classes is None:
            raise CLIError(f"{flag} draws the first classes of a one-map start; give it with "
                           "--classes K")
    if args.split_resolution is not None and args.start == "random":
        raise CLIError("--split-resolution sets the variance split; --start random draws the "
                       "first classes without it")
    if args.classes is not None and args.classes < 2:
        raise CLIError(f"--classes must be at least 2, got {args.classes}")
    if not 0 <= args.stop_fraction < 1:
        raise CLIError(f"--stop-fraction must be in [0, 1), got {args.stop_fraction}")
    if not 0 < args.filter_fsc < 1:
        raise CLIError(f"--filter-fsc must be in (0, 1), got {args.filter_fsc:g}")
    check_choice(args.device, defaults.DEVICES, "--device")
    check_positive(args.max_shift, "--max-shift", allow_zero=True)
    symmetry = check_symmetry(args.symmetry)
    _check_network_args(args, symmetry)
    return symmetry


def _check_network_args(args, symmetry) -> None:
    """Without --cnn, no network option; with it, the defaults filled in and checked."""
    names = [flag for flag, *_ in _NETWORK_OPTIONS]
    if not args.cnn:
        given = [flag for flag in names if getattr(args, _dest(flag)) is not None]
        if given:
            raise CLIError(f"{given[0]} sets the network of --cnn: add --cnn, or leave it out")
        return
    for flag, _, default, _, _ in _NETWORK_OPTIONS:
        if getattr(args, _dest(flag)) is None:
            setattr(args, _dest(flag), default)
    from ..core.cnn.checks import check_regions

    try:
        check_regions(args.spacing, symmetry, spacing_name="--spacing")
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _network(args, particles, folder):
    """The :class:`~..core.classes.network.ClassNetwork` of --cnn (None without it) and the
    options the run's inputs record (resuming with others is refused)."""
    if not args.cnn:
        return None, None
    from ..core.classes.network import ClassNetwork
    from ..core.cnn.config import TrainConfig

    search = search_options(args)
    try:
        config = TrainConfig(pixel_size_a=particles.pixel_size_a, epochs=args.epochs,
                             images_per_epoch=args.images_per_epoch, seed=args.seed)
        network = ClassNetwork(config=config, model_dir=folder.model_dir,
                               spacing_deg=args.spacing, top_k=args.top_k,
                               finetune_epochs=args.finetune_epochs, search=search)
    except ValueError as exc:
        raise CLIError(f"--cnn options: {exc}") from None
    recorded = {_dest(flag): getattr(args, _dest(flag)) for flag, *_ in _NETWORK_OPTIONS}
    recorded.update(probability_mass=search.probability_mass, max_regions=search.max_regions,
                    overlap=search.overlap_deg, follow=search.follow_deg,
                    fallback_significance=search.fallback_significance)
    return network, recorded


def _read_mask(args, particles):
    """The focus mask, checked against the particles (CLIError naming the file)."""
    if args.mask is None:
        return None
    from ..core.classes.class_maps import check_mask
    from ..core.io import read_volume

    try:
        mask, pixel = read_volume(args.mask)
        return check_mask(mask, box_px=particles.box_px, pixel_size_a=particles.pixel_size_a,
                          mask_pixel_size_a=pixel, name=args.mask)
    except ValueError as exc:
        raise CLIError(f"--mask: {exc}") from None


def main(args) -> int:
    from ..core.classes.classify_folder import ClassifyFolder
    from ..core.classes.iterate import classify
    from ..core.runtime.progress import Progress

    symmetry = _check_args(args)
    particles = read_particles(args, args.particles)
    volumes, _ = read_class_maps(args.volume, box_px=particles.box_px,
                                 pixel_size_a=particles.pixel_size_a)
    mask = _read_mask(args, particles)
    n_classes = args.classes or len(volumes)
    first_split = args.start or defaults.CLASSIFY_START
    split_resolution = args.split_resolution or defaults.CLASSIFY_SPLIT_RESOLUTION
    folder = ClassifyFolder(ensure_out_dir(args.out))
    inputs = dict(particles=len(particles), volumes=list(args.volume), classes=n_classes,
                  from_one_map=args.classes is not None, mask=args.mask, seed=args.seed,
                  symmetry=symmetry, filter_fsc=args.filter_fsc)
    if args.classes is not None:  # the start matters to a one-map run only
        inputs["start"] = first_split
        if first_split == "variance":
            inputs["split_resolution_a"] = split_resolution
    network, recorded = _network(args, particles, folder)
    if network is not None:  # without --cnn the inputs are those of the global search
        inputs["network"] = recorded
    reports, start = folder.resume_state(inputs=inputs, n_classes=n_classes)
    if start is not None:
        log.info("resuming after iteration %d (%s)", start.iteration,
                 folder.iteration_dir(start.iteration))
    full, images = lazy_particles_images(args, particles)
    if len(full) != len(particles):
        raise CLIError("--skip-bad dropped particles: classify needs every particle (remove "
                       "them from --particles)")
    max_shift = (defaults.default_max_shift_px(particles.box_px) if args.max_shift is None
                 else args.max_shift)
    left = max(0, args.iterations - (start.iteration if start else 0))
    summary = Summary("classify")

    def finished(it):
        folder.write_iteration(it, particles, inputs=inputs)
        reports.append(dict(it.report(), inputs=inputs))
        log.info("%s", _iteration_line(reports[-1], args.iterations))

    from ..core.cnn.model_folder import ModelMismatch

    with Progress(len(particles) * left, "classify") as progress:
        try:
            result = classify(images, volumes, n_classes=args.classes,
                              iterations=args.iterations, stop_fraction=args.stop_fraction,
                              mask=mask, ctf=particles.ctf if args.ctf else None,
                              symmetry=symmetry, seed=args.seed, start=start,
                              on_iteration=finished, progress=progress,
                              pixel_size_a=particles.pixel_size_a, max_shift_px=max_shift,
                              step_deg=args.step, target_resolution_a=args.target_resolution,
                              device=args.device, refine=args.refine, network=network,
                              filter_fsc=args.filter_fsc, first_split=first_split,
                              split_resolution_a=split_resolution,
                              class_search=args.class_search)
        except ModelMismatch as exc:  # an itNNN/model of other maps or options
            raise model_mismatch_error(exc, "--out FOLDER/itNNN/model") from None
    folder.write_final(reports, stopped=result.stopped, n_classes=n_classes)
    _summarise(summary, folder, reports, result, n_resumed=len(reports) - len(result.iterations),
               n_classes=n_classes, filter_fsc=args.filter_fsc).print()
    return 0


def _iteration_line(report, iterations) -> str:
    from ..core.classes.class_maps import focus_words
    from ..core.classes.split import split_words

    changed = report["changed_fraction"]
    return (f"classify: iteration {report['iteration']} of {iterations}: classes "
            f"{', '.join(map(str, report['class_sizes']))}; changed class "
            f"{_percent(changed)}; FSC 0.143 "
            + ", ".join(_angstrom(r) for r in report["resolution_0143_a"])
            + split_words(report.get("first_split"))
            + focus_words(report.get("focus_fraction")))


def _percent(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f} %"


def _angstrom(value) -> str:
    return "-" if value is None else f"{value:.1f} A"


def _count(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _training(network) -> str:
    if not network:
        return "-"
    return f"{network['train_seconds']:.1f} s"


def _network_words(report) -> str:
    net = report["network"]
    how = ("reused (resumed)" if net["reused"] else
           f"fine-tuned {net['epochs']} epochs from "
           f"{os.path.basename(os.path.dirname(net['fine_tuned_from']))}"
           if net["fine_tuned_from"] else f"trained {net['epochs']} epochs")
    return (f"it {report['iteration']} {how}, {net['pairs_per_particle']:.2f} pairs per "
            "particle")


def _summarise(summary, folder, reports, result, *, n_resumed, n_classes, filter_fsc):
    summary.wrote(folder.star_path(), f"{sum(reports[-1]['class_sizes'])} particles with "
                                      "class, probability and pose")
    summary.wrote(folder.map_path(0), f"and {n_classes - 1} more class maps "
                                      f"(low-passed at FSC {filter_fsc:g})")
    summary.wrote(folder.report_path, "every iteration's numbers")
    why = {"converged": "fewer than the stop fraction changed class",
           "iterations": "the iterations given ran"}[result.stopped]
    summary.add("stopped", f"after iteration {reports[-1]['iteration']} ({why}"
                + (f"; {n_resumed} resumed from the folder" if n_resumed else "") + ")")
    summary.add("iterations", "\n    it  comparisons/particle  training  sizes            "
                "changed  FSC 0.143 per class" + "".join(
                    f"\n    {r['iteration']:>2}  {_count(r.get('comparisons_per_particle')):>20}"
                    f"  {_training(r.get('network')):>8}"
                    f"  {', '.join(map(str, r['class_sizes'])):<15}  "
                    f"{_percent(r['changed_fraction']):>7}"
                    f"  {', '.join(_angstrom(x) for x in r['resolution_0143_a'])}"
                    for r in reports))
    networks = [r for r in reports if r.get("network")]
    if networks:
        summary.add("network", "; ".join(_network_words(r) for r in networks)
                    + " (training: seconds of each iteration's network; -: global search)")
    kept = reports[-1]["kept_previous_map"]
    if kept:
        summary.add("emptied", f"classes {', '.join(map(str, kept))} kept their previous map "
                               "(too few particles for two half maps)")
    corr = reports[-1]["map_correlation"]
    summary.add("class maps' correlation", "; ".join(
        f"{k + 1}-{m + 1}: {corr[k][m]:.3f}" for k in range(n_classes)
        for m in range(k + 1, n_classes)) + " (half maps: " + ", ".join(
        "-" if c is None else f"{c:.3f}" for c in reports[-1]["half_map_correlation"])
        + "; two classes whose maps correlate about as well as their half maps hardly "
          "differ)")
    from ..core.classes.iterate import alike_classes

    for k, m, corr_km, half in alike_classes(reports[-1]):
        words = (f"classes {k} and {m}: their maps correlate {corr_km:.3f}, at least as well as "
                 f"their half maps ({half:.3f}): one structure split in two, whatever the class "
                 "probability says")
        log.warning("%s", words)
        summary.add("alike", words)
    for it in result.iterations:
        summary.stage(f"iteration {it.iteration}", it.seconds)
    return summary
