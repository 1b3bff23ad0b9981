"""``deepalign predict``: the most probable angular regions of each particle.

Writes ``--out`` (RELION STAR): the input particles with, for ``i = 1..top-k`` (best first),
the i-th most probable region (1-based, the numbers of the model's ``regions.star``) and its
probability (column names: :mod:`scipion_deepalign.core.io.columns`). With a model trained
from several maps (``deepalign train --volume A --volume B``) the regions are those whatever the
class, and the top-k (class, region) pairs (1-based class: the i-th map) and their joint
probabilities are written too, what ``deepalign align --model`` searches. Particles are read and
predicted in chunks, so memory stays bounded; with ``--skip-bad`` particles whose images are
not finite are left out.
"""
from __future__ import annotations

import argparse
import logging
import os

import numpy as np

from ..core import defaults
from ..core.io import columns
from .common import (
    NO_PARTICLE_LEFT,
    CLIError,
    add_particle_args,
    parse_int_list,
    positive_int,
    read_particles,
    set_devices,
)
from .parts import add_part_args, part_is_done, select_part, write_output
from .summary import Summary, spread

log = logging.getLogger("deepalign")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--particles", required=True, metavar="ALL.star",
                        help="particles to assign (RELION STAR)")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR",
                        help="model folder written by deepalign train")
    parser.add_argument("--top-k", type=positive_int, default=defaults.TOP_K, metavar="K",
                        help="regions kept per particle, with their probabilities (the "
                             "alignment searches them all, or as many as its probability "
                             "mass needs); at most the model's regions; default %(default)d")
    parser.add_argument("--out", required=True, metavar="PRED.star", help="output STAR file")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="default 256")
    parser.add_argument("--chunk", type=positive_int, default=4096, metavar="N",
                        help="particles read and predicted at once; default 4096")
    parser.add_argument("--gpus", metavar="LIST",
                        help="comma-separated GPU ids (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads for the network library")
    add_particle_args(parser)
    add_part_args(parser)


def _check(args):
    """Model folder, top-k and the particles' box and pixel size against the model's."""
    from ..core.cnn.model_folder import ModelFolder

    if not os.path.isdir(args.model):
        raise CLIError(f"--model: folder not found: {args.model}")
    folder = ModelFolder(args.model)
    try:
        meta = folder.read_config()
    except ValueError as exc:
        raise CLIError(f"--model: {exc}") from None
    particles = read_particles(args, args.particles)
    try:
        folder.check_particles(particles.box_px, particles.pixel_size_a, meta=meta)
    except ValueError as exc:
        raise CLIError(f"--particles {args.particles}: {exc}") from None
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CLIError(f"--out: folder not found: {out_dir}")
    return particles


def _write_summary(out, extra) -> str:
    """``NAME.summary.json`` beside the output ``NAME.star``: the prediction's numbers
    (:func:`~..core.cnn.summary.prediction_summary`, what the protocol shows); its path."""
    from ..core.cnn.summary import prediction_summary
    from ..core.io import summary_path, write_json

    path = summary_path(out)
    write_json(path, prediction_summary(extra))
    return path


def main(args) -> int:
    summary = Summary("predict")
    particles, part = select_part(args, _check(args))
    if part_is_done(args, part):
        return 0
    set_devices(parse_int_list(args.gpus, "--gpus"), args.threads)

    from ..core.cnn.joint import region_marginal
    from ..core.cnn.model_folder import ModelFolder
    from ..core.cnn.pairs import top_pairs
    from ..core.cnn.predict import load_models, predict_probabilities, top_k_regions
    from ..core.io import load_particle_images
    from ..core.runtime.progress import Progress

    models = load_models(args.model)
    n_classes = ModelFolder(args.model).n_classes()
    n = len(particles)
    kept, regions, probs, pairs = [], [], [], []
    piece = max(args.batch_size, min(args.chunk // 8, -(-n // 10)))  # for ~10 % steps
    with Progress(n, "predict") as progress:
        for start in range(0, n, args.chunk):
            stop = min(start + args.chunk, n)
            rows, images = load_particle_images(particles, slice(start, stop),
                                                skip_bad=args.skip_bad)
            progress(stop - start - len(rows))  # dropped by --skip-bad
            if not len(rows):
                continue
            p = predict_probabilities(images, args.model, pixel_size_a=particles.pixel_size_a,
                                      batch_size=args.batch_size,
                                      chunk_size=piece,
                                      models=models, progress=progress)
            if n_classes > 1:  # the pairs, and the regions whatever the class
                pairs.append(top_pairs(p, n_classes, args.top_k))
                p = region_marginal(p, n_classes)
            top, prob = top_k_regions(p, args.top_k)
            kept.append(rows)
            regions.append(top)
            probs.append(prob)
    if not kept:
        raise CLIError(NO_PARTICLE_LEFT)
    particles = particles.subset(np.concatenate(kept))
    regions, probs = np.concatenate(regions), np.concatenate(probs)
    columns.set_region_hints(particles.extra, regions, probs)
    if pairs:
        columns.set_pair_columns(particles.extra,
                                 *(np.concatenate(block) for block in zip(*pairs)))
    write_output(args.out, particles, part)
    counts = np.bincount(regions[:, 0], minlength=models[0]["n_regions"])
    summary.wrote(args.out, f"top-{args.top_k} regions "
                  + (f"and (class, region) pairs of {n_classes} classes " if pairs else "")
                  + f"of {len(particles)} particles")
    summary.wrote(_write_summary(args.out, particles.extra), "its numbers")
    if len(particles) < n:
        summary.add("left out (--skip-bad)", f"{n - len(particles)} particles")
    summary.add("particles per best region", f"{spread(counts)} over {len(counts)} regions")
    summary.add("best-region probability", spread(probs[:, 0]))
    summary.print()
    return 0
