"""Accuracy and cost of the regional search against the global one, on maps of real molecules.

For each data set (a real map, an SNR) the project's simulator makes ``--n`` particles (CTF
with defocus 1-2.5 um, shifts up to 3 px, white noise at the SNR); the first
``--train-fraction`` of them form the "aligned" training subset, with ``--wrong`` of their
poses replaced by random ones (another method's errors). The reference handed to DeepAlign
is the map low-passed to ``--reference-resolution`` (never the exact map). Every method is
judged on the other particles (training particles excluded):

* the **global** correlation search over the 1-px gallery without refinement (the exhaustive
  baseline every ratio is taken against), and the global search as the alignment makes it by
  default (2-px gallery + local refinement);
* DeepAlign for every **training variant** (training source x network head) and every
  **search variant** (windows, adaptive number of regions, global fallback).

Reported per row: fraction within 5/10/15 degrees of the true pose (symmetry-aware rotation
angle), median error, region top-1/top-2 hit rates of the network, fraction sent to the
global fallback, image-reference comparisons and alignment wall time relative to the global
search, training time. A reliability table (predicted top-1 probability vs observed hit
rate) checks what the probabilities mean.

Usage::

    .venv/bin/python benchmarks/bench_accuracy.py --out docs/benchmarks_accuracy.md
    .venv/bin/python benchmarks/bench_accuracy.py --quick      # a 5-minute smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# the parts live in accuracy_*.py; the names other scripts import from here stay importable
from accuracy_data import (  # noqa: E402,F401
    DATA,
    MAPS,
    errors,
    make_dataset,
    region_hits,
    reliability,
)
from accuracy_report import render  # noqa: E402
from accuracy_runs import align, run_dataset, train  # noqa: E402,F401
from accuracy_variants import (  # noqa: E402,F401
    BASELINE,
    COARSE_PX,
    DEFAULT_SEARCH,
    DEFAULT_TRAINING,
    FINE_PX,
    GLOBAL_DEFAULT,
    SEARCH,
    TRAINING,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--maps", default=None,
                   help="comma-separated: " + ", ".join(MAPS) + " (default: all; --quick: 8zpm)")
    p.add_argument("--snr", default=None,
                   help="comma-separated SNRs (default 0.1,0.05; --quick: 0.1)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--train-fraction", type=float, default=0.1)
    p.add_argument("--wrong", type=float, default=0.2, help="fraction of wrong training poses")
    p.add_argument("--reference-resolution", type=float, default=8.0, metavar="A")
    p.add_argument("--spacing", type=float, default=30.0)
    p.add_argument("--input-box", type=int, default=None,
                   help="network input (px); default: the network's own, as deepalign run")
    p.add_argument("--align-resolution", default="auto", metavar="auto|map|A",
                   help="search resolution: auto (the default of every face: what the "
                        "reference supports), map (each map's fixed value in MAPS, as the "
                        "tables before 2026-12-06) or a resolution in A")
    p.add_argument("--max-shift", type=float, default=None, metavar="PX",
                   help="largest shift searched (default: the CLI's, box / 8)")
    p.add_argument("--search-variants", default=None, metavar="LABELS",
                   help="semicolon-separated search variants of the default training, or "
                        "'default' for the default search alone (default: all of "
                        + "; ".join(SEARCH) + ")")
    p.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's")
    p.add_argument("--all-variants-on", default=None,
                   help="data set (map@snr) that gets every training variant, 'none' for no "
                        "data set; the others get the default one (default 8zpm@0.05; "
                        "--quick: the one data set)")
    p.add_argument("--training-variants", default=None, metavar="LABELS",
                   help="semicolon-separated training variants for --all-variants-on "
                        "(default: all of " + "; ".join(TRAINING) + ")")
    p.add_argument("--fine-gallery", action="store_true",
                   help="also the default search on the 1-px gallery without local refinement "
                        "(the default until 2026-12-04)")
    p.add_argument("--baseline-sample", type=int, default=0, metavar="N",
                   help="run the exhaustive baseline on N test particles spread evenly (its "
                        "time scaled to all; every other row also scored on them, paired); "
                        "default 0: on all (on the 70S ribosome it takes over 30 min on 2 "
                        "cores)")
    p.add_argument("--quick", action="store_true",
                   help="small smoke run (400 particles, 3 epochs; the data sets asked for, "
                        "else 8zpm at SNR 0.1 with every training variant)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(DATA), metavar="DIR",
                   help="folder of the maps (default ../shared/data beside the repository)")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"),
                   help="alignment backend (gpu: CuPy); training uses Keras's backend")
    p.add_argument("--out", default=None, help="markdown file for the tables")
    p.add_argument("--json", default=None, help="raw numbers")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="keep each variant's predictions and each data set's global search "
                        "here and reuse them in later runs (to re-measure the regional "
                        "alignment alone)")
    args = p.parse_args(argv)
    if args.quick:  # smaller sizes; the data sets only where none were asked for
        args.n, args.epochs = 400, 3
        if args.maps is None and args.snr is None and args.all_variants_on is None:
            args.all_variants_on = "8zpm@0.1"
        args.maps, args.snr = args.maps or "8zpm", args.snr or "0.1"
    args.maps = args.maps or ",".join(MAPS)
    args.snr = args.snr or "0.1,0.05"
    args.all_variants_on = args.all_variants_on or "8zpm@0.05"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = {}
    for name in args.maps.split(","):
        for snr in (float(s) for s in args.snr.split(",")):
            ds = make_dataset(name, snr, args)
            chosen = list(TRAINING) if args.training_variants is None else [
                label.strip() for label in args.training_variants.split(";")]
            unknown = [label for label in chosen if label not in TRAINING]
            if unknown:
                raise SystemExit(f"--training-variants: unknown {unknown}; known: {list(TRAINING)}")
            if DEFAULT_TRAINING in chosen:
                chosen.remove(DEFAULT_TRAINING)
            labels = [DEFAULT_TRAINING] + chosen \
                if ds["name"] == args.all_variants_on else [DEFAULT_TRAINING]
            results[ds["name"]] = run_dataset(ds, args, labels)
            report = _write(results, args, load_before, t0)  # after each data set
    print(report)
    return 0


def _write(results, args, load_before, t0) -> str:
    """The tables of the data sets done so far (a stopped run keeps what it measured)."""
    report = render(results, args, (load_before, os.getloadavg()[0]),
                    time.perf_counter() - t0)
    if args.out:
        Path(args.out).write_text(report)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: v[0] for k, v in results.items()}, indent=1, default=str))
    return report


if __name__ == "__main__":
    sys.exit(main())
