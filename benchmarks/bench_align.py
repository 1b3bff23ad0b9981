"""Regional (top-k regions) versus global correlation alignment, in one run on one data set.

Simulates particles of the built-in phantom (CTF, noise, shifts), aligns them
* globally over the whole asymmetric unit (the baseline), and
* inside the k regions given as hints: the true nearest regions (oracle, what a perfect CNN
  would give) and, with ``--cnn``, the regions predicted by a CNN trained here,
and reports accuracy (symmetry-aware pose error against the truth) and cost (comparisons,
wall time). Both modes search exactly the same gallery directions, psi steps and shifts.

Usage::

    .venv/bin/python benchmarks/bench_align.py [--n 1500] [--cnn] [--out docs/benchmarks_align.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from machine import backend_words  # noqa: E402

from scipion_deepalign.core.align.align import align_particles  # noqa: E402
from scipion_deepalign.core.regions import (
    nearest_regions,  # noqa: E402
    region_centres_deg,  # noqa: E402
)
from scipion_deepalign.core.simulate import make_phantom, simulate_particles  # noqa: E402
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1500, help="particles to align")
    p.add_argument("--box", type=int, default=64, help="particle box (px)")
    p.add_argument("--pixel-size", type=float, default=2.0, help="A/px")
    p.add_argument("--target-resolution", type=float, default=8.0, help="search resolution (A)")
    p.add_argument("--snr", type=float, default=0.3)
    p.add_argument("--max-shift", type=float, default=4.0, help="px, original pixels")
    p.add_argument("--step", type=float, default=6.0, help="gallery step (deg)")
    p.add_argument("--spacing", type=float, default=30.0, help="region spacing (deg)")
    p.add_argument("--k", type=int, default=2, help="regions searched per particle")
    p.add_argument("--symmetry", default="c1")
    p.add_argument("--cnn", action="store_true", help="also use hints of a CNN trained here")
    p.add_argument("--n-train", type=int, default=3000, help="CNN training particles")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"),
                   help="alignment backend (gpu: CuPy)")
    p.add_argument("--refine", action="store_true",
                   help="refine the poses locally, as the alignment does by default (off here: "
                        "this bench measures the gallery search itself, with its --step)")
    p.add_argument("--repeat", type=int, default=2,
                   help="runs of each mode, interleaved; the fastest is reported")
    p.add_argument("--out", default=None, help="markdown file for the results table")
    return p.parse_args(argv)


def summarise(name, res, truth, symmetry, seconds):
    err = symmetric_pose_distance_deg(res.angles_deg, truth, symmetry)
    return {"mode": name, "within10": float(np.mean(err <= 10.0)),
            "median_err": float(np.median(err)), "comparisons": int(res.n_comparisons),
            "seconds": float(seconds), "err": err}


def cnn_hints(args, volume, centres, images_test):
    import tempfile

    from scipion_deepalign.core.cnn import TrainConfig, predict_regions, train_regions

    images, parts = simulate_particles(volume, args.n_train, pixel_size_a=args.pixel_size,
                                       snr=args.snr, ctf=True, max_shift_px=args.max_shift,
                                       seed=args.seed + 100)
    config = TrainConfig(pixel_size_a=args.pixel_size, target_resolution_a=args.target_resolution,
                         epochs=args.epochs, network="shared", positives_per_region=500,
                         training_source="particles", images_per_epoch=500 * 42,
                         seed=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        train_regions(images, parts.angles_deg, out_dir=folder, symmetry=args.symmetry,
                      spacing_deg=args.spacing, config=config, shifts_px=parts.shifts_px)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        hints, _ = predict_regions(images_test, folder, top_k=args.k)
        t_pred = time.perf_counter() - t0
    return hints, t_train, t_pred


def main(argv=None):
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    volume = make_phantom(args.box, symmetry=args.symmetry, seed=args.seed)
    images, parts = simulate_particles(volume, args.n, pixel_size_a=args.pixel_size, snr=args.snr,
                                       ctf=True, max_shift_px=args.max_shift, seed=args.seed + 1)
    truth = parts.angles_deg
    centres = region_centres_deg(args.spacing, args.symmetry)
    common = dict(pixel_size_a=args.pixel_size, max_shift_px=args.max_shift, ctf=parts.ctf,
                  symmetry=args.symmetry, step_deg=args.step, device=args.device,
                  target_resolution_a=args.target_resolution, centres_deg=centres,
                  refine=args.refine)
    oracle = nearest_regions(truth, centres, args.symmetry, k=args.k)
    modes = [("global (baseline)", None),
             (f"regional k={args.k}, true nearest regions", oracle)]
    extra = {}
    if args.cnn:
        hints, t_train, t_pred = cnn_hints(args, volume, centres, images)
        modes.append((f"regional k={args.k}, CNN hints", hints))
        true_region = nearest_regions(truth, centres, args.symmetry, k=1)[:, 0]
        extra.update(cnn_train_s=t_train, cnn_predict_s=t_pred,
                     cnn_topk_hit=float(np.mean((hints == true_region[:, None]).any(axis=1))))
    # Interleaved repeats: a load spike from other jobs on the machine hits every mode alike,
    # and the fastest run of each mode is reported.
    results, times = {}, {name: [] for name, _ in modes}
    for _ in range(max(1, args.repeat)):
        for name, hints in modes:
            t0 = time.perf_counter()
            results[name] = align_particles(images, volume, region_hints=hints, **common)
            times[name].append(time.perf_counter() - t0)
    rows = [summarise(name, results[name], truth, args.symmetry, min(times[name]))
            for name, _ in modes]
    glob, reg = results[modes[0][0]], results[modes[1][0]]
    extra["oracle_same_as_global"] = float(np.mean(symmetric_pose_distance_deg(
        reg.angles_deg, glob.angles_deg, args.symmetry) < 1e-3))
    extra["times"] = times

    load_after = os.getloadavg()[0]
    report = render(args, glob, rows, extra, (load_before, load_after))
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report)


def render(args, glob, rows, extra, loads):
    info = glob.info
    base = rows[0]
    lines = [
        "| mode | within 10 deg | median error (deg) | comparisons | wall time (s) "
        "| fewer comparisons | less time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['within10']:.2f} | {r['median_err']:.1f} | "
                     f"{r['comparisons']:,} | {r['seconds']:.1f} | "
                     f"{base['comparisons'] / r['comparisons']:.1f}x | "
                     f"{base['seconds'] / r['seconds']:.1f}x |")
    setup = (f"{args.n} particles of the built-in phantom ({args.symmetry}), box {args.box} px at "
             f"{args.pixel_size} A, CTF (defocus 1-3 um), SNR {args.snr}, shifts up to "
             f"{args.max_shift} px; search on a {info['box_px']} px box "
             f"({info['pixel_size_a']:.2f} A/px, target {args.target_resolution} A), "
             f"{info['n_directions']} directions (step {args.step} deg) x {info['n_psi']} "
             f"in-plane angles x {info['n_shifts']} shifts; regions: spacing {args.spacing} deg, "
             f"{len(region_centres_deg(args.spacing, args.symmetry))} regions, k = {args.k}.")
    spread = "; ".join(f"{name}: " + ", ".join(f"{t:.1f}" for t in ts)
                       for name, ts in extra["times"].items())
    notes = [f"- Wall times of every run (s), fastest reported: {spread}.",
             f"- Regional answer identical to the global one for "
             f"{extra['oracle_same_as_global']:.0%} of the particles (true-region hints)."]
    if "cnn_topk_hit" in extra:
        notes.append(f"- CNN (shared network, {args.n_train} training particles, {args.epochs} "
                     f"epochs): true region in its top {args.k} for "
                     f"{extra['cnn_topk_hit']:.0%} of the particles; training "
                     f"{extra['cnn_train_s']:.0f} s, prediction {extra['cnn_predict_s']:.1f} s "
                     "(not included in the alignment times above).")
    notes.append(f"- Machine: {platform.processor() or platform.machine()}, "
                 f"{os.cpu_count()} cores, {backend_words(info['backend'])}; load average "
                 f"{loads[0]:.1f} before, {loads[1]:.1f} after.")
    cmd = "benchmarks/bench_align.py " + " ".join(sys.argv[1:])
    return "\n".join([f"Command: `{cmd.strip()}`", "", setup, "", *lines, "", *notes, ""])


if __name__ == "__main__":
    main()
