"""DeepAlign's classes beside RELION 3.1's 3D classification and an oracle, on one simulated
mixture made from a real map.

The maps: the 70S ribosome (``../shared/data/clean70SRibosome_vol_65p.mrc``, cropped to 64 px
at 5 A) as class A, and as class B either the same map with one part masked away
(``--pair compositional``: a ball of ``PART_RADIUS_A`` around a point ``PART_OFFSET`` of the
way out along x, a subunit-sized change) or that part turned rigidly by ``--turn-deg`` about an
axis through its centre (``--pair conformational``). ``--n`` particles of the two maps in the
proportions ``--fraction`` (of A) by :func:`~scipion_deepalign.core.classes.simulate_mixture`
(CTF, SNR ``--snr``, shifts up to 3 px, known poses and classes), normalised as RELION's
extraction would; that one stack goes to every tool, with the two maps low-passed to
``--reference-resolution`` as the references. Stages, each timed by its wall time and recorded
in ``WORK/results/<stage>.json``:

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

Scores: **balanced** class accuracy against the truth (the mean over true classes of the
fraction given that class, after matching labels), the fraction of particles that changed
class since the previous iteration (RELION), poses within 10 deg of the truth among the
correctly classed particles of each class, each class map's FSC 0.5 against its true map
(every map made by :func:`~scipion_deepalign.core.judge.reconstruct.reconstruct` from the
method's classes, poses and the CTFs), wall time. Run it alone on the machine; it never enters
``make test``.

Usage::

    .venv/bin/python benchmarks/bench_classes.py --out docs/benchmarks_classes.md
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
from bench_relion import Bench, run_stages  # noqa: E402
from classes_report import score_classes, write_report  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])
DATA = Path(ROOT).parent / "shared" / "data"
MAP, BOX, PIXEL_A = "clean70SRibosome_vol_65p.mrc", 64, 5.0
#: the part of the ribosome that changes: a ball of this radius around a point this far out
#: along x (a fraction of the box's half width)
PART_RADIUS_A, PART_OFFSET = 45.0, 0.35
STAGES = ("simulate", "normalise", "oracle", "deepalign", "classify", "relion", "negative")
NEEDS_RELION = {"normalise", "relion"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/bench_classes", metavar="DIR")
    p.add_argument("--stages", default=None, metavar="LIST",
                   help="comma-separated stages to run again (" + ", ".join(STAGES) + "), or "
                        "'report'; default: every stage not yet recorded in WORK/results")
    p.add_argument("--pair", default="compositional", choices=("compositional", "conformational"))
    p.add_argument("--turn-deg", type=float, default=10.0,
                   help="rotation of the part for --pair conformational (default 10)")
    p.add_argument("--fraction", type=float, default=0.5, help="fraction of class A")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-resolution", type=float, default=20.0, metavar="A")
    p.add_argument("--relion-cap-min", type=float, default=30.0, metavar="MIN")
    p.add_argument("--relion-iterations", type=int, default=25)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data", default=str(DATA), metavar="DIR")
    p.add_argument("--out", default=None, metavar="FILE.md")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.relion_cap_min = 300, 3.0
        args.work = args.work.rstrip("/") + "_quick"
    wanted = STAGES if args.stages is None else tuple(args.stages.split(","))
    unknown = sorted(set(wanted) - set(STAGES) - {"report"})
    if unknown:
        p.error(f"--stages: unknown {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    args.redo, args.wanted = args.stages is not None, wanted
    return args


# ----------------------------------------------------------------------------- the maps
def class_maps(volume, *, pair: str, turn_deg: float, part_radius_a: float = PART_RADIUS_A):
    """``(A, B)``: the map and its changed copy (module docstring); the part is a ball of
    ``part_radius_a`` (benchmarks/bench_class_output.py also removes a bigger one)."""
    from scipy.ndimage import affine_transform
    from scipy.spatial.transform import Rotation

    box = volume.shape[0]
    centre = np.array([box // 2, box // 2, box // 2 + PART_OFFSET * box / 2])  # z, y, x
    grid = np.indices(volume.shape).reshape(3, -1).T
    r = np.linalg.norm(grid - centre, axis=1).reshape(volume.shape)
    radius = part_radius_a / PIXEL_A
    inside = np.clip((radius + 1.0 - r) / 2.0, 0.0, 1.0)  # soft 2-px edge
    if pair == "compositional":
        return volume, (volume * (1.0 - inside)).astype(np.float32)
    turn = Rotation.from_rotvec(np.deg2rad(turn_deg) * np.array([1.0, 0.0, 0.0])).as_matrix()
    moved = affine_transform(volume * inside, turn, offset=centre - turn @ centre, order=1)
    return volume, (volume * (1.0 - inside) + moved).astype(np.float32)


# ----------------------------------------------------------------------------- stages
def stage_simulate(b) -> dict:
    from scipion_deepalign.core.classes import simulate_mixture
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import read_volume, write_mrc, write_particles_star

    start = time.perf_counter()
    volume, _ = read_volume(str(Path(b.args.data) / MAP))
    a, bmap = class_maps(volume[:BOX, :BOX, :BOX], pair=b.args.pair, turn_deg=b.args.turn_deg)
    b.sim.mkdir(parents=True, exist_ok=True)
    images, parts, classes = simulate_mixture(
        [a, bmap], b.args.n, pixel_size_a=PIXEL_A, fractions=[b.args.fraction,
                                                              1.0 - b.args.fraction],
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
        classes, minlength=2).tolist(), "map_change": change}


def stage_normalise(b) -> dict:
    from bench_relion import stage_normalise as normalise

    return normalise(b)


def stage_oracle(b) -> dict:
    """Every particle against both true maps at its true pose, shift and CTF: the class of the
    higher normalised correlation inside the particle disc."""
    from scipion_deepalign.core.defaults import PARTICLE_RADIUS_BOX_FRACTION
    from scipion_deepalign.core.imageops import circular_mask
    from scipion_deepalign.core.io import load_particle_images, read_particles_star, read_volume
    from scipion_deepalign.core.simulate import clean_particle_images

    start = time.perf_counter()
    truth = read_particles_star(str(b.sim / "particles.star"))
    parts = read_particles_star(str(b.star))
    _, images = load_particle_images(parts, np.arange(len(parts.image_names)))
    disc = circular_mask(BOX, PARTICLE_RADIUS_BOX_FRACTION * BOX)
    x = images[:, disc] - images[:, disc].mean(axis=1, keepdims=True)
    scores = []
    for name in ("A", "B"):
        true_map, _ = read_volume(str(b.sim / f"true_{name}.mrc"))
        model = clean_particle_images(true_map, truth)
        y = model[:, disc] - model[:, disc].mean(axis=1, keepdims=True)
        scores.append((x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1)))
    classes = np.argmax(np.stack(scores, axis=1), axis=1)
    out = b.work / "oracle.npy"
    np.save(out, classes)
    return {"seconds": time.perf_counter() - start, "classes_npy": str(out)}


def _with_both_maps(b, command: str, folder: str, star=None) -> dict:
    """``deepalign COMMAND --particles STAR --volume A --volume B --out WORK/FOLDER``, cold."""
    shutil.rmtree(b.work / folder, ignore_errors=True)
    return b.deepalign([command, "--particles", str(star or b.star), "--volume",
                        str(b.work / "reference_A.mrc"), "--volume",
                        str(b.work / "reference_B.mrc"), "--out", str(b.work / folder)],
                       f"{folder}.log")


def stage_deepalign(b) -> dict:
    return _with_both_maps(b, "run", "deepalign")


def stage_classify(b) -> dict:
    return _with_both_maps(b, "classify", "classify")


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


def stage_negative(b) -> dict:
    """The class-A particles alone, classified against both maps."""
    from dataclasses import replace

    from scipion_deepalign.core.io import read_particles_star, write_particles_star

    truth = np.load(b.sim / "classes.npy")
    parts = read_particles_star(str(b.star))
    rows = np.flatnonzero(truth == 0)
    star = b.input / "class_A_only.star"
    write_particles_star(str(star), replace(parts.subset(rows), root=str(b.input)))
    return dict(_with_both_maps(b, "run", "negative", star), n=int(len(rows)))


RUNNERS = {name: globals()[f"stage_{name}"] for name in STAGES}


def main(argv=None) -> int:
    args = parse_args(argv)
    b = Bench(args)  # bench_relion's work folder: paths, records, deepalign runs
    load = os.getloadavg()
    b.log(f"work folder {b.work}; load average {load[0]:.2f}")
    stages = run_stages(b, STAGES, RUNNERS, NEEDS_RELION)
    scores = score_classes(b, stages)
    (b.results / "scores.json").write_text(json.dumps(scores, indent=1))
    write_report(b, stages, scores, load_before=load,
                 machine=f"{platform.machine()}, {os.cpu_count()} CPU cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
