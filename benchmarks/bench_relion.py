"""DeepAlign beside the global search and RELION 3.1's 3D auto-refinement, on one data set.

The data set: the map of an asymmetric membrane protein made from its atomic model (8ZPM,
``../shared/data/8zpm_64_2A.mrc``, 64 px at 2 A), ``--n`` particles simulated by ``deepalign
simulate`` (CTF, SNR ``--snr``, shifts up to 3 px, known poses), normalised as RELION's
extraction would (``relion_preprocess --norm --bg_radius``); that one normalised stack goes to
every tool, with the map low-passed to ``--reference-resolution`` as the reference. Stages, each
a process timed by its wall time, each recorded in ``WORK/results/<stage>.json``:

``simulate`` -> ``normalise`` -> ``deepalign`` (``deepalign run``, defaults, cold) -> ``reuse``
(a second run on the same folder: the trained model is reused) -> ``global`` (``deepalign
align --global``, defaults) -> ``relion`` (auto-refine with the pinned options of
:func:`relion_tools.refine_options`, stopped at ``--relion-cap-min``; each iteration's
``run_itNNN_data.star`` scored as it appears, its time the file's mtime from the start) ->
``relion_local`` (RELION's local refinement from DeepAlign's poses) -> ``relion_local_ml``
(the same without ``--firstiter_cc``) -> ``interop``
(``relion_reconstruct`` and ``deepalign reconstruct`` of DeepAlign's STAR, and of a
noise-free control: the same map?) -> ``relion_wide`` and ``relion_local_wide`` (the two
refinements with ``--particle_diameter`` holding the whole particle, read off the reference:
8ZPM's side views reach beyond the extraction's background circle) -> ``relion_local_truth``
(that local refinement from the true poses: a control of RELION's options). A stage run again
(``--stages``) does not rerun the stages after it that read its output.

Scores: rotation angle to the true pose (within 5/10/15 deg, median); FSC 0.5 against the true
map of each pose set's map, every one made by ``deepalign reconstruct``. The report (``--out``,
with the raw numbers in the ``.json`` beside it) gives the curves, the time to poses and map for
``--n`` particles measured and for 100 000 extrapolated from fixed and per-particle costs, and
the break-even N of DeepAlign against the global search. Run it alone on the machine; it never
enters ``make test``.

Usage::

    .venv/bin/python benchmarks/bench_relion.py --out docs/benchmarks_relion.md   # ~2.5 h
    .venv/bin/python benchmarks/bench_relion.py --quick      # 200 particles, caps 3 min
    .venv/bin/python benchmarks/bench_relion.py --stages relion_local,interop   # redo two
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import relion_report as report  # noqa: E402
import relion_tools as relion  # noqa: E402
from bench_folder import ROOT, Bench, run_stages, training_seconds  # noqa: E402
from machine import backend_words  # noqa: E402

DATA = Path(ROOT).parent / "shared" / "data"
MAP, BOX, PIXEL_A = "8zpm_64_2A.mrc", 64, 2.0
STAGES = ("simulate", "normalise", "deepalign", "reuse", "global", "relion", "relion_local",
          "relion_local_ml", "interop", "relion_wide", "relion_local_wide", "relion_local_truth")
#: the one normalised stack every tool reads (in WORK/input)
NORMALISED_STACK = "norm.mrcs"
#: the local refinement's prior on the three angles (deg; searched to 3 sigma)
LOCAL_SIGMA_DEG = 3.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/bench_relion", metavar="DIR",
                   help="folder of the data and every stage's output (kept: stages resume)")
    p.add_argument("--stages", default=None, metavar="LIST",
                   help="comma-separated stages to run again (" + ", ".join(STAGES) + "), "
                        "or 'report' to only write the report from the records; default: "
                        "every stage not yet recorded in WORK/results")
    p.add_argument("--n", type=int, default=2000, help="particles (default 2000)")
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-resolution", type=float, default=8.0, metavar="A")
    p.add_argument("--relion-cap-min", type=float, default=60.0, metavar="MIN",
                   help="stop RELION's auto-refinement after this many minutes (default 60)")
    p.add_argument("--local-cap-min", type=float, default=None, metavar="MIN",
                   help="cap of the local refinement (default: --relion-cap-min)")
    p.add_argument("--epochs", type=int, default=None,
                   help="deepalign run --epochs (default: the run's own default)")
    p.add_argument("--target-resolution", type=float, default=None, metavar="A",
                   help="deepalign run / align --target-resolution (default: theirs)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 200 particles, caps of 3 min, 3 epochs, in WORK_quick")
    p.add_argument("--data", default=str(DATA), metavar="DIR", help="folder of " + MAP)
    p.add_argument("--out", default=None, metavar="FILE.md",
                   help="markdown report (raw numbers in FILE.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.relion_cap_min, args.epochs = 200, 3.0, args.epochs or 3
        args.work = args.work.rstrip("/") + "_quick"
    args.local_cap_min = args.local_cap_min or args.relion_cap_min
    wanted = STAGES if args.stages is None else tuple(args.stages.split(","))
    unknown = sorted(set(wanted) - set(STAGES) - {"report"})
    if unknown:
        p.error(f"--stages: unknown {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    args.redo = args.stages is not None
    args.wanted = wanted
    return args


# ----------------------------------------------------------------------------- stages
def stage_simulate(b: Bench) -> dict:
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import read_volume, write_mrc

    rec = b.deepalign(["simulate", "--out", str(b.sim), "--volume",
                       str(Path(b.args.data) / MAP), "--n", str(b.args.n), "--box", str(BOX),
                       "--snr", str(b.args.snr), "--max-shift", "3", "--seed",
                       str(b.args.seed)], "simulate.log")
    volume, pixel = read_volume(str(b.sim / "reference.mrc"))
    write_mrc(str(b.reference), low_pass_volume(
        volume, pixel_size_a=pixel, resolution_a=b.args.reference_resolution),
        pixel_size_a=pixel)
    return rec


def stage_normalise(b: Bench) -> dict:
    """The one stack every tool reads, as RELION's extraction normalises; the STAR without
    poses (nothing of the truth reaches a tool)."""
    b.input.mkdir(exist_ok=True)
    start = time.perf_counter()
    stack = b.input / NORMALISED_STACK
    if b.relion_missing:  # the simulated stack as it is: DeepAlign and the global search only
        shutil.copy2(b.sim / "particles.mrcs", stack)
        cmd = ["cp", "particles.mrcs", NORMALISED_STACK, "(RELION missing: not normalised)"]
    else:
        cmd = relion.normalise(b.sim / "particles.mrcs", stack, bg_radius_px=b.bg_radius_px,
                               log_path=b.work / "normalise.log")
    _write_normalised_star(b, b.star, poses=False)
    return {"seconds": time.perf_counter() - start, "command": relion.shown(cmd)}


def _write_normalised_star(b: Bench, path: Path, *, poses: bool) -> None:
    """The simulated particles' STAR naming the normalised stack, with their true poses or
    without any (what every tool is given: nothing of the truth)."""
    from dataclasses import replace

    from scipion_deepalign.core.io import read_particles_star, write_particles_star

    truth = read_particles_star(str(b.sim / "particles.star"))
    names = [f"{name.split('@', 1)[0]}@{NORMALISED_STACK}" for name in truth.image_names]
    kept = {} if poses else {"angles_deg": None, "shifts_px": None}
    write_particles_star(str(path), replace(truth, image_names=names, root=str(b.input), **kept))


def _options(b: Bench, *, epochs: bool) -> list:
    """The options given to DeepAlign beyond its defaults (none unless asked for)."""
    words = ["--epochs", str(b.args.epochs)] if epochs and b.args.epochs else []
    res = b.args.target_resolution
    return words + (["--target-resolution", f"{res:g}"] if res else [])


def _run_words(b: Bench) -> list:
    return ["run", "--particles", str(b.star), "--volume", str(b.reference),
            "--out", str(b.work / "deepalign"), *_options(b, epochs=True)]


def stage_deepalign(b: Bench) -> dict:
    shutil.rmtree(b.work / "deepalign", ignore_errors=True)  # cold: nothing to resume
    rec = b.deepalign(_run_words(b), "deepalign_cold.log")
    shutil.copy2(b.work / "deepalign" / "aligned.star", b.work / "deepalign" / "cold.star")
    return rec


def stage_reuse(b: Bench) -> dict:
    """A second run on the cold run's folder: a row when the run reuses the model."""
    try:
        rec = b.deepalign(_run_words(b), "deepalign_reuse.log")
    except RuntimeError as exc:
        b.log(f"no model-reuse row: {exc}")
        return {"model_reused": False, "error": str(exc)}
    rec["model_reused"] = (any("reused" in k for k in rec["stage_seconds"])
                           or training_seconds(rec) < 0.2 * training_seconds(
                               b.record("deepalign")))
    return rec


def stage_global(b: Bench) -> dict:
    return b.deepalign(["align", "--particles", str(b.star), "--volume", str(b.reference),
                        "--global", "--out", str(b.work / "global" / "aligned.star"),
                        *_options(b, epochs=False)],
                       "global.log")


def _refine(b: Bench, name: str, star: Path, cap_min: float, sigma=None,
            first_iteration_cc=True, whole_particle=False) -> dict:
    """RELION's refinement ``name`` under a cap; its ``--particle_diameter`` the
    normalisation's background circle (RELION extraction's default), or with
    ``whole_particle`` one that holds the whole particle (recorded in the result)."""
    from scipion_deepalign.core.io import read_particles_star

    truth = read_particles_star(str(b.sim / "particles.star"))
    diameter = (_whole_particle_diameter_a(b) if whole_particle
                else 2 * b.bg_radius_px * PIXEL_A)
    options = relion.refine_options(resolution_a=b.args.reference_resolution,
                                    diameter_a=diameter,
                                    local_sigma_deg=sigma,
                                    first_iteration_cc=first_iteration_cc)
    shutil.rmtree(b.work / name, ignore_errors=True)
    cmd = relion.refine_command(star, b.reference, b.work / name / "run", options)
    b.log(f"{name}: {relion.shown(cmd)} (cap {cap_min:g} min)")
    rec = relion.run_capped(cmd, star=str(star), cap_s=cap_min * 60.0,
                            score=lambda path: report.pose_scores(path, truth, b.input),
                            log_path=b.work / f"{name}.log", log=b.log)
    return {**rec, "particle_diameter_a": diameter} if whole_particle else rec


def stage_relion(b: Bench) -> dict:
    return _refine(b, "relion", b.star, b.args.relion_cap_min)


def stage_relion_local(b: Bench) -> dict:
    return _refine(b, "relion_local", b.work / "deepalign" / "cold.star", b.args.local_cap_min,
                   sigma=LOCAL_SIGMA_DEG)


def stage_relion_local_ml(b: Bench) -> dict:
    """The local refinement again without ``--firstiter_cc``: does the first iteration's
    cross-correlation scramble DeepAlign's poses?"""
    return _refine(b, "relion_local_ml", b.work / "deepalign" / "cold.star",
                   b.args.local_cap_min, sigma=LOCAL_SIGMA_DEG, first_iteration_cc=False)


def _whole_particle_diameter_a(b: Bench) -> float:
    """The ``--particle_diameter`` that holds the whole particle, as a user would read it off
    the reference (:func:`relion_tools.particle_diameter_a`): 8ZPM is elongated, its side views
    reach beyond the extraction's background circle."""
    from scipion_deepalign.core.io import read_volume

    volume, pixel = read_volume(str(b.reference))
    return relion.particle_diameter_a(volume, pixel)


def stage_relion_wide(b: Bench) -> dict:
    """The auto-refinement again with a mask that holds the whole particle."""
    return _refine(b, "relion_wide", b.star, b.args.relion_cap_min, whole_particle=True)


def stage_relion_local_wide(b: Bench) -> dict:
    """The local refinement from DeepAlign's poses with that mask."""
    return _refine(b, "relion_local_wide", b.work / "deepalign" / "cold.star",
                   b.args.local_cap_min, sigma=LOCAL_SIGMA_DEG, whole_particle=True)


def stage_relion_local_truth(b) -> dict:
    """The local refinement (whole-particle mask) started from the TRUE poses: does RELION
    keep even them? (A control of the refinement's options, not of DeepAlign's poses.)"""
    star = b.input / "true_poses.star"
    _write_normalised_star(b, star, poses=True)
    return _refine(b, "relion_local_truth", star, b.args.local_cap_min, sigma=LOCAL_SIGMA_DEG,
                   whole_particle=True)


#: the noise-free control of the interoperation check: particles, SNR
CLEAN_N, CLEAN_SNR = 1000, 1000.0


def _two_maps(b: Bench, star: Path, folder: Path) -> dict:
    """``relion_reconstruct`` and ``deepalign reconstruct`` of one STAR: their agreement and
    each map's FSC against the true map."""
    from scipion_deepalign.core.io import read_volume

    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cmd = relion.reconstruct(star, folder / "relion.mrc", folder / "relion.log")
    seconds = time.perf_counter() - start
    rec = b.deepalign(["reconstruct", "--particles", str(star), "--out",
                       str(folder / "deepalign.mrc")], str(folder / "deepalign.log"))
    true_map, _ = read_volume(str(b.sim / "reference.mrc"))
    mask_radius_a = b.bg_radius_px * PIXEL_A
    vs_truth = {tool: report.map_fsc(folder / f"{tool}.mrc", true_map, pixel_size_a=PIXEL_A,
                                     mask_radius_a=mask_radius_a)
                for tool in ("relion", "deepalign")}
    return {"relion_command": relion.shown(cmd), "relion_seconds": seconds,
            "deepalign_seconds": rec["seconds"], "vs_truth": vs_truth,
            **report.agreement(folder / "relion.mrc", folder / "deepalign.mrc",
                               pixel_size_a=PIXEL_A, mask_radius_a=mask_radius_a)}


def stage_interop(b: Bench) -> dict:
    """The two reconstructions of DeepAlign's STAR, and of a noise-free control (true poses,
    SNR 1000), compared over the whole box and inside the particle's sphere (RELION zeroes
    its map's corners, ours keeps their noise); the control tests the conventions (Euler
    angles, origins, CTF) alone."""
    clean = b.work / "interop" / "clean"
    b.deepalign(["simulate", "--out", str(clean), "--volume", str(Path(b.args.data) / MAP),
                 "--n", str(min(CLEAN_N, b.args.n)), "--box", str(BOX), "--snr",
                 f"{CLEAN_SNR:g}", "--max-shift", "3", "--seed", str(b.args.seed + 1)],
                str(clean.parent / "simulate_clean.log"))
    return {"deepalign_star": _two_maps(b, b.work / "deepalign" / "cold.star",
                                        b.work / "interop" / "deepalign"),
            "clean_control": _two_maps(b, clean / "particles.star", clean / "maps"),
            "clean_particles": min(CLEAN_N, b.args.n), "clean_snr": CLEAN_SNR}


RUNNERS = {name: globals()[f"stage_{name}"] for name in STAGES}
NEEDS_RELION = {"normalise", "relion", "relion_local", "relion_local_ml", "interop",
                "relion_wide", "relion_local_wide", "relion_local_truth"}


def main(argv=None) -> int:
    args = parse_args(argv)
    b = Bench(args, box_px=BOX)
    load_before = os.getloadavg()
    b.log(f"work folder {b.work}; load average {load_before[0]:.2f}")
    stages = run_stages(b, STAGES, RUNNERS, NEEDS_RELION)
    report.write_report(b, stages, load_before=load_before,
                        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                                f"{backend_words('numpy')} (DeepAlign device auto)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
