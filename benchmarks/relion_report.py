"""Scores and tables of ``bench_relion.py``: poses against the truth, maps against the true
map, the accuracy-against-time curves and the time to poses and map for N particles."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from scipion_deepalign.core.io import read_particles_star, read_volume
from scipion_deepalign.core.judge.fsc import fsc_curve
from scipion_deepalign.core.runtime.atomic import atomic_open
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

#: the size the time table extrapolates to
EXTRAPOLATED_N = 100_000
#: the pose sets of DeepAlign and the global search: label -> (stage, STAR in the work folder)
POSE_SETS = {"DeepAlign end to end (cold training)": ("deepalign", "deepalign/cold.star"),
             "DeepAlign, model reused": ("reuse", "deepalign/aligned.star"),
             "global search": ("global", "global/aligned.star")}
#: the refinements: label -> stage
REFINEMENTS = {"RELION 3D auto-refine": "relion",
               "RELION local refinement from DeepAlign": "relion_local",
               "RELION local refinement from DeepAlign, without --firstiter_cc":
                   "relion_local_ml",
               "RELION 3D auto-refine, mask holding the whole particle": "relion_wide",
               "RELION local refinement from DeepAlign, mask holding the whole particle":
                   "relion_local_wide",
               "RELION local refinement from the TRUE poses (control), whole-particle mask":
                   "relion_local_truth"}


def image_index(names) -> np.ndarray:
    """The 1-based stack index of each ``index@stack`` name (the particle's identity: every
    tool keeps the names of the one normalised stack)."""
    return np.array([int(str(n).split("@", 1)[0]) for n in names], dtype=np.int64)


def pose_scores(star, truth, datadir) -> dict:
    """Fractions within 5/10/15 deg of the true pose and the median error (deg) of the
    particles of ``star`` (c1, full rotation angle); ``{}`` when it holds no poses.

    Parameters
    ----------
    star : str
        RELION STAR with poses (any order, any subset of the stack).
    truth : Particles
        The simulated particles with their true poses, stack index i at row i - 1.
    datadir : str
        Folder of the normalised stack.
    """
    parts = read_particles_star(star, datadir=str(datadir))
    if parts.angles_deg is None:
        return {}
    rows = image_index(parts.image_names) - 1
    err = symmetric_pose_distance_deg(parts.angles_deg, truth.angles_deg[rows], "c1")
    return {f"within{t}": float(np.mean(err <= t)) for t in (5, 10, 15)} | {
        "median_deg": float(np.median(err))}


def map_fsc(map_path, true_map, *, pixel_size_a, mask_radius_a) -> dict:
    """FSC 0.5 and 0.143 resolutions (A) of a map against the true map, both under one soft
    spherical mask."""
    volume, _ = read_volume(map_path)
    res = fsc_curve(volume, true_map, pixel_size_a=pixel_size_a, mask_radius_a=mask_radius_a)
    return {"fsc05_a": float(res.resolution_05_a), "fsc0143_a": float(res.resolution_0143_a)}


def agreement(map_a, map_b, *, pixel_size_a, mask_radius_a) -> dict:
    """The lowest FSC of two maps up to 2/3 of Nyquist, that frequency, and the lowest under
    the soft spherical mask of radius ``mask_radius_a`` (the particle's: RELION zeroes its
    map beyond the box's inscribed sphere, a map of ours keeps its noise there)."""
    a, _ = read_volume(map_a)
    b, _ = read_volume(map_b)
    limit = (2.0 / 3.0) / (2.0 * pixel_size_a)
    lowest = {}
    for key, radius in (("min_fsc_to_2_3_nyquist", None),
                        ("min_fsc_to_2_3_nyquist_masked", mask_radius_a)):
        res = fsc_curve(a, b, pixel_size_a=pixel_size_a, mask_radius_a=radius)
        freq, fsc = np.asarray(res.frequency_inv_a), np.asarray(res.fsc)
        inside = (freq > 0) & (freq <= limit + 1e-9)
        lowest[key] = float(fsc[inside].min())
    return lowest | {"limit_a": 1.0 / limit, "mask_radius_a": float(mask_radius_a)}


# ----------------------------------------------------------------------------- costs
def cost_model(stages: dict, n: int) -> dict:
    """``{row: {"fixed_s", "per_particle_s", "measured_s", "how"}}``: each way to poses and a
    map as a fixed cost plus a cost per particle, from the stage records of one run at ``n``.

    DeepAlign: training (and whatever the process spent outside its stages) is fixed,
    prediction and alignment are per particle. Global search: the gallery is fixed, the search
    per particle. RELION: its first iteration (reading, initial reference) is fixed, every
    later iteration per particle (the expectation step dominates), with the iterations it
    made. Every row adds one ``deepalign reconstruct`` of its poses, per particle (RELION's
    refinement writes its map itself).
    """
    out = {}
    rec = stages.get("reconstruct_seconds", {})
    per_rec = rec.get("deepalign", 0.0) / n
    for label, key in (("DeepAlign end to end (cold training)", "deepalign"),
                       ("DeepAlign, model reused", "reuse")):
        st = stages.get(key)
        if st and (key == "deepalign" or st.get("model_reused")):
            times = st["stage_seconds"]
            moving = times.get("predict", 0.0) + times.get("align", 0.0)
            out[label] = {"fixed_s": st["seconds"] - moving, "per_particle_s": moving / n
                          + per_rec, "how": "training + start-up fixed; prediction, alignment "
                          "and reconstruction per particle"}
    st = stages.get("global")
    if st:
        gallery = st["stage_seconds"].get("gallery", 0.0)
        out["global search"] = {"fixed_s": gallery, "per_particle_s":
                                (st["seconds"] - gallery) / n + per_rec,
                                "how": "gallery fixed; search (and start-up) and "
                                "reconstruction per particle"}
    for label, key in (("RELION 3D auto-refine", "relion"),
                       ("RELION local refinement from DeepAlign", "relion_local"),
                       ("RELION 3D auto-refine, mask holding the whole particle",
                        "relion_wide")):
        st = stages.get(key)
        if st and st.get("iterations"):
            first = st["iterations"][0]["seconds"]
            out[label] = {"fixed_s": first, "per_particle_s": (st["seconds"] - first) / n,
                          "how": f"{len(st['iterations'])} iterations ({st['stopped']}); "
                          "iteration 0 fixed, the rest per particle"}
    if "DeepAlign end to end (cold training)" in out and \
            "RELION local refinement from DeepAlign" in out:
        da, loc = (out[k] for k in ("DeepAlign end to end (cold training)",
                                    "RELION local refinement from DeepAlign"))
        out["DeepAlign then RELION local refinement"] = {
            "fixed_s": da["fixed_s"] + loc["fixed_s"],
            "per_particle_s": da["per_particle_s"] - per_rec + loc["per_particle_s"],
            "how": "the two rows above, without DeepAlign's reconstruction"}
    for row in out.values():
        row["measured_s"] = row["fixed_s"] + row["per_particle_s"] * n
    return out


def break_even(cost: dict) -> str:
    """N from which DeepAlign end to end (cold) needs less time than the global search."""
    da = cost.get("DeepAlign end to end (cold training)")
    gl = cost.get("global search")
    if not da or not gl:
        return "not measured"
    gain = gl["per_particle_s"] - da["per_particle_s"]
    if gain <= 0:
        return (f"never: DeepAlign's cost per particle ({da['per_particle_s'] * 1e3:.1f} ms) is "
                f"not below the global search's ({gl['per_particle_s'] * 1e3:.1f} ms)")
    n = max(0.0, (da["fixed_s"] - gl["fixed_s"]) / gain)
    return f"{n:,.0f} particles"


def _minutes(seconds) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def time_table(cost: dict, scores: dict, n: int) -> list:
    """Markdown lines of the time to poses and map for ``n`` and :data:`EXTRAPOLATED_N`."""
    lines = [f"| way to poses and map | fixed | per particle | {n:,} particles (measured) | "
             f"{EXTRAPOLATED_N:,} (extrapolated) | within 10° | FSC 0.5 vs truth | how |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in cost.items():
        sc = scores.get(label, {})
        within = "—" if "within10" not in sc else f"{sc['within10']:.3f}"
        fsc = "—" if "fsc05_a" not in sc else f"{sc['fsc05_a']:.1f} Å"
        lines.append(f"| {label} | {row['fixed_s']:.0f} s | {row['per_particle_s'] * 1e3:.1f} "
                     f"ms | {_minutes(row['measured_s'])} | "
                     f"{_minutes(row['fixed_s'] + row['per_particle_s'] * EXTRAPOLATED_N)} | "
                     f"{within} | {fsc} | {row['how']} |")
    return lines


def curve_table(stage: dict) -> list:
    """Markdown lines of one refinement's accuracy against time, one row per iteration."""
    lines = ["| iteration | time | within 5° | within 10° | within 15° | median error | "
             "FSC 0.5 vs truth |", "|---|---|---|---|---|---|---|"]
    for r in stage.get("iterations", []):
        if "within10" not in r or r["iteration"] == 0:  # 0: the start, no poses yet
            continue
        name = "final" if r.get("final") else str(r["iteration"])
        fsc = "—" if r.get("fsc05_a") is None else f"{r['fsc05_a']:.1f} Å"
        lines.append(f"| {name} | {_minutes(r['seconds'])} | {r['within5']:.3f} | "
                     f"{r['within10']:.3f} | {r['within15']:.3f} | {r['median_deg']:.1f}° | "
                     f"{fsc} |")
    return lines


def first_time_reaching(stage: dict, key: str, target: float, *, lower_is_better=False):
    """Seconds of the first iteration whose ``key`` reaches ``target``, or None."""
    for r in stage.get("iterations", []):
        value = r.get(key) if r["iteration"] > 0 else None
        if value is not None and (value <= target if lower_is_better else value >= target):
            return r["seconds"]
    return None


# ----------------------------------------------------------------------------- report
def score_all(b, stages: dict) -> dict:
    """``{label: scores}`` of every pose set (a refinement: its last scored iteration), each
    iteration's row given its FSC. Maps by ``deepalign reconstruct``, in ``WORK/maps``;
    scores kept in ``WORK/results/scores.json`` while their STAR file is unchanged."""
    truth = read_particles_star(str(b.sim / "particles.star"))
    true_map, pixel = read_volume(str(b.sim / "reference.mrc"))
    cache_path = b.results / "scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    (b.work / "maps").mkdir(exist_ok=True)

    def scored(key, star):
        stamp = f"{star}:{os.path.getmtime(star)}"
        if cache.get(key, {}).get("stamp") != stamp:
            rec = b.deepalign(["reconstruct", "--particles", str(star), "--out",
                               str(b.work / "maps" / f"{key}.mrc"), "--datadir",
                               str(b.input)], f"maps/{key}.log")
            cache[key] = {"stamp": stamp, "reconstruct_seconds": rec["seconds"],
                          **pose_scores(star, truth, b.input),
                          **map_fsc(b.work / "maps" / f"{key}.mrc", true_map,
                                    pixel_size_a=pixel, mask_radius_a=b.bg_radius_px * pixel)}
            cache_path.write_text(json.dumps(cache, indent=1))
        return cache[key]

    scores = {}
    for label, (stage, star) in POSE_SETS.items():
        if stages.get(stage) and "seconds" in stages[stage] and (b.work / star).exists():
            scores[label] = scored(stage, b.work / star)
    for label, stage in REFINEMENTS.items():
        for row in (stages.get(stage) or {}).get("iterations", []):
            if "within10" in row and row["iteration"] > 0:  # 0: the start, no poses yet
                row.update({k: v for k, v in scored(f"{stage}_it{row['iteration']:03d}",
                                                    row["star"]).items()
                            if k in ("fsc05_a", "fsc0143_a")})
                scores[label] = row
    return scores


def _accuracy_table(stages, scores) -> list:
    lines = ["| pose set | wall time | within 5° | within 10° | within 15° | median error | "
             "FSC 0.5 vs truth |", "|---|---|---|---|---|---|---|"]
    for label, sc in scores.items():
        stage = POSE_SETS.get(label, (REFINEMENTS.get(label),))[0]
        seconds = stages[stage]["seconds"]
        lines.append(f"| {label} | {_minutes(seconds)} | {sc['within5']:.3f} | "
                     f"{sc['within10']:.3f} | {sc['within15']:.3f} | {sc['median_deg']:.1f}° | "
                     f"{sc['fsc05_a']:.1f} Å |")
    return lines


def _refinement_section(label, stage, scores) -> list:
    if not stage:
        return []
    lines = [f"## {label}: accuracy against time", "",
             f"`{stage['command']}` — stopped: **{stage['stopped']}** after "
             f"{_minutes(stage['seconds'])} (cap {_minutes(stage['cap_s'])}); times are the "
             "data files' modification times from the start.", "", *curve_table(stage), ""]
    da = scores.get("DeepAlign end to end (cold training)")
    if da:
        t10 = first_time_reaching(stage, "within10", da["within10"])
        tf = first_time_reaching(stage, "fsc05_a", da["fsc05_a"], lower_is_better=True)
        lines += [f"First iteration at DeepAlign's accuracy (within 10° ≥ {da['within10']:.3f}): "
                  f"{_minutes(t10) if t10 else 'not reached'}; at its FSC 0.5 "
                  f"(≤ {da['fsc05_a']:.1f} Å): {_minutes(tf) if tf else 'not reached'}.", ""]
    return lines


def _local_vs_relion(stages, scores) -> list:
    glob, loc = stages.get("relion"), stages.get("relion_local")
    best = scores.get("RELION 3D auto-refine")
    if not glob or not loc or not best or not stages.get("deepalign"):
        return []
    t = first_time_reaching(loc, "fsc05_a", best["fsc05_a"], lower_is_better=True)
    if t is None:
        return [f"The local refinement did not reach RELION's FSC 0.5 ({best['fsc05_a']:.1f} Å) "
                "within its cap.", ""]
    total = stages["deepalign"]["seconds"] + t
    return [f"DeepAlign then local refinement reached RELION's FSC 0.5 ({best['fsc05_a']:.1f} Å) "
            f"after {_minutes(total)} in all (DeepAlign {_minutes(stages['deepalign']['seconds'])}"
            f" + local {_minutes(t)}): **{total / glob['seconds']:.2f}** of RELION's "
            f"{_minutes(glob['seconds'])}.", ""]


def _interop(stage) -> list:
    if not stage:
        return []
    lines = ["## Interoperation", ""]
    for key, what in (("deepalign_star", "DeepAlign's STAR (`deepalign run`)"),
                      ("clean_control", f"noise-free control ({stage['clean_particles']} "
                                        f"particles, SNR {stage['clean_snr']:g}, true poses)")):
        r = stage[key]
        truth = r["vs_truth"]
        masked = r.get("min_fsc_to_2_3_nyquist_masked")
        within = "" if masked is None else (
            f"inside the particle's sphere ({r['mask_radius_a']:.0f} Å, the mask of the FSC "
            f"against the truth) **{masked:.3f}** ({'≥' if masked >= 0.9 else 'below'} 0.9), "
            "over the whole box ")
        lines.append(
            f"* {what}: `{r['relion_command']}` ({r['relion_seconds']:.1f} s) against "
            f"`deepalign reconstruct` ({r['deepalign_seconds']:.1f} s): lowest FSC between "
            f"them up to 2/3 Nyquist ({r['limit_a']:.1f} Å) {within}"
            f"{r['min_fsc_to_2_3_nyquist']:.3f}; FSC 0.5 against the true map "
            f"{truth['relion']['fsc05_a']:.1f} Å (RELION) and "
            f"{truth['deepalign']['fsc05_a']:.1f} Å (DeepAlign).")
    return lines + ["", "`relion_reconstruct` zeroes its map beyond the box's inscribed sphere "
                    "(a soft edge); `deepalign reconstruct` keeps the noise of its corners "
                    "there, so over the whole box the two agree only where the signal "
                    "outweighs that noise. Inside the particle's sphere they are the same map; "
                    "the noise-free control tests the conventions (angles, origins, CTF) "
                    "alone.", ""]


def write_report(b, stages: dict, *, load_before, machine: str) -> None:
    """Print the report, and write it to ``--out`` (``.md``, raw numbers in ``.json``)."""
    scores = score_all(b, stages)
    rec = scores.get("DeepAlign end to end (cold training)", {}).get("reconstruct_seconds")
    cost = cost_model(dict(stages, reconstruct_seconds={"deepalign": rec or 0.0}), b.args.n)
    load_after = os.getloadavg()
    version = next((s["relion_version"] for s in stages.values()
                    if isinstance(s, dict) and s.get("relion_version")), "not run")
    cmds = [f"{k}: `{s['command']}`" for k, s in stages.items()
            if isinstance(s, dict) and "command" in s]
    # the load before the runs that measured the rows (a report made later, alone, would
    # otherwise show the load the measurements themselves left behind)
    measured = [s["run_load_before"] for s in stages.values()
                if isinstance(s, dict) and "run_load_before" in s]
    load_before = (max(measured),) if measured else load_before
    when = ("the measuring runs (the highest)" if measured
            else f"and {load_after[0]:.2f} after")
    alone = ("alone" if load_before[0] < 1.5 else
             "**the machine was busy (other jobs): times are pessimistic**")
    lines = ["# DeepAlign beside the global search and RELION", "",
             f"`benchmarks/bench_relion.py`, {time.strftime('%Y-%m-%d')}: {b.args.n:,} particles "
             f"of 8ZPM (64 px, 2 Å), SNR {b.args.snr:g}, CTF, shifts ≤ 3 px, reference "
             f"low-passed to {b.args.reference_resolution:g} Å; particles normalised by "
             f"`relion_preprocess` (bg radius {b.bg_radius_px} px), the same stack for every "
             f"tool. Machine: {machine}; RELION {version}; load average "
             f"{load_before[0]:.2f} before {when} ({alone}). FSC against "
             f"the true map under a soft sphere of {b.bg_radius_px} px, every map made by "
             "`deepalign reconstruct`.", ""]
    if stages.get("relion_missing"):
        lines += [f"**{stages['relion_missing']}**", ""]
    chained = {"DeepAlign then RELION local refinement":
               scores.get("RELION local refinement from DeepAlign", {})}
    lines += ["## Time to poses and map for N particles", "",
              *time_table(cost, scores | chained, b.args.n),
              "", f"Break-even N (DeepAlign end to end beats the global search): "
              f"**{break_even(cost)}**.", "", "## Accuracy", "", *_accuracy_table(stages, scores),
              ""]
    for label, stage in REFINEMENTS.items():
        lines += _refinement_section(label, stages.get(stage), scores)
    lines += _local_vs_relion(stages, scores) + _interop(stages.get("interop"))
    lines += ["## Commands", "", *[f"* {c}" for c in cmds], ""]
    text = "\n".join(lines)
    print(text)
    if b.args.out:
        with atomic_open(b.args.out) as fh:
            fh.write(text)
        with atomic_open(os.path.splitext(b.args.out)[0] + ".json") as fh:
            json.dump({"stages": stages, "scores": scores, "cost": cost,
                       "load_before": load_before, "load_after": load_after,
                       "machine": machine}, fh, indent=1)
