"""Search resolution, coarse to fine: accuracy and time of the alignment at each schedule.

On 8zpm (64 px, 2 A/px, SNR 0.05, CTF, reference low-passed to 8 A; the data sets of
bench_accuracy.make_dataset), a global search (2-px gallery + local refinement, the default)
at each schedule of (search resolution, refinement resolution):

* full-resolution search and refinement (``--target-resolution full``);
* a coarse search with the refinement on the same box;
* a coarse search with the refinement on a finer box.

Reported: fraction within 5/10 degrees of the true pose, median error, the estimate of the
reference's resolution, boxes, wall and CPU time (CPU: every thread, `time.process_time`).

Usage::

    .venv/bin/python benchmarks/bench_resolution.py --n 300
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_accuracy import DATA, MAPS, errors, make_dataset  # noqa: E402

from scipion_deepalign.core.align.align import align_particles  # noqa: E402
from scipion_deepalign.core.resolution import (  # noqa: E402
    REFINE_MARGIN,
    SearchResolution,
    estimate_map_resolution,
    search_resolution,
)


def schedules(estimate, coarse, nyquist):
    """label -> SearchResolution (None: the full box)."""
    finer = max(estimate / REFINE_MARGIN, nyquist)
    finer = None if finer <= nyquist else finer
    return {
        "full search + full refinement": SearchResolution(None, None, "full"),
        f"{coarse:g} A search + same-box refinement": SearchResolution(coarse, coarse, "given"),
        f"{coarse:g} A search + {_words(finer)} refinement": SearchResolution(coarse, finer,
                                                                             "given"),
        f"{coarse:g} A search + full refinement": SearchResolution(coarse, None, "given"),
        f"auto ({estimate:.3g} A) search + same-box refinement": SearchResolution(
            estimate, estimate, "estimated", estimate),
        "auto (default)": "auto",
        f"{coarse:g} A search + same-box refinement, step of the full box": (
            SearchResolution(coarse, coarse, "given"), "full-step"),
        f"{coarse:g} A search + {_words(finer)} refinement, step of the full box": (
            SearchResolution(coarse, finer, "given"), "full-step"),
        f"{_words(finer)} search + same-box refinement": SearchResolution(finer, finer, "given"),
        f"{_words(finer)} search + full refinement": SearchResolution(finer, None, "given"),
    }


def _words(value):
    return "full" if value is None else f"{value:.3g} A"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--map", default="8zpm", choices=sorted(MAPS),
                   help="data set of bench_accuracy (reference low-passed to 8 A, or 3 pixels)")
    p.add_argument("--coarse", type=float, default=None,
                   help="coarse search resolution (A); default the map's in bench_accuracy")
    p.add_argument("--only", default=None, help="comma-separated row numbers (1-based)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(DATA))
    args = p.parse_args(argv)
    ds = make_dataset(args.map, args.snr, SimpleNamespace(
        data=args.data, n=args.n, seed=args.seed, reference_resolution=8.0,
        train_fraction=0.0, wrong=0.0, device="cpu"))
    pixel = ds["pixel"]
    estimate = estimate_map_resolution(ds["reference"], pixel)
    print(f"reference low-passed to {ds['ref_res']:g} A: estimate {estimate:.3g} A; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    coarse = ds["align_res"] if args.coarse is None else args.coarse
    rows = list(schedules(estimate, coarse, 2 * pixel).items())
    keep = range(len(rows)) if not args.only else [int(i) - 1 for i in args.only.split(",")]
    parts = ds["parts"]
    print("| schedule | search / refinement box (px) | within 5 | within 10 | median (deg) | "
          "wall (s) | CPU (s) | load |")
    print("|---|---|---|---|---|---|---|---|")
    for i in keep:
        label, schedule = rows[i]
        step = None
        if isinstance(schedule, tuple):  # the automatic step of the full box
            from scipion_deepalign.core.align.gallery import default_step_deg
            schedule, step = schedule[0], default_step_deg(0.45 * ds["images"].shape[-1],
                                                           refine=True)
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        res = align_particles(ds["images"], ds["reference"], pixel_size_a=pixel,
                              max_shift_px=4.0, ctf=parts.ctf, target_resolution_a=schedule,
                              step_deg=step, device="cpu")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        err = errors(res.angles_deg, parts.angles_deg)
        used = search_resolution(schedule, volume=ds["reference"], pixel_size_a=pixel)
        print(f"| {label} | {res.info['box_px']} / {res.info['refine_box_px']} | "
              f"{err['within5']:.3f} | {err['within10']:.3f} | {err['median_err']:.2f} | "
              f"{seconds:.1f} | {cpu:.1f} | {load:.1f} |", flush=True)
        print(f"<!-- {label}: {used.describe()} -->", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
