"""Scores and tables of ``bench_classes.py``: classes and poses against the truth, class maps
against the true maps, RELION's accuracy-against-time curve."""
from __future__ import annotations

import json
import os
import time
from itertools import permutations

import numpy as np
from relion_report import image_index

from scipion_deepalign.core.io import load_particle_images, read_particles_star, read_volume
from scipion_deepalign.core.io.columns import class_numbers
from scipion_deepalign.core.judge.fsc import fsc_curve
from scipion_deepalign.core.judge.reconstruct import reconstruct
from scipion_deepalign.core.runtime.atomic import atomic_open
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

#: the two classes' names, in the order of the maps given to every tool
NAMES = ("A", "B")


def balanced_accuracy(found, truth, k: int = 2):
    """Mean over the true classes of the fraction given their class, after the best matching
    of labels; ``(accuracy, matched labels (N,))``."""
    best, labels = -1.0, found
    for perm in permutations(range(k)):
        mapped = np.asarray(perm)[found]
        acc = float(np.mean([np.mean(mapped[truth == c] == c) for c in range(k)
                             if np.any(truth == c)]))
        if acc > best:
            best, labels = acc, mapped
    return best, labels


def class_scores_of_star(star, truth_classes, datadir, previous: dict) -> dict:
    """Balanced accuracy of a STAR's ``rlnClassNumber`` and the fraction that changed class
    since the STAR scored before (``previous`` holds it between calls)."""
    parts = read_particles_star(str(star), datadir=str(datadir))
    rows = image_index(parts.image_names) - 1
    found = np.full(len(truth_classes), -1)
    found[rows] = class_numbers(parts.extra)
    acc, _ = balanced_accuracy(found[rows], truth_classes[rows])
    row = {"balanced_accuracy": acc, "fraction_A": float(np.mean(found[rows] == 0))}
    if "classes" in previous:
        row["changed"] = float(np.mean(previous["classes"][rows] != found[rows]))
    previous["classes"] = found
    return row


def _class_maps(star, truth, true_classes, datadir, labels, true_maps, mask_radius_a):
    """Each class's map from its particles (the method's poses), FSC 0.5 against its true map."""
    parts = read_particles_star(str(star), datadir=str(datadir))
    rows = image_index(parts.image_names) - 1
    out = {}
    for c, name in enumerate(NAMES):
        mine = np.flatnonzero(labels == c)
        if len(mine) < 10:
            out[name] = {"n": int(len(mine))}
            continue
        _, images = load_particle_images(parts, mine)
        volume = reconstruct(images, parts.angles_deg[mine], shifts_px=parts.shifts_px[mine],
                             ctf=parts.ctf.subset(mine), pixel_size_a=parts.pixel_size_a)
        res = fsc_curve(volume, true_maps[c], pixel_size_a=parts.pixel_size_a,
                        mask_radius_a=mask_radius_a)
        right = mine[true_classes[rows[mine]] == c]
        err = symmetric_pose_distance_deg(parts.angles_deg[right],
                                          truth.angles_deg[rows[right]], "c1")
        out[name] = {"n": int(len(mine)), "fsc05_a": float(res.resolution_05_a),
                     "within10_correct": float(np.mean(err <= 10)) if len(err) else None}
    return out


def score_set(b, star, seconds) -> dict:
    """Every score of one class-and-pose STAR."""
    truth = read_particles_star(str(b.sim / "particles.star"))
    true_classes = np.load(b.sim / "classes.npy")
    parts = read_particles_star(str(star), datadir=str(b.input))
    rows = image_index(parts.image_names) - 1
    acc, labels = balanced_accuracy(class_numbers(parts.extra), true_classes[rows])
    true_maps = [read_volume(str(b.sim / f"true_{n}.mrc"))[0] for n in NAMES]
    return {"balanced_accuracy": acc, "seconds": seconds,
            "classes": _class_maps(star, truth, true_classes, b.input, labels, true_maps,
                                   b.bg_radius_px * 5.0)}


def score_classes(b, stages: dict) -> dict:
    """Scores of the oracle, DeepAlign, RELION's last iteration and the negative control."""
    true_classes = np.load(b.sim / "classes.npy") if (b.sim / "classes.npy").exists() else None
    scores = {}
    if stages.get("oracle"):
        found = np.load(stages["oracle"]["classes_npy"])
        scores["oracle"] = {"balanced_accuracy": balanced_accuracy(found, true_classes)[0],
                            "seconds": stages["oracle"]["seconds"]}
    if stages.get("deepalign"):
        scores["deepalign"] = score_set(b, b.work / "deepalign" / "aligned.star",
                                        stages["deepalign"]["seconds"])
    if stages.get("classify"):
        from scipion_deepalign.core.classes.classify_folder import ClassifyFolder

        scores["classify"] = score_set(b, b.work / "classify" / ClassifyFolder.STAR,
                                       stages["classify"]["seconds"])
    rel = stages.get("relion")
    if rel and rel.get("iterations"):
        last = rel["iterations"][-1]
        scores["relion"] = score_set(b, last["star"], rel["seconds"])
        scores["relion"]["iteration"] = last["iteration"]
    neg = stages.get("negative")
    if neg:
        parts = read_particles_star(str(b.work / "negative" / "aligned.star"))
        classes = class_numbers(parts.extra)
        prob = np.asarray(parts.extra.get("deepalignClassProb", np.ones(len(classes))), float)
        scores["negative"] = {"fraction_A": float(np.mean(classes == 0)), "n": neg["n"],
                              "confident_B": float(np.mean((classes == 1) & (prob > 0.9))),
                              "seconds": neg["seconds"]}
    return scores


def _fmt(value, spec=".3f", unit=""):
    return "-" if value is None else f"{value:{spec}}{unit}"


def _row(label, s) -> str:
    cls = s.get("classes", {})
    maps = " / ".join(_fmt(cls.get(n, {}).get("fsc05_a"), ".1f", " Å") for n in NAMES)
    poses = " / ".join(_fmt(cls.get(n, {}).get("within10_correct")) for n in NAMES)
    sizes = " / ".join(str(cls.get(n, {}).get("n", "-")) for n in NAMES)
    return (f"| {label} | {s['seconds'] / 60:.1f} min | {s['balanced_accuracy']:.3f} | {sizes} "
            f"| {poses} | {maps} |")


def write_report(b, stages: dict, scores: dict, *, load_before, machine: str) -> None:
    """The markdown report (``--out``) and its numbers beside it (``.json``)."""
    if not b.args.out:
        return
    a = b.args
    sim = stages.get("simulate") or {}
    change = ("a part masked away" if a.pair == "compositional"
              else f"a part turned {a.turn_deg:g}°")
    lines = [f"# DeepAlign's classes beside RELION 3D classification ({a.pair} pair)", "",
             f"`benchmarks/bench_classes.py`, {time.strftime('%Y-%m-%d')}: {a.n} particles of "
             f"the 70S ribosome (64 px, 5 Å) and its {a.pair} change "
             f"({change}; "
             f"|A − B| / |A| = {sim.get('map_change', 0):.3f}), class A fraction {a.fraction:g} "
             f"(sizes {sim.get('class_sizes')}), SNR {a.snr:g}, CTF, shifts ≤ 3 px; "
             f"normalised by `relion_preprocess`; both references low-passed to "
             f"{a.reference_resolution:g} Å. Machine: {machine}; load average "
             f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (alone).", "",
             "| way | wall time | balanced class accuracy | particles in A / B | within 10° "
             "of the correctly classed, A / B | FSC 0.5 of each class map vs its true map, "
             "A / B |", "|---|---|---|---|---|---|"]
    if "oracle" in scores:
        o = scores["oracle"]
        lines.append(f"| oracle (true maps at the true poses) | - | {o['balanced_accuracy']:.3f}"
                     " | - | - | - |")
    if "deepalign" in scores:
        lines.append(_row("`deepalign run --volume A --volume B` (defaults, cold training)",
                          scores["deepalign"]))
    if "classify" in scores:
        lines.append(_row("`deepalign classify --volume A --volume B` (defaults)",
                          scores["classify"]))
    if "relion" in scores:
        r = stages["relion"]
        lines.append(_row(f"RELION 3D classification, iteration {scores['relion']['iteration']}"
                          f" ({r['stopped']})", scores["relion"]))
    if "negative" in scores:
        n = scores["negative"]
        lines += ["", f"Negative control: {n['n']} particles of class A only, `deepalign run` "
                  f"against both maps: {n['fraction_A']:.3f} classed A, "
                  f"{n['confident_B']:.3f} classed B with probability > 0.9 "
                  f"({n['seconds'] / 60:.1f} min)."]
    rel = stages.get("relion")
    if rel:
        lines += ["", "RELION: `" + rel["command"] + "`", "",
                  "| iteration | time | balanced accuracy | changed class | fraction in A |",
                  "|---|---|---|---|---|"]
        for it in rel["iterations"]:
            lines.append(f"| {it['iteration']} | {it['seconds'] / 60:.1f} min | "
                         f"{it['balanced_accuracy']:.3f} | {_fmt(it.get('changed'))} | "
                         f"{it['fraction_A']:.3f} |")
    elif stages.get("relion_missing"):
        lines += ["", f"RELION not run: {stages['relion_missing']}"]
    da = stages.get("deepalign")
    if da:
        lines += ["", f"DeepAlign: `{da['command']}`; stages: "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in da["stage_seconds"].items())]
    with atomic_open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with atomic_open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"stages": stages, "scores": scores}, f, indent=1, default=str)
