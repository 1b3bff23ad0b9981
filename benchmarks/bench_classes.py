"""DeepAlign's classes beside RELION 3.1's 3D classification and an oracle, on simulated
mixtures made from a real map, one condition per run.

The maps: the 70S ribosome (``../shared/data/clean70SRibosome_vol_65p.mrc``, cropped to 64 px
at 5 A) as class A, and as class B either the same map with one part masked away
(``--pair compositional``: a ball of ``--part-radius`` A, default ``PART_RADIUS_A``, around a
point ``PART_OFFSET`` of the way out along x, a subunit-sized change) or that part turned
rigidly by ``--turn-deg`` about an axis through a hinge (``--pair conformational``; the hinge
the ball's point nearest the box centre, ``--hinge edge``, or its centre; soft edge; see
:func:`class_maps`). ``--n`` particles of the two maps in the proportions ``--fractions A,B``
by :func:`~scipion_deepalign.core.classes.simulate_mixture` (CTF, SNR ``--snr``, shifts up to
3 px, known poses and classes), normalised as RELION's extraction would; that one stack goes to
every tool, with the two maps low-passed to ``--reference-resolution`` as the references. The
condition (pair, part, proportions, SNR, N, seed) names the work folder
(``/tmp/bench_classes/<condition>`` unless ``--work``) and keys the report's rows: each run adds
its condition to ``--out`` and its ``.json`` and leaves the others. Stages, each timed by its
wall time and recorded in ``WORK/results/<stage>.json``:

``simulate`` -> ``normalise`` -> ``oracle`` (each particle compared with both TRUE maps at its
TRUE pose and CTF: the best class any method can give at this noise) -> ``deepalign``
(``deepalign run --volume A --volume B``, defaults: one network over class x region, each
particle searched in its predicted pairs; cold training included) -> ``classify``
(``deepalign classify --volume A --volume B``, defaults: iterations of a global search against
both maps and their reconstruction) -> ``relion`` (3D
classification, the options of :func:`relion_options`, stopped at ``--relion-cap-min``; every
iteration's ``run_itNNN_data.star`` scored as it appears) -> ``negative`` (a homogeneous set of
class A only, classified by ``deepalign run`` against both maps: it must not report two
confident classes).

``ksweep`` (only when ``--stages`` names it; its own work folder when it is the only stage):
for K in ``--ks`` (default 1, 2, 4), ``--ksweep-n`` particles of K maps (:func:`ksweep_maps`:
the 70S, then the 70S with the part masked away at +x, +y, +z) in equal proportions, through
``deepalign run --volume ...`` and ``deepalign align --global --volume ...`` (defaults):
comparisons per particle of the search and of the refinement (from the run's summary), class
accuracy, wall time; its own table in the report.

Scores: **balanced** class accuracy against the truth (the mean over true classes of the
fraction given that class, after matching labels), the fraction of particles that changed
class since the previous iteration (RELION), poses within 10 deg of the truth among the
correctly classed particles of each class, each class map's FSC 0.5 against its true map
(every map made by :func:`~scipion_deepalign.core.judge.reconstruct.reconstruct` from the
method's classes, poses and the CTFs), wall time. Run it alone on the machine; it never enters
``make test``.

Usage::

    .venv/bin/python benchmarks/bench_classes.py --out docs/benchmarks_classes.md
    .venv/bin/python benchmarks/bench_classes.py --pair conformational --turn-deg 10 \\
        --fractions 0.5,0.5 --snr 0.1 --out docs/benchmarks_classes.md
    .venv/bin/python benchmarks/bench_classes.py --pair compositional --fractions 0.8,0.2 \\
        --snr 0.05 --stages simulate,normalise,oracle,deepalign,classify,negative \\
        --out docs/benchmarks_classes.md                        # RELION left out
    .venv/bin/python benchmarks/bench_classes.py --stages ksweep --out docs/benchmarks_classes.md
    .venv/bin/python benchmarks/bench_classes.py --quick     # 300 particles, cap 3 min
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import relion_tools as relion  # noqa: E402
from bench_folder import Bench, run_stages  # noqa: E402
from classes_ksweep import ksweep_slug, stage_ksweep  # noqa: E402,F401 (RUNNERS)
from classes_maps import (  # noqa: E402,F401 (PART_RADIUS_A, class_maps: bench_class_output's)
    BOX,
    MAP,
    PART_OFFSET,
    PART_RADIUS_A,
    PIXEL_A,
    class_maps,
    ksweep_maps,
)
from classes_oracle import (  # noqa: E402,F401 (RUNNERS)
    stage_oracle,
    stage_oracle_class_maps,
    stage_oracle_found_poses,
    stage_oracle_lowpass,
)
from classes_report import score_classes, write_report  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])
DATA = Path(ROOT).parent / "shared" / "data"
STAGES = ("simulate", "normalise", "oracle", "deepalign", "classify", "classify_cnn", "relion",
          "negative")
#: stages run only when ``--stages`` names them (not part of a condition's default run)
EXTRA_STAGES = ("ksweep", "classify_filter", "classify_one_map", "negative_one_map",
                "oracle_lowpass", "oracle_class_maps", "oracle_found_poses")
NEEDS_RELION = {"normalise", "relion"}
#: stages of a condition that are controls: run alone, they keep the condition's date and load
CONTROL_STAGES = {"oracle"}
WORK_ROOT = "/tmp/bench_classes"


def _numbers(text: str, kind=float) -> tuple:
    return tuple(kind(w) for w in text.split(",") if w.strip())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=None, metavar="DIR",
                   help=f"work folder (default {WORK_ROOT}/<condition>, one per condition, or "
                        f"{WORK_ROOT}/ksweep-... for --stages ksweep; WORK_quick with --quick)")
    p.add_argument("--stages", default=None, metavar="LIST",
                   help="comma-separated stages to run again (" + ", ".join(STAGES) + "; and "
                        "ksweep, run only when named), or 'report'; default: every stage of "
                        "the condition not yet recorded in WORK/results")
    p.add_argument("--pair", default="compositional", choices=("compositional", "conformational"))
    p.add_argument("--part-radius", type=float, default=PART_RADIUS_A, metavar="A",
                   help=f"radius of the part that changes (default {PART_RADIUS_A:g} A)")
    p.add_argument("--turn-deg", type=float, default=10.0,
                   help="rotation of the part for --pair conformational (default 10)")
    p.add_argument("--hinge", default="edge", choices=("edge", "centre"),
                   help="--pair conformational: the axis goes through the part's point nearest "
                        "the box centre (edge, default: the part swings) or its centre")
    p.add_argument("--fractions", default=None, metavar="FA,FB",
                   help="proportions of classes A and B, e.g. 0.8,0.2 (default 0.5,0.5)")
    p.add_argument("--fraction", type=float, default=None,
                   help="fraction of class A (the same as --fractions F,1-F)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-resolution", type=float, default=20.0, metavar="A")
    p.add_argument("--filter-fsc", type=float, default=0.143, metavar="F",
                   help="stage classify_filter: deepalign classify --filter-fsc F (default "
                        "0.143), beside classify at its default")
    p.add_argument("--relion-cap-min", type=float, default=30.0, metavar="MIN")
    p.add_argument("--relion-iterations", type=int, default=25)
    p.add_argument("--ks", default="1,2,4", metavar="LIST",
                   help="ksweep: the numbers of maps K (default 1,2,4; at most 4)")
    p.add_argument("--ksweep-n", type=int, default=1000, metavar="N",
                   help="ksweep: particles per K, equal fractions (default 1000)")
    p.add_argument("--epochs", type=int, default=None,
                   help="deepalign run --epochs (default: the run's own; --quick: 3)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 300 particles (ksweep 200), RELION cap 3 min, 3 epochs")
    p.add_argument("--data", default=str(DATA), metavar="DIR")
    p.add_argument("--out", default=None, metavar="FILE.md",
                   help="markdown report; its .json beside it keeps every condition's numbers "
                        "(a run adds or replaces its own condition, the others stay)")
    args = p.parse_args(argv)
    if args.fractions is not None and args.fraction is not None:
        p.error("give --fractions or --fraction, not both")
    if args.fraction is not None:
        args.fractions = f"{args.fraction},{1.0 - args.fraction}"
    try:
        fractions = _numbers(args.fractions or "0.5,0.5")
        args.ks = _numbers(args.ks, int)
    except ValueError as exc:
        p.error(f"--fractions / --ks: {exc}")
    if len(fractions) != 2 or min(fractions) <= 0:
        p.error(f"--fractions: two positive proportions (A, B), got {args.fractions}")
    args.fractions = tuple(f / sum(fractions) for f in fractions)
    args.fraction = args.fractions[0]
    if not args.ks or min(args.ks) < 1 or max(args.ks) > 4:
        p.error("--ks: numbers of maps from 1 to 4")
    if args.quick:
        args.n, args.relion_cap_min = 300, 3.0
        args.ksweep_n, args.epochs = 200, args.epochs or 3
    wanted = STAGES if args.stages is None else tuple(args.stages.split(","))
    unknown = sorted(set(wanted) - set(STAGES) - set(EXTRA_STAGES) - {"report"})
    if unknown:
        p.error(f"--stages: unknown {', '.join(unknown)}; choose from "
                f"{', '.join(STAGES + EXTRA_STAGES)}")
    args.redo, args.wanted = args.stages is not None, wanted
    args.condition = condition(args)
    if args.work is None:
        only_ksweep = set(wanted) == {"ksweep"}
        slug = ksweep_slug(args) if only_ksweep else args.condition["slug"]
        args.work = os.path.join(WORK_ROOT + ("_quick" if args.quick else ""), slug)
    return args


def condition(args) -> dict:
    """The condition of a run (what the report's rows are keyed by): the pair, its part, the
    class proportions, the SNR, the number of particles and the seed."""
    fa, fb = args.fractions
    c = {"pair": args.pair, "part_radius_a": args.part_radius, "fractions": [fa, fb],
         "snr": args.snr, "n": args.n, "seed": args.seed}
    part = f"{args.part_radius:g} Å part masked away"
    slug = f"{args.pair}-r{args.part_radius:g}"
    if args.pair == "conformational":
        c.update(turn_deg=args.turn_deg, hinge=args.hinge)
        part = f"{args.part_radius:g} Å part turned {args.turn_deg:g}° about its {args.hinge}"
        slug += f"-t{args.turn_deg:g}" + ("-c" if args.hinge == "centre" else "")
    split = f"{100 * fa:.0f}/{100 * fb:.0f}"
    c["label"] = f"{args.pair} ({part}), {split}, SNR {args.snr:g}, {args.n} particles" + (
        f", seed {args.seed}" if args.seed else "")
    c["slug"] = (slug + f"-f{100 * fa:.0f}_{100 * fb:.0f}-snr{args.snr:g}-n{args.n}"
                 f"-s{args.seed}")
    return c


# ----------------------------------------------------------------------------- stages
def stage_simulate(b) -> dict:
    from scipion_deepalign.core.classes import simulate_mixture
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import read_volume, write_mrc, write_particles_star

    start = time.perf_counter()
    volume, _ = read_volume(str(Path(b.args.data) / MAP))
    a, bmap = class_maps(volume[:BOX, :BOX, :BOX], pair=b.args.pair, turn_deg=b.args.turn_deg,
                         part_radius_a=b.args.part_radius, hinge=b.args.hinge)
    b.sim.mkdir(parents=True, exist_ok=True)
    images, parts, classes = simulate_mixture(
        [a, bmap], b.args.n, pixel_size_a=PIXEL_A, fractions=list(b.args.fractions),
        snr=b.args.snr, ctf=True, max_shift_px=3.0, seed=b.args.seed)
    write_mrc(str(b.sim / "particles.mrcs"), images, pixel_size_a=PIXEL_A, stack=True)
    names = [f"{i + 1:06d}@particles.mrcs" for i in range(len(images))]
    from dataclasses import replace

    write_particles_star(str(b.sim / "particles.star"),
                         replace(parts, image_names=names, root=str(b.sim)))
    np.save(b.sim / "classes.npy", classes)
    for name, m in (("A", a), ("B", bmap)):
        write_mrc(str(b.sim / f"true_{name}.mrc"), m, pixel_size_a=PIXEL_A)
        write_mrc(str(b.work / f"reference_{name}.mrc"),
                  low_pass_volume(m, pixel_size_a=PIXEL_A,
                                  resolution_a=b.args.reference_resolution),
                  pixel_size_a=PIXEL_A)
    change = float(np.linalg.norm(a - bmap) / np.linalg.norm(a))
    return {"seconds": time.perf_counter() - start, "class_sizes": np.bincount(
        classes, minlength=2).tolist(), "map_change": change, "condition": b.args.condition}


def stage_normalise(b) -> dict:
    from bench_relion import stage_normalise as normalise

    return normalise(b)


def _with_both_maps(b, command: str, folder: str, star=None, options=(),
                    maps=("A", "B")) -> dict:
    """``deepalign COMMAND --particles STAR --volume A --volume B --out WORK/FOLDER OPTIONS``
    (the references of ``maps``), cold (a network's ``--epochs`` from the benchmark's, where
    given)."""
    shutil.rmtree(b.work / folder, ignore_errors=True)
    trains = command == "run" or "--cnn" in options
    epochs = ["--epochs", str(b.args.epochs)] if b.args.epochs and trains else []
    volumes = [w for m in maps for w in ("--volume", str(b.work / f"reference_{m}.mrc"))]
    return b.deepalign([command, "--particles", str(star or b.star), *volumes, "--out",
                        str(b.work / folder), *options, *epochs], f"{folder}.log")


def stage_deepalign(b) -> dict:
    return _with_both_maps(b, "run", "deepalign")


def stage_classify(b) -> dict:
    return _with_both_maps(b, "classify", "classify")


def stage_classify_cnn(b) -> dict:
    return _with_both_maps(b, "classify", "classify_cnn", options=["--cnn"])


def stage_classify_one_map(b) -> dict:
    """``deepalign classify --classes 2`` from map A alone (RELION's start: every class from
    the same map, the particles in random classes in the first iteration): what the
    iterations find without being given map B."""
    return _with_both_maps(b, "classify", "classify_one_map", options=["--classes", "2"],
                           maps=("A",))


def stage_negative_one_map(b) -> dict:
    """The negative control of a one-map start: the class-A particles alone,
    ``deepalign classify --volume A --classes 2``."""
    star, n = _class_a_only_star(b)
    return dict(_with_both_maps(b, "classify", "negative_one_map", star,
                                options=["--classes", "2"], maps=("A",)), n=n)


def stage_classify_filter(b) -> dict:
    """``deepalign classify`` with the class maps low-passed at another FSC threshold."""
    rec = _with_both_maps(b, "classify", "classify_filter",
                          options=["--filter-fsc", f"{b.args.filter_fsc:g}"])
    return {**rec, "filter_fsc": b.args.filter_fsc}


def relion_options(b) -> list:
    """RELION 3.1 3D classification as the issue pins it (GUI defaults where it pins
    nothing)."""
    return ["--firstiter_cc", "--ini_high", f"{b.args.reference_resolution:g}",
            "--tau2_fudge", "4", "--iter", str(b.args.relion_iterations),
            "--dont_combine_weights_via_disc", "--pool", "3", "--pad", "2", "--ctf",
            "--particle_diameter", f"{2 * b.bg_radius_px * PIXEL_A:g}", "--flatten_solvent",
            "--zero_mask", "--oversampling", "1", "--healpix_order", "2", "--offset_range",
            "5", "--offset_step", "2", "--sym", "C1", "--norm", "--scale", "--j", "1"]


def stage_relion(b) -> dict:
    from classes_report import class_scores_of_star

    folder = b.work / "relion"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    refs = folder / "references.star"
    refs.write_text("data_\nloop_\n_rlnReferenceImage #1\n"
                    + "".join(f"{b.work / f'reference_{n}.mrc'}\n" for n in "AB"))
    cmd = [*relion.MPI, "relion_refine_mpi", "--i", os.path.basename(b.star), "--ref",
           str(refs), "--o", str(folder / "run"), *relion_options(b)]
    b.log(f"relion: {relion.shown(cmd)} (cap {b.args.relion_cap_min:g} min)")
    truth = np.load(b.sim / "classes.npy")
    previous = {}

    def score(path):
        return class_scores_of_star(path, truth, b.input, previous)

    return relion.run_capped(cmd, star=str(b.star), cap_s=b.args.relion_cap_min * 60.0,
                             score=score, log_path=b.work / "relion.log", log=b.log)


def _class_a_only_star(b):
    """``input/class_A_only.star``, the class-A particles of the condition, and their
    number."""
    from dataclasses import replace

    from scipion_deepalign.core.io import read_particles_star, write_particles_star

    truth = np.load(b.sim / "classes.npy")
    parts = read_particles_star(str(b.star))
    rows = np.flatnonzero(truth == 0)
    star = b.input / "class_A_only.star"
    write_particles_star(str(star), replace(parts.subset(rows), root=str(b.input)))
    return star, len(rows)


def stage_negative(b) -> dict:
    """The class-A particles alone, classified against both maps."""
    star, n = _class_a_only_star(b)
    return dict(_with_both_maps(b, "run", "negative", star), n=n)


RUNNERS = {name: globals()[f"stage_{name}"] for name in STAGES + EXTRA_STAGES}


def main(argv=None) -> int:
    args = parse_args(argv)
    b = Bench(args, box_px=BOX)  # the work folder: paths, records, deepalign runs
    load = os.getloadavg()
    b.log(f"work folder {b.work}; load average {load[0]:.2f}")
    sim = b.record("simulate")
    made = (sim or {}).get("condition", {}).get("slug")
    if made and made != args.condition["slug"] and not (
            args.redo and "simulate" in args.wanted):
        raise SystemExit(f"{b.work} holds the condition {made}, not "
                         f"{args.condition['slug']}: give another --work (or none: one folder "
                         "per condition), or --stages simulate,... to make it again")
    stages = run_stages(b, STAGES + EXTRA_STAGES, RUNNERS, NEEDS_RELION)
    scores = score_classes(b, stages)
    (b.results / "scores.json").write_text(json.dumps(scores, indent=1))
    write_report(b, stages, scores, load_before=load,
                 machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
                 main_run=bool(set(args.wanted) & (set(STAGES) - CONTROL_STAGES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
