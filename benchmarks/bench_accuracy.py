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
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from machine import backend_words  # noqa: E402

from scipion_deepalign.core.align.align import align_particles  # noqa: E402
from scipion_deepalign.core.align.search_plan import SearchOptions  # noqa: E402
from scipion_deepalign.core.defaults import (  # noqa: E402
    GALLERY_STEP_PX,
    REFINE,
    TARGET_RESOLUTION,
    default_max_shift_px,
)
from scipion_deepalign.core.geometry import random_angles_deg  # noqa: E402
from scipion_deepalign.core.imageops import low_pass_volume  # noqa: E402
from scipion_deepalign.core.io import read_volume  # noqa: E402
from scipion_deepalign.core.regions import region_centres_deg, region_distances_deg  # noqa: E402
from scipion_deepalign.core.runtime.backend import get_array_module  # noqa: E402
from scipion_deepalign.core.simulate import simulate_particles  # noqa: E402
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: name -> (file, pixel size if the header has none, search resolution in A of
#: ``--align-resolution map``)
MAPS = {
    "8zpm": ("8zpm_64_2A.mrc", 2.0, 8.0),
    "70S": ("clean70SRibosome_vol_65p.mrc", 5.0, 20.0),
}

from accuracy_variants import (  # noqa: E402
    DEFAULT_SEARCH,
    DEFAULT_TRAINING,
    SEARCH,
    TRAINING,
)

#: the automatic gallery step without / with the refinement, as the labels say it
FINE_PX, COARSE_PX = (f"{GALLERY_STEP_PX[refine]:g}-px gallery" for refine in (False, True))
#: the baseline every ratio is taken against: the exhaustive search of the fine gallery
BASELINE = f"global search, {FINE_PX} (baseline)"
#: the global search as the alignment makes it by default (coarser gallery + refinement)
GLOBAL_DEFAULT = f"global search, default ({COARSE_PX} + refinement)"
assert SEARCH[DEFAULT_SEARCH][1] == SearchOptions(), "DEFAULT_SEARCH must be the core default"


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


def make_dataset(name, snr, args):
    filename, default_pixel, align_res = MAPS[name]
    volume, pixel = read_volume(str(Path(args.data) / filename))
    pixel = pixel or default_pixel
    volume = volume[:64, :64, :64]  # the 65-voxel ribosome: cropped to 64
    images, parts = simulate_particles(volume, args.n, pixel_size_a=pixel, snr=snr,
                                       max_shift_px=3.0, seed=args.seed + 1,
                                       defocus_range_a=(10000.0, 25000.0))
    # never the exact map: low-passed to 8 A, or to 1.5 x Nyquist when that is coarser
    resolution = max(args.reference_resolution, 3.0 * pixel)
    reference = low_pass_volume(volume, pixel_size_a=pixel, resolution_a=resolution)
    rng = np.random.default_rng(args.seed + 2)
    n_train = int(round(args.train_fraction * args.n))
    train = np.arange(n_train)
    test = np.arange(n_train, args.n)
    train_angles = parts.angles_deg[train].copy()
    wrong = rng.random(n_train) < args.wrong
    train_angles[wrong] = random_angles_deg(int(wrong.sum()), rng)
    if args.align_resolution == "auto":
        align_res = TARGET_RESOLUTION
    elif args.align_resolution != "map":
        align_res = float(args.align_resolution)
    max_shift = args.max_shift or default_max_shift_px(volume.shape[0])
    return dict(name=f"{name}@{snr:g}", images=images, parts=parts, reference=reference,
                max_shift=max_shift,
                pixel=pixel, align_res=align_res, train=train, test=test, device=args.device,
                train_angles=train_angles, ref_res=resolution, n_wrong=int(wrong.sum()))


def errors(angles, truth, symmetry="c1"):
    err = symmetric_pose_distance_deg(angles, truth, symmetry)
    return {f"within{t}": float(np.mean(err <= t)) for t in (5, 10, 15)} | {
        "median_err": float(np.median(err))}


def align(ds, hints=None, probs=None, search=None, centres=None, refine=REFINE):
    test = ds["test"]
    parts = ds["parts"]
    t0, c0 = time.perf_counter(), time.process_time()
    res = align_particles(ds["images"][test], ds["reference"], pixel_size_a=ds["pixel"],
                          max_shift_px=ds["max_shift"], ctf=parts.ctf.subset(test),
                          symmetry="c1",
                          region_hints=hints, centres_deg=centres,
                          target_resolution_a=ds["align_res"], region_probabilities=probs,
                          search=search, refine=refine, device=ds["device"])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = errors(res.angles_deg, parts.angles_deg[test])
    row.update(comparisons=int(res.n_comparisons), seconds=seconds, cpu_seconds=cpu,
               fallback=float(res.info.get("fallback_fraction", 0.0)),
               regions_searched=float(res.info.get("mean_regions_searched", 0.0)))
    return row, res


def train(ds, label, args, folder):
    from scipion_deepalign.core.cnn import TrainConfig, predict_probabilities, train_regions

    options = dict(TRAINING[label], pixel_size_a=ds["pixel"], target_box_px=args.input_box,
                   seed=args.seed)
    if args.epochs:
        options["epochs"] = args.epochs
    config = TrainConfig(**options)
    parts, tr = ds["parts"], ds["train"]
    if config.training_source == "projections":  # every particle gives noise and CTFs
        images, angles, shifts, ctf = ds["images"], None, None, parts.ctf
    else:
        images, angles = ds["images"][tr], ds["train_angles"]
        shifts, ctf = parts.shifts_px[tr], parts.ctf.subset(tr)
    t0 = time.perf_counter()
    report = train_regions(images, angles, out_dir=folder, symmetry="c1",
                           spacing_deg=args.spacing, config=config, shifts_px=shifts,
                           reference=ds["reference"], ctf=ctf)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs = predict_probabilities(ds["images"][ds["test"]], folder)
    t_predict = time.perf_counter() - t0
    history = report.histories["shared"]
    return probs, {"train_s": t_train, "predict_s": t_predict,
                   "epochs_run": len(history["loss"]), "warnings": report.warnings}


def _trained(ds, label, args):
    """Train (or, with ``--cache``, reuse the predictions of an earlier run of) a variant."""
    cache = None
    if args.cache:
        name = f"{ds['name']}_{label}".replace(" ", "_").replace(",", "").replace("/", "-")
        cache = Path(args.cache) / f"{name}.npz"
        if cache.exists():
            saved = np.load(cache, allow_pickle=True)
            return saved["probs"], saved["info"].item()
    with tempfile.TemporaryDirectory() as folder:
        probs, info = train(ds, label, args, folder)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, probs=probs, info=np.array(info, dtype=object))
    return probs, info


def _global_search(ds, centres, args):
    """The baseline row (with ``--cache``, reused from an earlier run on the same data set)."""
    cache = Path(args.cache) / f"{ds['name']}_global.json" if args.cache else None
    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    base, _ = align(ds, centres=centres, refine=False)
    base.update(variant=BASELINE, training="-")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(base, default=float))
    return base


def region_hits(probs, truth_regions):
    order = np.argsort(-probs, axis=1, kind="stable")
    return (float(np.mean(order[:, 0] == truth_regions)),
            float(np.mean((order[:, :2] == truth_regions[:, None]).any(axis=1))))


def reliability(probs, truth_regions, bins=(0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0001)):
    top = probs.max(axis=1)
    hit = probs.argmax(axis=1) == truth_regions
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (top >= lo) & (top < hi)
        if sel.any():
            rows.append((lo, min(hi, 1.0), int(sel.sum()), float(top[sel].mean()),
                         float(hit[sel].mean())))
    return rows


def run_dataset(ds, args, labels):
    centres = region_centres_deg(args.spacing, "c1")
    truth_regions = np.argmin(region_distances_deg(ds["parts"].angles_deg[ds["test"]],
                                                   centres, "c1"), axis=1)
    rows = []
    base = _global_search(ds, centres, args)
    rows.append(base)
    print(f"[{ds['name']}] global: {base}", flush=True)
    if REFINE:  # the global search as users get it
        row, _ = align(ds, centres=centres)
        row.update(variant=GLOBAL_DEFAULT, training="-")
        rows.append(row)
        print(f"[{ds['name']}] {GLOBAL_DEFAULT}: {row}", flush=True)
    extra = {}
    for label in labels:
        probs, info = _trained(ds, label, args)
        top1, top2 = region_hits(probs, truth_regions)
        order = np.argsort(-probs, axis=1, kind="stable")
        if label == labels[0]:
            extra["reliability"] = reliability(probs, truth_regions)
        variants = _search_variants(args) if label == DEFAULT_TRAINING else {
            k: SEARCH[k] for k in ("top-2, no window (0.1.0)", DEFAULT_SEARCH)}
        for name, (k, search) in variants.items():
            hints = order[:, :k]
            p = np.take_along_axis(probs, hints, axis=1)
            row, _ = align(ds, hints, p, search, centres)
            row.update(variant=name, training=label, top1=top1, top2=top2, **info)
            rows.append(row)
            print(f"[{ds['name']}] {label} / {name}: {row}", flush=True)
        if args.fine_gallery and label == DEFAULT_TRAINING:
            k, search = SEARCH[DEFAULT_SEARCH]
            hints = order[:, :k]
            name = f"default search, {FINE_PX}, no refinement (default until 2026-12-04)"
            row, _ = align(ds, hints, np.take_along_axis(probs, hints, axis=1), search,
                           centres, refine=False)
            row.update(variant=name, training=label, top1=top1, top2=top2, **info)
            rows.append(row)
            print(f"[{ds['name']}] {label} / {name}: {row}", flush=True)
    return rows, extra


def _search_variants(args) -> dict:
    """The search variants of the default training: all, or those ``--search-variants``
    names ('default': the default search alone)."""
    if not args.search_variants:
        return dict(SEARCH)
    names = [DEFAULT_SEARCH if n.strip() == "default" else n.strip()
             for n in args.search_variants.split(";")]
    unknown = [n for n in names if n not in SEARCH]
    if unknown:
        raise SystemExit(f"--search-variants: unknown {unknown}; choose from {list(SEARCH)}")
    return {n: SEARCH[n] for n in names}


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
