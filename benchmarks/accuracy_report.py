"""The markdown report of ``bench_accuracy.py``: the settings, one table per data set (ratios
against the baseline), the near-chance warnings, the reliability table and the machine.
"""
from __future__ import annotations

import os
import platform
import sys

from accuracy_variants import COARSE_PX, FINE_PX
from machine import backend_words

from scipion_deepalign.core.defaults import REFINE
from scipion_deepalign.core.regions import region_centres_deg
from scipion_deepalign.core.runtime.backend import get_array_module


def render(results, args, loads, seconds):
    lines = [f"Command: `benchmarks/bench_accuracy.py {' '.join(sys.argv[1:])}`".strip(), "",
             f"{args.n} particles per data set, 64 px, CTF (defocus 1-2.5 um), shifts up to "
             f"3 px; {args.train_fraction:.0%} form the training subset with {args.wrong:.0%} "
             f"of their poses random; reference low-passed (8 A, or 3 px for the 5 A map); "
             f"{len(region_centres_deg(args.spacing, 'c1'))} regions (spacing "
             f"{args.spacing:g} deg); network input "
             f"{args.input_box or 'the default'} px; search resolution "
             f"{args.align_resolution}; shifts searched up to "
             f"{args.max_shift or 'the default (box / 8)'} px; judged on the "
             "particles outside the training subset. Every row but the baseline searches "
             + (f"the {COARSE_PX} and refines the poses locally (the alignment's default), "
                "unless it says otherwise." if REFINE else f"the {FINE_PX}.")
             + " Ratios: against the baseline.", ""]
    for name, (rows, extra) in results.items():
        base = rows[0]
        lines += [f"### {name}", "",
                  "| training | search | within 5 / 10 / 15 deg | median (deg) | region top-1 "
                  "/ top-2 | fallback | regions searched | fewer comparisons | less time "
                  "(wall / CPU) | training (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ratio_c = base["comparisons"] / r["comparisons"]
            ratio_t = base["seconds"] / r["seconds"]
            ratio_cpu = base["cpu_seconds"] / r["cpu_seconds"]
            hits = f"{r['top1']:.2f} / {r['top2']:.2f}" if "top1" in r else "-"
            train_s = f"{r['train_s']:.0f} ({r['epochs_run']} ep)" if "train_s" in r else "-"
            lines.append(
                f"| {r['training']} | {r['variant']} | {r['within5']:.3f} / {r['within10']:.3f}"
                f" / {r['within15']:.3f} | {r['median_err']:.1f} | {hits} | "
                f"{r['fallback']:.3f} | {r['regions_searched']:.2f} | {ratio_c:.1f}x | "
                f"{ratio_t:.1f}x / {ratio_cpu:.1f}x | {train_s} |")
        if base.get("sample"):
            lines += ["", f"The baseline was run on {base['sample']} of the "
                      f"{base['n_test']} particles, spread evenly (its comparisons and times "
                      "scaled to all of them). On those particles, within 5 / 10 / 15 deg "
                      "and median:", ""]
            for r in rows:
                s = r if r is base else r.get("on_sample")
                if s:
                    lines.append(f"* {r['training']} / {r['variant']}: {s['within5']:.3f} / "
                                 f"{s['within10']:.3f} / {s['within15']:.3f}, "
                                 f"{s['median_err']:.1f} deg")
        warned = {r["training"] for r in rows if r.get("warnings")}
        if warned:
            lines += ["", "Near-chance warning raised for: " + ", ".join(sorted(warned))]
        if "reliability" in extra:
            trained = next(r["training"] for r in rows if "top1" in r)
            lines += ["", f"Reliability of the top-1 probability ({trained}):", "",
                      "| predicted top-1 probability | particles | mean predicted | observed "
                      "hit rate |", "|---|---|---|---|"]
            for lo, hi, count, mean_p, hit in extra["reliability"]:
                lines.append(f"| {lo:.1f}-{hi:.1f} | {count} | {mean_p:.3f} | {hit:.3f} |")
        lines.append("")
    backend = backend_words(get_array_module(args.device).__name__)
    lines.append(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {backend}; load "
                 f"average {loads[0]:.1f} before, {loads[1]:.1f} after; {seconds / 60:.0f} "
                 "min in all.")
    return "\n".join(lines) + "\n"

