"""Benchmark of the regional CNNs: time, throughput, and region accuracy per option.

One simulated set (built-in D2 phantom, CTF, SNR 0.1, small shifts); 10 % of the particles
train, the other 90 % test. For each variant (regional vs shared network, loss mae vs bce,
learning rate 0.001 vs 0.002) it reports the training time (per region for the regional
network), the prediction throughput and the top-1 / top-2 region accuracy on the test
particles against the regions of their true poses. Results: docs/benchmarks_cnn.md.

Usage::

    python benchmarks/bench_cnn.py [--n 20000] [--epochs 10] [--positives 2048] [--json out.json]
    python benchmarks/bench_cnn.py --quick     # a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scipion_deepalign.core.cnn import (  # noqa: E402
    TrainConfig,
    load_models,
    predict_probabilities,
    top_k_regions,
    train_regions,
)
from scipion_deepalign.core.regions import assign_regions, region_centres_deg  # noqa: E402
from scipion_deepalign.core.simulate import make_phantom, simulate_particles  # noqa: E402

#: (name, network, loss, learning rate); the first is the reference of the ratios.
VARIANTS = [
    ("regional bce 0.001", "regional", "bce", 0.001),
    ("regional bce 0.002", "regional", "bce", 0.002),
    ("regional mae 0.001", "regional", "mae", 0.001),
    ("regional mae 0.002", "regional", "mae", 0.002),
    ("shared bce 0.001", "shared", "bce", 0.001),
    ("shared bce 0.002", "shared", "bce", 0.002),
    ("shared mae 0.001", "shared", "mae", 0.001),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="particles in all (default 20000)")
    p.add_argument("--box", type=int, default=32, help="particle box in px (default 32)")
    p.add_argument("--input-box", type=int, default=16, help="network input px (default 16)")
    p.add_argument("--pixel-size", type=float, default=4.0, help="A/px (default 4)")
    p.add_argument("--symmetry", default="d2")
    p.add_argument("--spacing", type=float, default=90.0)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--train-fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--positives", type=int, default=2048)
    p.add_argument("--variants", default="all",
                   help="comma-separated indices into VARIANTS (default all)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.epochs, args.positives, args.batch_size = 600, 1, 64, 32
    return args


def run(args) -> dict:
    t0 = time.perf_counter()
    volume = make_phantom(args.box, symmetry=args.symmetry, seed=0)
    images, parts = simulate_particles(volume, args.n, pixel_size_a=args.pixel_size,
                                       snr=args.snr, ctf=True, max_shift_px=1.0, seed=1)
    n_train = int(round(args.train_fraction * args.n))
    centres = region_centres_deg(args.spacing, args.symmetry)
    truth = np.asarray(assign_regions(parts.angles_deg, centres, args.symmetry)[0])
    test_truth = truth[n_train:]
    counts = np.bincount(test_truth, minlength=len(centres))
    setup = {
        "n_particles": args.n, "n_train": n_train, "n_test": args.n - n_train,
        "box_px": args.box, "input_box_px": args.input_box, "pixel_size_a": args.pixel_size,
        "symmetry": args.symmetry, "spacing_deg": args.spacing, "n_regions": len(centres),
        "snr": args.snr, "epochs": args.epochs, "batch_size": args.batch_size,
        "positives_per_region": args.positives, "simulate_s": time.perf_counter() - t0,
        "chance_top1_majority": float(np.sort(counts)[-1] / counts.sum()),
        "chance_top2_majority": float(np.sort(counts)[-2:].sum() / counts.sum()),
        "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
    }
    chosen = VARIANTS if args.variants == "all" else [
        VARIANTS[int(i)] for i in args.variants.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_cnn_") as tmp:
        for i, (name, network, loss, lr) in enumerate(chosen):
            config = TrainConfig(pixel_size_a=args.pixel_size, target_box_px=args.input_box,
                                 epochs=args.epochs, batch_size=args.batch_size,
                                 positives_per_region=args.positives, network=network,
                                 loss=loss, learning_rate=lr, seed=0,
                                 training_source="particles")
            out = os.path.join(tmp, f"model_{i}")
            t = time.perf_counter()
            report = train_regions(images[:n_train], parts.angles_deg[:n_train], out_dir=out,
                                   symmetry=args.symmetry, spacing_deg=args.spacing,
                                   config=config, shifts_px=parts.shifts_px[:n_train])
            train_s = time.perf_counter() - t
            t = time.perf_counter()
            models = load_models(out)
            predict_probabilities(images[n_train:n_train + 8], out, models=models)  # warm-up
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            probs = predict_probabilities(images[n_train:], out, models=models)
            predict_s = time.perf_counter() - t
            regions, _ = top_k_regions(probs, 2)
            epochs_run = [len(h["loss"]) for h in report.histories.values()]
            rows.append({
                "variant": name, "network": network, "loss": loss, "learning_rate": lr,
                "train_s": train_s,
                "train_s_per_region": train_s / (1 if network == "shared"
                                                 else max(1, len(report.histories))),
                "load_s": load_s,
                "epochs_run": epochs_run,
                "predict_images_per_s": (args.n - n_train) / predict_s,
                "top1": float(np.mean(regions[:, 0] == test_truth)),
                "top2": float(np.mean(np.any(regions == test_truth[:, None], axis=1))),
            })
            print(f"{name:22s} train {train_s:7.1f} s  predict "
                  f"{rows[-1]['predict_images_per_s']:8.0f} img/s  top1 {rows[-1]['top1']:.3f}"
                  f"  top2 {rows[-1]['top2']:.3f}  epochs {epochs_run}", flush=True)
    setup["total_s"] = time.perf_counter() - t0
    setup["load_avg_end"] = os.getloadavg()[0]
    return {"setup": setup, "results": rows}


def markdown(result) -> str:
    s = result["setup"]
    lines = [f"{s['n_particles']} particles ({s['n_train']} train / {s['n_test']} test), "
             f"{s['box_px']} px -> {s['input_box_px']} px, {s['symmetry']} "
             f"{s['spacing_deg']:g} deg "
             f"({s['n_regions']} regions), SNR {s['snr']:g}, {s['epochs']} epochs x "
             f"{s['positives_per_region']} positives, batch {s['batch_size']}; majority-guess "
             f"top-1 {s['chance_top1_majority']:.3f}, top-2 {s['chance_top2_majority']:.3f}; "
             f"total {s['total_s']:.0f} s, load average {s['load_avg_start']:.1f} -> "
             f"{s['load_avg_end']:.1f} on {s['cpu_count']} cores", "",
             "| variant | train s | s / region | predict img/s | top-1 | top-2 | epochs run |",
             "|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['variant']} | {r['train_s']:.1f} | {r['train_s_per_region']:.1f} | "
                     f"{r['predict_images_per_s']:.0f} | {r['top1']:.3f} | {r['top2']:.3f} | "
                     f"{','.join(map(str, r['epochs_run']))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
