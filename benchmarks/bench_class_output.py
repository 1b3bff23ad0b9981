"""Class head or joint softmax: which class output of the shared network classes and guides the
search better (issue 25), accuracy only.

The maps are bench_classes.py's (:func:`bench_classes.class_maps`): the 70S ribosome (64 px,
5 A) as class A and the same map with a ball of ``--part-radius`` A masked away as class B
(45 A: bench_classes' compositional pair); both low-passed to ``--reference-resolution`` and
scaled alike (:func:`~scipion_deepalign.core.classes.class_references`) as the training
references, as ``deepalign run --volume A --volume B`` trains. ``--n`` particles of the two
true maps (:func:`~scipion_deepalign.core.classes.simulate_mixture`: CTF, SNR ``--snr``,
shifts up to 3 px, half of each class). The first half lends its noise and CTFs to the
training (``training_source="projections"``, every other option the default TrainConfig);
the second half is held out and scored.

Each class output (``--outputs``, default both) is trained from the same maps, particles,
epochs and seed, then scored on the held-out particles:

* class accuracy: the most probable class (sum over its regions) is the true one;
* pair hit rate: the true (class, region) pair is among the pairs the default search takes
  (:func:`~scipion_deepalign.core.cnn.pairs.select_pairs` at the default probability mass);
* region hit rate: the true region is among those pairs' regions (any class);
* mean pairs per particle taken by that search;
* the held-out projections' class accuracy and pair hit rate from the training history.

Usage::

    .venv/bin/python benchmarks/bench_class_output.py                    # 45 A ball
    .venv/bin/python benchmarks/bench_class_output.py --part-radius 70   # a bigger part

Wall times are printed but only mean something on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_classes import BOX, DATA, MAP, PART_RADIUS_A, PIXEL_A, class_maps  # noqa: E402

from scipion_deepalign.core.defaults import CLASS_OUTPUTS  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/bench_class_output", metavar="DIR")
    p.add_argument("--outputs", default=",".join(CLASS_OUTPUTS), metavar="LIST",
                   help="class outputs to train, comma-separated (default: all)")
    p.add_argument("--part-radius", type=float, default=PART_RADIUS_A, metavar="A",
                   help=f"radius of the ball masked away in B (default {PART_RADIUS_A:g})")
    p.add_argument("--n", type=int, default=2000, help="particles (half held out)")
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's")
    p.add_argument("--reference-resolution", type=float, default=20.0, metavar="A")
    p.add_argument("--data", default=str(DATA), metavar="DIR")
    return p.parse_args(argv)


def make_data(args):
    """``(references (2, B, B, B), images, particles, classes, change)``."""
    from scipion_deepalign.core.classes import class_references, simulate_mixture
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import read_volume

    volume, _ = read_volume(str(Path(args.data) / MAP))
    a, b = class_maps(volume[:BOX, :BOX, :BOX], pair="compositional", turn_deg=0.0,
                      part_radius_a=args.part_radius)
    images, particles, classes = simulate_mixture(
        [a, b], args.n, pixel_size_a=PIXEL_A, fractions=[0.5, 0.5], snr=args.snr, ctf=True,
        max_shift_px=3.0, seed=args.seed)
    references = class_references(
        [low_pass_volume(m, pixel_size_a=PIXEL_A, resolution_a=args.reference_resolution)
         for m in (a, b)], pixel_size_a=PIXEL_A)
    change = float(np.linalg.norm(a - b) / np.linalg.norm(a))
    return references, images, particles, classes, change


def score(probs, classes, true_regions, n_classes=2) -> dict:
    """The held-out scores of the module docstring."""
    from scipion_deepalign.core.cnn.joint import class_probabilities
    from scipion_deepalign.core.cnn.pairs import select_pairs

    predicted = class_probabilities(probs, n_classes).argmax(axis=1)
    pairs = select_pairs(probs, n_classes)  # the search's default mass and pair limit
    taken = pairs.classes >= 0
    pair_hit = (taken & (pairs.classes == classes[:, None])
                & (pairs.regions == true_regions[:, None])).any(axis=1)
    region_hit = (taken & (pairs.regions == true_regions[:, None])).any(axis=1)
    balanced = np.mean([np.mean(predicted[classes == k] == k) for k in range(n_classes)])
    return {"class_accuracy": float(np.mean(predicted == classes)),
            "balanced_class_accuracy": float(balanced),
            "pair_hit_rate": float(np.mean(pair_hit)),
            "region_hit_rate": float(np.mean(region_hit)),
            "pairs_per_particle": float(taken.sum(axis=1).mean())}


def run_one(kind, args, references, images, particles, classes, train, test) -> dict:
    from scipion_deepalign.core.cnn import TrainConfig, predict_probabilities, train_regions
    from scipion_deepalign.core.cnn.history import best_region_hit_rate
    from scipion_deepalign.core.cnn.model_folder import ModelFolder
    from scipion_deepalign.core.regions import assign_regions

    options = dict(pixel_size_a=PIXEL_A, class_output=kind, seed=args.seed)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    config = TrainConfig(**options)
    folder = Path(args.work) / f"r{args.part_radius:g}_s{args.seed}_{kind}"
    start = time.perf_counter()
    report = train_regions(images[train], None, out_dir=folder, config=config,
                           reference=references, ctf=particles.ctf.subset(train),
                           retrain=True)
    seconds = time.perf_counter() - start
    probs = predict_probabilities(images[test], folder, pixel_size_a=PIXEL_A)
    centres, symmetry, _ = ModelFolder(folder).read_regions()
    true_regions = assign_regions(particles.angles_deg[test], centres, symmetry)[0]
    history = report.histories["shared"]
    out = score(probs, classes[test], np.asarray(true_regions))
    out.update(class_output=ModelFolder(folder).class_output(), train_seconds=seconds,
               epochs_run=len(history["loss"]), best_epoch=history.get("best_epoch"),
               projections_class_accuracy=history["class_accuracy"],
               projections_pair_hit_rate=best_region_hit_rate(history))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from scipion_deepalign.core.cnn import TrainConfig

    load = os.getloadavg()
    references, images, particles, classes, change = make_data(args)
    half = args.n // 2
    train, test = np.arange(half), np.arange(half, args.n)
    results = {}
    for kind in args.outputs.split(","):
        results[kind] = run_one(kind, args, references, images, particles, classes, train, test)
        print(kind, json.dumps(results[kind]), flush=True)
    config = TrainConfig(pixel_size_a=PIXEL_A)
    epochs = args.epochs or config.epochs
    print(f"\n{date.today()}: 70S vs 70S less a {args.part_radius:g} A ball "
          f"(|A - B| / |A| = {change:.3f}), {args.n} particles at SNR {args.snr:g} with CTF "
          f"(first half lends noise and CTFs, second half scored), references low-passed to "
          f"{args.reference_resolution:g} A; default TrainConfig ({epochs} epochs max of "
          f"{config.images_per_epoch} projections, {config.trunk} trunk, 24 px input), seed "
          f"{args.seed}; load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after.\n")
    print("| class output | class accuracy (balanced) | pair hit rate | region hit rate | "
          "pairs per particle | projections: class accuracy / pair hit | epochs (kept) | "
          "training |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in results.items():
        kept = "" if r["best_epoch"] is None else f" ({r['best_epoch'] + 1})"
        print(f"| {kind} | {r['class_accuracy']:.3f} ({r['balanced_class_accuracy']:.3f}) | "
              f"{r['pair_hit_rate']:.3f} | {r['region_hit_rate']:.3f} | "
              f"{r['pairs_per_particle']:.2f} | {r['projections_class_accuracy']:.3f} / "
              f"{r['projections_pair_hit_rate']:.3f} | {r['epochs_run']}{kept} | "
              f"{r['train_seconds']:.0f} s |")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    (Path(args.work) / f"results_r{args.part_radius:g}_s{args.seed}.json").write_text(
        json.dumps(dict(results, change=change, load=load), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
