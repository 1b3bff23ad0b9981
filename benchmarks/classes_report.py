"""Scores and tables of ``bench_classes.py``: classes and poses against the truth, class maps
against the true maps, RELION's accuracy-against-time curve; one report of every condition run
so far (keyed in its ``.json`` by the condition) and of the K sweep."""
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


#: the oracle and its controls: stage -> what the table calls it (None: written apart)
ORACLES = {"oracle": "oracle (true maps at the true poses)", "oracle_lowpass": None,
           "oracle_class_maps": "oracle with `classify`'s class maps (at the true poses)",
           "oracle_found_poses": "oracle at `classify`'s poses (true maps)"}


def score_classes(b, stages: dict) -> dict:
    """Scores of the oracle, DeepAlign, RELION's last iteration and the negative control."""
    true_classes = np.load(b.sim / "classes.npy") if (b.sim / "classes.npy").exists() else None
    scores = {}
    for key in ORACLES:
        if stages.get(key):
            found = np.load(stages[key]["classes_npy"])
            scores[key] = {"balanced_accuracy": balanced_accuracy(found, true_classes)[0],
                           "seconds": stages[key]["seconds"]}
    if stages.get("deepalign"):
        scores["deepalign"] = score_set(b, b.work / "deepalign" / "aligned.star",
                                        stages["deepalign"]["seconds"])
    for key in ("classify", "classify_cnn", "classify_filter", "classify_one_map"):
        if stages.get(key):
            from scipion_deepalign.core.classes.classify_folder import ClassifyFolder

            scores[key] = score_set(b, b.work / key / ClassifyFolder.STAR,
                                    stages[key]["seconds"])
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
    one = stages.get("negative_one_map")
    if one:
        from scipion_deepalign.core.classes.classify_folder import ClassifyFolder
        from scipion_deepalign.core.io import read_json

        report = read_json(str(b.work / "negative_one_map" / "classify.json"))
        last = report["iterations"][-1]
        halves = [h for h in last["half_map_correlation"] if h is not None]
        scores["negative_one_map"] = {
            "n": one["n"], "seconds": one["seconds"], "iterations": len(report["iterations"]),
            "class_sizes": last["class_sizes"],
            "first_sizes": report["iterations"][0]["class_sizes"],
            "map_correlation": last["map_correlation"][0][1],
            "half_map_correlation": min(halves) if halves else None,
            "star": str(b.work / "negative_one_map" / ClassifyFolder.STAR)}
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


#: headings of the sections write_report makes (any other ``## `` section of the report, written
#: by hand or by another benchmark, is kept as it is, after them)
GENERATED = ("## All conditions", "## Condition:", "## K sweep")


def _old_condition(md: str) -> dict:
    """The condition of a report written before conditions were keyed (one per file), read
    from its first paragraph."""
    import re

    def find(pattern, default, kind=str):
        m = re.search(pattern, md)
        return kind(m.group(1)) if m else default

    pair = find(r"\((compositional|conformational) pair\)", "compositional")
    fa = find(r"class A fraction ([\d.]+)", 0.5, float)
    c = {"pair": pair, "part_radius_a": 45.0, "fractions": [fa, 1.0 - fa],
         "snr": find(r"SNR ([\d.]+)", 0.1, float), "n": find(r"`[^`]*`, \S+: (\d+) particles",
                                                             2000, int), "seed": 0}
    if pair == "conformational":
        c.update(turn_deg=find(r"a part turned ([\d.]+)", 10.0, float), hinge="centre")
    c["label"] = (f"{pair} ({c['part_radius_a']:g} Å part "
                  + (f"turned {c['turn_deg']:g}° about its centre" if pair == "conformational"
                     else "masked away")
                  + f"), {100 * fa:.0f}/{100 * (1 - fa):.0f}, SNR {c['snr']:g}, {c['n']} "
                  "particles")
    c["slug"] = (f"{pair}-r45" + (f"-t{c['turn_deg']:g}-c" if pair == "conformational" else "")
                 + f"-f{100 * fa:.0f}_{100 * (1 - fa):.0f}-snr{c['snr']:g}-n{c['n']}-s0")
    return {"condition": c, "date": find(r"`benchmarks/bench_classes.py`, ([\d-]+)", None),
            "machine": find(r"Machine: ([^;]+);", None),
            "load_before": find(r"load average ([\d.]+) before", None, float),
            "load_after": find(r"([\d.]+) after", None, float),
            "reference_resolution_a": find(r"low-passed to ([\d.]+) Å", None, float)}


def load_records(out: str) -> dict:
    """The report's numbers so far (``{"conditions": {slug: ...}, "ksweep": {slug: ...}}``);
    a file of one unkeyed condition (before conditions were keyed) becomes that condition."""
    path = os.path.splitext(out)[0] + ".json"
    data = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    if "stages" in data and "conditions" not in data:
        md = open(out).read() if os.path.exists(out) else ""
        old = _old_condition(md)
        old.update(stages=data["stages"], scores=data["scores"])
        data = {"conditions": {old["condition"]["slug"]: old}}
    data.setdefault("conditions", {})
    data.setdefault("ksweep", {})
    return data


def _kept_sections(out: str) -> list:
    """The lines of the report's ``## `` sections that write_report does not make."""
    if not os.path.exists(out):
        return []
    kept, keep = [], False
    for line in open(out).read().splitlines():
        if line.startswith("## "):
            keep = not line.startswith(GENERATED)
        if keep:
            kept.append(line)
    return kept


def _condition_rows(entry) -> list:
    """The summary table's rows of one condition."""
    c, scores, stages = entry["condition"], entry["scores"], entry["stages"]
    label = c["label"]
    rows = []
    for key, way in ORACLES.items():
        if key in scores:
            way = way or (f"oracle, true maps low-passed to "
                          f"{stages[key]['resolution_a']:g} Å (the references')")
            rows.append(f"| {label} | {way} | - | {scores[key]['balanced_accuracy']:.3f} | - "
                        "| - | - |")
    for key, way in (("deepalign", "`deepalign run --volume A --volume B` (defaults, cold)"),
                     ("classify", "`deepalign classify --volume A --volume B` (defaults)"),
                     ("classify_cnn", "`deepalign classify --cnn --volume A --volume B` "
                                      "(defaults, cold)"),
                     ("classify_filter", "`deepalign classify --volume A --volume B "
                                         f"--filter-fsc {_filter_fsc(stages)}`"),
                     ("classify_one_map", "`deepalign classify --volume A --classes 2` (from "
                                          "map A alone, first classes by the variance "
                                          "split)")):
        if key in scores:
            rows.append(f"| {label} |{_row(way, scores[key])[1:]}")
    if "relion" in scores:
        way = (f"RELION 3D classification, iteration {scores['relion']['iteration']} "
               f"({stages['relion']['stopped']})")
        rows.append(f"| {label} |{_row(way, scores['relion'])[1:]}")
    return rows


def _filter_fsc(stages) -> str:
    """The FSC threshold of stage ``classify_filter`` as the table writes it."""
    return f"{(stages.get('classify_filter') or {}).get('filter_fsc', 0):g}"


def _condition_section(entry) -> list:
    """One condition's details: the maps, the machine, the negative control, RELION's
    iterations, DeepAlign's command."""
    c, scores, stages = entry["condition"], entry["scores"], entry["stages"]
    sim = stages.get("simulate") or {}
    load = (f"load average {_fmt(entry.get('load_before'), '.2f')} before, "
            f"{_fmt(entry.get('load_after'), '.2f')} after")
    lines = ["", f"## Condition: {c['label']}", "",
             f"{entry.get('date') or '-'}; |A − B| / |A| = {sim.get('map_change', 0):.3f}; "
             f"class sizes {sim.get('class_sizes')}; references low-passed to "
             f"{_fmt(entry.get('reference_resolution_a'), 'g')} Å; machine: "
             f"{entry.get('machine') or '-'}; {load}; work folder `{c['slug']}`."]
    if "negative" in scores:
        n = scores["negative"]
        lines += ["", f"Negative control: {n['n']} particles of class A only, `deepalign run` "
                  f"against both maps: {n['fraction_A']:.3f} classed A, "
                  f"{n['confident_B']:.3f} classed B with probability > 0.9 "
                  f"({n['seconds'] / 60:.1f} min)."]
    if "negative_one_map" in scores:
        n = scores["negative_one_map"]
        lines += ["", f"Negative control from one map: the {n['n']} class-A particles, "
                  "`deepalign classify --volume A --classes 2`: first classes "
                  f"{' / '.join(map(str, n['first_sizes']))}, after {n['iterations']} "
                  f"iterations {' / '.join(map(str, n['class_sizes']))}; the class maps "
                  f"correlate {n['map_correlation']:.3f}, a class's half maps "
                  f"{_fmt(n['half_map_correlation'])} ({n['seconds'] / 60:.1f} min)."]
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
    again = sorted({stages[k]["measured"] for k in stages
                    if isinstance(stages[k], dict) and stages[k].get("measured")})
    if again:
        lines += ["", "Measured again (the rest as above): " + "; ".join(again) + "."]
    return lines


def _ksweep_section(entry) -> list:
    st = entry["settings"]
    ks = ", ".join(map(str, st["ks"]))
    lines = ["", f"## K sweep: comparisons per particle for K = {ks}", "",
             f"{entry.get('date') or '-'}; for each K, {st['n']} particles of K maps in equal "
             f"proportions (the 70S as map 1, then the 70S with a {st['part_radius_a']:g} Å part "
             "masked away at +x, +y, +z), SNR "
             f"{st['snr']:g}, CTF, shifts ≤ 3 px, not normalised; references low-passed to "
             f"{_fmt(entry.get('reference_resolution_a'), 'g')} Å"
             + (f"; `--epochs {st['epochs']}`" if st.get("epochs") else "")
             + f". Machine: {entry.get('machine') or '-'}; load average "
             f"{_fmt(entry.get('load_before'), '.2f')} before, "
             f"{_fmt(entry.get('load_after'), '.2f')} after. Comparisons as the run's summary "
             "counts them (one particle x direction x in-plane angle, every class's search "
             "summed); refinement: the local refinement's candidates.", "",
             "| K | way | comparisons per particle, search | refinement | balanced class "
             "accuracy | wall time |", "|---|---|---|---|---|---|"]
    words = {"run": "`deepalign run` (defaults, cold)", "global": "`deepalign align --global`"}
    for r in entry["rows"]:
        lines.append(f"| {r['k']} | {words.get(r['way'], r['way'])} | "
                     f"{_fmt(r['search_per_particle'], ',.0f')} | "
                     f"{_fmt(r['refine_per_particle'], ',.0f')} | "
                     f"{_fmt(r['balanced_accuracy'])} | {r['seconds'] / 60:.1f} min |")
    return lines


def write_report(b, stages: dict, scores: dict, *, load_before, machine: str,
                 main_run: bool = True) -> None:
    """The markdown report (``--out``) and its numbers beside it (``.json``): this run's
    condition (and K sweep) added to, or put in place of the same one in, those there.
    ``main_run`` False (only controls or the report ran): the condition keeps the date and
    load of the run that made it."""
    if not b.args.out:
        return
    a = b.args
    data = load_records(a.out)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine,
            "load_before": load_before[0], "load_after": os.getloadavg()[0],
            "reference_resolution_a": a.reference_resolution}
    condition_stages = {k: v for k, v in stages.items() if k != "ksweep"}
    old = data["conditions"].get(a.condition["slug"])
    if old and not main_run:  # only controls ran: the date and load of the run that made it
        meta.update({k: old[k] for k in ("date", "load_before", "load_after") if k in old})
    if scores:
        data["conditions"][a.condition["slug"]] = {"condition": a.condition, **meta,
                                                    "stages": condition_stages,
                                                    "scores": scores}
    if stages.get("ksweep"):
        k = stages["ksweep"]
        data["ksweep"][k["settings"]["slug"]] = {**meta, **k}
    conditions = sorted(data["conditions"].values(), key=lambda e: e["condition"]["label"])
    lines = ["# DeepAlign's classes beside RELION 3D classification", "",
             "`benchmarks/bench_classes.py`: the 70S ribosome (64 px, 5 Å) as class A and as "
             "class B the same map with one part changed: masked away (compositional) or turned "
             "rigidly about a hinge (conformational); the particles of both in the condition's "
             "proportions, CTF, shifts ≤ 3 px, normalised by `relion_preprocess`; both "
             "references low-passed. One run per condition, each alone on the machine; a run "
             "adds its condition (or replaces the same one) and leaves the others.", "",
             "## All conditions", "",
             "| condition | way | wall time | balanced class accuracy | particles in A / B | "
             "within 10° of the correctly classed, A / B | FSC 0.5 of each class map vs its "
             "true map, A / B |", "|---|---|---|---|---|---|---|"]
    for entry in conditions:
        lines += _condition_rows(entry)
    for entry in conditions:
        lines += _condition_section(entry)
    for entry in data["ksweep"].values():
        lines += _ksweep_section(entry)
    kept = _kept_sections(a.out)
    if kept:
        lines += [""] + kept
    with atomic_open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with atomic_open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump(data, f, indent=1, default=str)
