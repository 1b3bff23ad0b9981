"""Accuracy against training time of the shared network: which schedule trains in minutes.

On one simulated data set (``bench_accuracy.make_dataset``: 8zpm at 64 px, 2 A/px, SNR 0.05,
CTF with defocus 1-2.5 um, shifts up to 3 px; reference low-passed to 8 A) every **schedule**
(epochs, images per epoch, noise curriculum, patience) trains the 42-region shared network
from projections (the default training source and head, 24 px input) and is judged on the
particles outside the training subset:

* training wall time and epochs run (early stopping on the held-out region hit rate);
* the held-out **region hit rate** at the kept epoch (validation projections; the fraction
  whose true region is among the regions of mass 0.9, at most 6: the stopping rule's
  ``history.region_hit_rate``) and, on the test
  particles, the region top-1 and the same hit rate;
* **within 5 / 10 deg** after the default regional search with the network's predictions
  (``bench_accuracy.align``), its median error, and what that search cost: the regions it
  searched per particle, its comparisons per particle and its wall time (a sharper network
  searches fewer regions).

The long training (:data:`LONG`, the schedule before 2026-12-06) is the reference; the
default schedule and the others are candidates. A last row times the **reuse** of the
default schedule's model (a second training call on the same folder with the same data: the
fingerprint check and nothing else).

Usage::

    .venv/bin/python benchmarks/bench_training.py --out benchmarks/out/training.md
    .venv/bin/python benchmarks/bench_training.py --schedules "12x4096 r4 p3" --n 600
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import bench_accuracy  # noqa: E402

from scipion_deepalign.core.cnn.config import TrainConfig  # noqa: E402
from scipion_deepalign.core.cnn.history import region_hit_rate  # noqa: E402
from scipion_deepalign.core.regions import region_centres_deg, region_distances_deg  # noqa: E402

#: the long training every candidate is compared with (the schedule before 2026-12-06)
LONG = "60x8192 r15 p3"


def parse_schedule(label: str) -> dict:
    """``"EPOCHSxIMAGES rRAMP pPATIENCE [sSOFTNESS]"`` -> TrainConfig options.

    The optional fourth part sets the label softness (``s0.2``: sigma 0.2 of the spacing;
    ``s0``: one-hot labels); without it the training's default.
    """
    try:
        size, ramp, patience, *rest = label.split()
        epochs, images = size.split("x")
        assert ramp[0] == "r" and patience[0] == "p" and len(rest) <= 1
        options = dict(epochs=int(epochs), images_per_epoch=int(images),
                       noise_ramp_epochs=int(ramp[1:]), patience=int(patience[1:]))
        if rest:
            assert rest[0][0] == "s"
            options["label_softness"] = float(rest[0][1:])
        return options
    except (ValueError, AssertionError):
        raise SystemExit(f"--schedules: {label!r} is not 'EPOCHSxIMAGES rRAMP pPATIENCE "
                         "[sSOFTNESS]' (e.g. '12x4096 r4 p3' or '20x8192 r3 p3 s0.2')") from None


def _default_label() -> str:
    d = TrainConfig()
    return f"{d.epochs}x{d.images_per_epoch} r{d.noise_ramp_epochs} p{d.patience}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--schedules", default=None, metavar="LABELS",
                   help=f"semicolon-separated schedules (default: {LONG}; the default; "
                        "the other candidates); an optional fourth part sets the label "
                        "softness, e.g. '20x8192 r3 p3 s0.2'")
    p.add_argument("--map", default="8zpm", choices=tuple(bench_accuracy.MAPS))
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--no-align", action="store_true",
                   help="network numbers only (no regional search)")
    p.add_argument("--out", default=None, help="markdown file for the table")
    p.add_argument("--json", default=None, help="raw numbers")
    args = p.parse_args(argv)
    # what bench_accuracy.make_dataset / align read: every option of bench_accuracy at its
    # default (a new one there reaches this script without a list to keep up to date)
    base = bench_accuracy.parse_args(["--n", str(args.n)])
    for name, value in vars(base).items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


#: other candidates for a default that trains in under 2 minutes on 2 cores
CANDIDATES = ("12x8192 r3 p3", "16x8192 r3 p3", "20x8192 r3 p3")


def train_schedule(ds, label, args, folder):
    """Train one schedule in ``folder``; its numbers and test-set probabilities."""
    from scipion_deepalign.core.cnn import predict_probabilities, train_regions

    config = TrainConfig(pixel_size_a=ds["pixel"], target_box_px=args.input_box,
                         seed=args.seed, **parse_schedule(label))
    t0 = time.perf_counter()
    report = train_regions(ds["images"], None, out_dir=folder, symmetry="c1",
                           spacing_deg=args.spacing, config=config, reference=ds["reference"],
                           ctf=ds["parts"].ctf)
    seconds = time.perf_counter() - t0
    history = report.histories["shared"]
    probs = predict_probabilities(ds["images"][ds["test"]], folder)
    return probs, {"schedule": label, "train_s": seconds, "epochs_run": len(history["loss"]),
                   "kept_epoch": history.get("best_epoch", -1) + 1,
                   "val_hit": report.region_hit_rate().get("shared", float("nan")),
                   "images": config.images_per_epoch * len(history["loss"])}, config


def measure(ds, label, args, truth):
    with tempfile.TemporaryDirectory() as folder:
        probs, row, config = train_schedule(ds, label, args, folder)
        if label == _default_label():  # a second call on the same folder: reused
            from scipion_deepalign.core.cnn import train_regions

            t0 = time.perf_counter()
            again = train_regions(ds["images"], None, out_dir=folder, symmetry="c1",
                                  spacing_deg=args.spacing, config=config,
                                  reference=ds["reference"], ctf=ds["parts"].ctf)
            row["reuse_s"] = time.perf_counter() - t0
            assert again.model_reused and not again.trained
    row["top1"] = float(np.mean(np.argmax(probs, axis=1) == truth))
    row["test_hit"] = region_hit_rate(probs, truth)
    if not args.no_align:
        order = np.argsort(-probs, axis=1, kind="stable")
        k, search = bench_accuracy.SEARCH[bench_accuracy.DEFAULT_SEARCH]
        hints = order[:, :k]
        centres = region_centres_deg(args.spacing, "c1")
        result, _ = bench_accuracy.align(ds, hints, np.take_along_axis(probs, hints, axis=1),
                                         search, centres)
        row.update(within5=result["within5"], within10=result["within10"],
                   median_err=result["median_err"], align_s=result["seconds"],
                   regions_searched=result["regions_searched"],
                   comparisons_per_particle=result["comparisons"] / len(hints))
    return row


def render(rows, args, loads, seconds) -> str:
    lines = [f"Command: `benchmarks/bench_training.py {' '.join(sys.argv[1:])}`".strip(), "",
             f"{args.map} at SNR {args.snr:g}, {args.n} particles, "
             f"{len(region_centres_deg(args.spacing, 'c1'))} regions, "
             f"{f'{args.input_box} px input' if args.input_box else 'the automatic input box'}"
             ", training from projections (softmax head, polar trunk); judged on the "
             f"{int(round(args.n * (1 - args.train_fraction)))} test particles; the long "
             f"training is {LONG}, the default {_default_label()}.", "",
             "| schedule (epochs x images, ramp, patience[, label softness]) | training (s) "
             "| epochs run (kept) | images seen | held-out hit rate | test top-1 / hit rate "
             "| within 5 / 10 deg | median (deg) | regions searched | comparisons per particle "
             "| alignment (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        within = (f"{r['within5']:.3f} / {r['within10']:.3f}" if "within10" in r else "-")
        median = f"{r['median_err']:.1f}" if "median_err" in r else "-"
        search = (f"{r['regions_searched']:.2f} | {r['comparisons_per_particle']:.0f} | "
                  f"{r['align_s']:.1f}" if "regions_searched" in r else "- | - | -")
        lines.append(
            f"| {r['schedule']} | {r['train_s']:.0f} | {r['epochs_run']} ({r['kept_epoch']}) "
            f"| {r['images']} | {r['val_hit']:.3f} | {r['top1']:.3f} / {r['test_hit']:.3f} "
            f"| {within} | {median} | {search} |")
    for r in rows:
        if "reuse_s" in r:
            lines.append(f"| {r['schedule']}, reused (second call, same folder) | "
                         f"{r['reuse_s']:.1f} | 0 | 0 | - | - | - | - | - | - | - |")
    lines += ["", f"Machine: {platform.machine()}, {os.cpu_count()} cores; load average "
              f"{loads[0]:.1f} before, {loads[1]:.1f} after; {seconds / 60:.0f} min in all."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    labels = ([s.strip() for s in args.schedules.split(";")] if args.schedules
              else list(dict.fromkeys([LONG, _default_label(), *CANDIDATES])))
    for label in labels:
        parse_schedule(label)  # every label checked before the first training
    load_before, t0 = os.getloadavg()[0], time.perf_counter()
    ds = bench_accuracy.make_dataset(args.map, args.snr, args)
    centres = region_centres_deg(args.spacing, "c1")
    truth = np.argmin(region_distances_deg(ds["parts"].angles_deg[ds["test"]], centres,
                                           "c1"), axis=1)
    rows = []
    for label in labels:
        rows.append(measure(ds, label, args, truth))
        print(json.dumps(rows[-1]), flush=True)
        report = render(rows, args, (load_before, os.getloadavg()[0]),
                        time.perf_counter() - t0)
        if args.out:
            Path(args.out).write_text(report)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
