"""What ``bench_accuracy.py`` runs on one data set: the global searches (the exhaustive
baseline and the default one) and DeepAlign for every training and search variant, with the
predictions and the baseline kept for later runs under ``--cache``.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from accuracy_data import errors, region_hits, reliability
from accuracy_variants import (
    BASELINE,
    DEFAULT_SEARCH,
    DEFAULT_TRAINING,
    FINE_PX,
    GLOBAL_DEFAULT,
    SEARCH,
    TRAINING,
)

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.defaults import REFINE
from scipion_deepalign.core.regions import region_centres_deg, region_distances_deg


def align(ds, hints=None, probs=None, search=None, centres=None, refine=REFINE, sample=None):
    """One alignment of the test particles (``sample``: of those at these positions of the
    test set only) and its row of scores and costs."""
    test = ds["test"] if sample is None else ds["test"][sample]
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


def baseline_sample(n_test: int, size: int):
    """Positions in the test set of the baseline's sample: ``size`` spread evenly (every
    particle when ``size`` is 0 or at least ``n_test``); None for all."""
    if not size or size >= n_test:
        return None
    return np.unique(np.linspace(0, n_test - 1, int(size)).round().astype(int))


def _global_search(ds, centres, args, sample=None):
    """The baseline row (with ``--cache``, reused from an earlier run on the same data set).
    On a ``sample`` of the test particles its costs are scaled to the whole test set (per
    particle times its size): the exhaustive search costs the same for every particle."""
    tag = "" if sample is None else f"_sample{len(sample)}"
    cache = Path(args.cache) / f"{ds['name']}_global{tag}.json" if args.cache else None
    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    base, _ = align(ds, centres=centres, refine=False, sample=sample)
    if sample is not None:
        scale = len(ds["test"]) / len(sample)
        base.update(sample=len(sample), n_test=len(ds["test"]),
                    comparisons=int(base["comparisons"] * scale),
                    seconds=base["seconds"] * scale, cpu_seconds=base["cpu_seconds"] * scale)
    base.update(variant=BASELINE, training="-")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(base, default=float))
    return base


def run_dataset(ds, args, labels):
    centres = region_centres_deg(args.spacing, "c1")
    truth_regions = np.argmin(region_distances_deg(ds["parts"].angles_deg[ds["test"]],
                                                   centres, "c1"), axis=1)
    rows = []
    sample = baseline_sample(len(ds["test"]), args.baseline_sample)
    base = _global_search(ds, centres, args, sample)
    rows.append(base)
    print(f"[{ds['name']}] global: {base}", flush=True)
    if REFINE:  # the global search as users get it
        row, res = align(ds, centres=centres)
        row.update(variant=GLOBAL_DEFAULT, training="-", **_on_sample(ds, res, sample))
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
            row, res = align(ds, hints, p, search, centres)
            row.update(variant=name, training=label, top1=top1, top2=top2, **info,
                       **_on_sample(ds, res, sample))
            rows.append(row)
            print(f"[{ds['name']}] {label} / {name}: {row}", flush=True)
        if args.fine_gallery and label == DEFAULT_TRAINING:
            k, search = SEARCH[DEFAULT_SEARCH]
            hints = order[:, :k]
            name = f"default search, {FINE_PX}, no refinement (default until 2026-12-04)"
            row, res = align(ds, hints, np.take_along_axis(probs, hints, axis=1), search,
                             centres, refine=False)
            row.update(variant=name, training=label, top1=top1, top2=top2, **info,
                       **_on_sample(ds, res, sample))
            rows.append(row)
            print(f"[{ds['name']}] {label} / {name}: {row}", flush=True)
    return rows, extra


def _on_sample(ds, res, sample) -> dict:
    """The scores of an alignment of every test particle on the baseline's sample alone (the
    paired comparison with a baseline measured on a sample); empty without one."""
    if sample is None:
        return {}
    truth = ds["parts"].angles_deg[ds["test"][sample]]
    return {"on_sample": errors(res.angles_deg[sample], truth)}


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

