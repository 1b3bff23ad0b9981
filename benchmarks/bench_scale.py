"""Seconds and peak memory of every stage against the number of particles (1k -> 100k).

For each size N: simulates N particles of the built-in phantom into a memory-mapped stack,
written in batches (the simulation never holds all images), then runs each stage as its own
``deepalign`` process and reads that process's peak resident memory from ``wait4``:

* train      -- on a training subset (``--train-fraction``, at most ``--max-train``),
* predict    -- every particle (the CLI reads and predicts in chunks),
* align      -- regional, every particle, in the predicted regions,
* global     -- global search on a sample of ``--global-sample`` particles (the baseline),
* reconstruct-- every aligned particle.

Writes a markdown table (``--report``), a log-log plot of seconds and peak memory against N
(``--plot``) and the raw numbers (``results.json`` in ``--work``, rewritten after every size;
a size already there is kept, not measured again, so sizes can be run one call at a time).
Run it alone on a quiet machine: the default sizes take hours on two cores. Smoke test::

    .venv/bin/python benchmarks/bench_scale.py --sizes 60,120 --box 32 --epochs 1 \\
        --images-per-epoch 256 --global-sample 20 --work /tmp/scale
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from scipion_deepalign.core.defaults import REFINE  # noqa: E402

#: the global search's sample is timed first and again after the alignment: the machine's
#: speed drifts by up to a third over a run (2 CPU cores shared by virtual machines), and the
#: mean of the two brackets the drift the regional stages ran in
STAGES = ("global-first", "train", "predict", "align", "global", "reconstruct")
GLOBAL_STAGES = ("global-first", "global")
#: what each stage holds in memory, from reading the code (the measured slope says how much)
MEMORY_NOTES = {
    "train": "from projections: a spread sample of particles (the noise to match) and the "
             "network's batches; from particles: their network inputs, read a chunk at a "
             "time (core.cnn.data.preprocess_images): flat in N",
    "predict": "chunks of --chunk images (cli/predict.py): flat in N except the metadata "
               "and the (N, k) results",
    "align": "blocks of 8192 particles of the memory-mapped stack (cli/align.py "
             "lazy_particles_images -> core.align, block by block): grows until the first "
             "block is full, then flat except the metadata and the per-particle results",
    "global-first": "the same fixed sample, before the training: flat in N",
    "global": "a fixed sample: flat in N",
    "reconstruct": "gridding batches read from the memory map (cli/reconstruct.py "
                   "lazy_particles_images) into two half maps: flat in N except the "
                   "metadata",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000",
                   help="comma-separated numbers of particles; default 1000,10000,100000 "
                        "(empty: only rewrite the report and plot from results.json)")
    p.add_argument("--box", type=int, default=64, help="particle box (px); default 64")
    p.add_argument("--pixel-size", type=float, default=2.0, help="A/px; default 2")
    p.add_argument("--snr", type=float, default=0.3)
    p.add_argument("--spacing", type=float, default=30.0, help="region spacing (deg)")
    p.add_argument("--step", type=float, default=None,
                   help="gallery step (deg); default the alignment's automatic one (the 6 deg "
                        "of the runs before 2026-12-04 is --step 6 --no-refine)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=REFINE,
                   help="local refinement of the poses (the alignment's default: "
                        + ("on" if REFINE else "off") + ")")
    p.add_argument("--target-resolution", default=None, metavar="A|auto|full",
                   help="--target-resolution of training and search (default: not given, "
                        "the CLI's own, as a user gets it; the runs before 2026-12-06 gave 8)")
    p.add_argument("--reference-resolution", type=float, default=8.0, metavar="A",
                   help="the reference handed to deepalign: the phantom low-passed to this "
                        "resolution (default 8, as bench_relion and bench_accuracy; the runs "
                        "before 2026-12-06 gave the exact phantom with --target-resolution 8)")
    p.add_argument("--train-fraction", type=float, default=0.1)
    p.add_argument("--max-train", type=int, default=10000)
    # the network is trained as deepalign train trains it by default (fixed images per
    # epoch, so the training time does not depend on N)
    p.add_argument("--epochs", type=int, default=None,
                   help="at most (default: not given, deepalign train's own)")
    p.add_argument("--images-per-epoch", type=int, default=None,
                   help="default: not given, deepalign train's own")
    p.add_argument("--global-sample", type=int, default=1000,
                   help="particles of the global-search sample")
    p.add_argument("--batch", type=int, default=5000, help="particles simulated at once")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"))
    p.add_argument("--work", default="bench_scale_work", help="folder for data and results")
    p.add_argument("--report", default=None, help="markdown table (default WORK/scale.md)")
    p.add_argument("--plot", default=None, help="log-log PNG (default WORK/scale.png)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- data
def simulate(folder, n, args):
    """``all.star`` (true poses), ``train.star``, ``sample.star`` and ``reference.mrc`` of
    ``n`` particles; images written batch by batch (the stack is never all in memory)."""
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import write_mrc, write_mrc_stack_chunks, write_particles_star
    from scipion_deepalign.core.simulate import make_phantom, simulate_particles

    os.makedirs(folder, exist_ok=True)
    star = os.path.join(folder, "all.star")
    volume = make_phantom(args.box, seed=args.seed)
    # never the exact map: a user's reference is a lower-resolution map of the structure
    reference = low_pass_volume(volume, pixel_size_a=args.pixel_size,
                                resolution_a=args.reference_resolution)
    write_mrc(os.path.join(folder, "reference.mrc"), reference, pixel_size_a=args.pixel_size)
    metas = []

    def batches():
        for start in range(0, n, args.batch):
            images, meta = simulate_particles(volume, min(args.batch, n - start),
                                              pixel_size_a=args.pixel_size, snr=args.snr,
                                              max_shift_px=2.0, seed=args.seed + start)
            metas.append(meta)
            yield images

    write_mrc_stack_chunks(os.path.join(folder, "particles.mrcs"), n, args.box, batches(),
                           pixel_size_a=args.pixel_size)
    particles = _joined(metas, folder)
    write_particles_star(star, particles)
    n_train = max(2, min(args.max_train, int(round(args.train_fraction * n))))
    write_particles_star(os.path.join(folder, "train.star"),
                         particles.subset(slice(0, n_train)))
    write_particles_star(os.path.join(folder, "sample.star"),
                         particles.subset(slice(0, min(n, args.global_sample))))


def _joined(metas, folder):
    """One Particles of the batches, naming images ``i@particles.mrcs`` (1-based)."""
    from dataclasses import replace

    from scipion_deepalign.core.particles import CTFParams

    first = metas[0]
    n = sum(len(m) for m in metas)
    ctf = CTFParams(*(np.concatenate([getattr(m.ctf, k) for m in metas])
                      for k in ("defocus_u_a", "defocus_v_a", "defocus_angle_deg")),
                    voltage_kv=first.ctf.voltage_kv, cs_mm=first.ctf.cs_mm,
                    amplitude_contrast=first.ctf.amplitude_contrast)
    return replace(first, image_names=[f"{i + 1}@particles.mrcs" for i in range(n)],
                   angles_deg=np.concatenate([m.angles_deg for m in metas]),
                   shifts_px=np.concatenate([m.shifts_px for m in metas]),
                   ctf=ctf, extra={}, root=folder, optics=None, optics_group=None)


# ----------------------------------------------------------------------------- stages
def stage_commands(folder, args):
    """``{stage: deepalign words}`` for one size's folder."""
    f = lambda name: os.path.join(folder, name)  # noqa: E731
    resolution = _given("--target-resolution", args.target_resolution)
    search = ["--volume", f("reference.mrc"), "--device", args.device, *resolution,
              "--refine" if args.refine else "--no-refine"]
    if args.step is not None:
        search += ["--step", str(args.step)]
    global_words = ["align", "--particles", f("sample.star"), "--global",
                    "--out", f("global.star"), *search]
    return {
        "global-first": global_words,
        "train": ["train", "--particles", f("train.star"), "--volume", f("reference.mrc"),
                  "--out", f("model"), "--spacing", str(args.spacing),
                  *_given("--epochs", args.epochs),
                  *_given("--images-per-epoch", args.images_per_epoch), *resolution],
        "predict": ["predict", "--particles", f("all.star"), "--model", f("model"),
                    "--out", f("pred.star")],
        "align": ["align", "--particles", f("pred.star"), "--model", f("model"),
                  "--out", f("aligned.star"), *search],
        "global": global_words,
        "reconstruct": ["reconstruct", "--particles", f("aligned.star"),
                        "--out", f("map.mrc")],
    }


def _given(flag, value) -> list:
    """``[flag, value]``, or nothing where the option was not given (the CLI's default)."""
    return [] if value is None else [flag, str(value)]


def run_measured(words, log_path):
    """``(seconds, peak resident MB)`` of ``deepalign <words>`` in a child process."""
    cmd = [sys.executable, "-m", "scipion_deepalign.cli", "-v", *words]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log_path, "w") as log:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(words[:1])} failed, see {log_path}")
    return seconds, usage.ru_maxrss / 1024.0  # ru_maxrss is in kB on Linux


def simulate_apart(folder, n, args):
    """:func:`simulate` in a fresh interpreter, so this process stays small: on Linux a
    child's peak memory (``ru_maxrss``) counts the peak of the process that started it.
    False when an earlier run left the data (nothing simulated, nothing to time)."""
    import multiprocessing

    if os.path.exists(os.path.join(folder, "all.star")):
        return False  # simulated by an earlier run
    child = multiprocessing.get_context("spawn").Process(target=simulate, args=(folder, n, args))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"simulating {n} particles failed (exit code {child.exitcode})")
    return True


#: what :func:`simulate` writes; everything else in a size's folder is a stage's output
SIMULATED = {"all.star", "train.star", "sample.star", "reference.mrc", "particles.mrcs"}


def _clear_outputs(folder):
    """Remove the stages' outputs of an earlier run: the commands resume finished work
    (a trained model is kept), which would time nothing."""
    import shutil

    for name in set(os.listdir(folder)) - SIMULATED:
        path = os.path.join(folder, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def measure_size(n, args):
    folder = os.path.join(args.work, f"n{n}")
    start = time.perf_counter()
    simulated = simulate_apart(folder, n, args)
    rows = [{"n": n, "stage": "simulate", "seconds": time.perf_counter() - start,
             "peak_mb": None}] if simulated else []
    _clear_outputs(folder)
    for stage, words in stage_commands(folder, args).items():
        seconds, peak = run_measured(words, os.path.join(folder, f"{stage}.log"))
        rows.append({"n": n, "stage": stage, "seconds": seconds, "peak_mb": peak})
        print(f"N={n:>7} {stage:<12} {seconds:9.1f} s {peak:9.0f} MB", flush=True)
    accuracy = pose_accuracy(folder, args)
    for r in rows:
        r.update(accuracy.get(r["stage"], {}))
    print(f"N={n:>7} accuracy {accuracy}", flush=True)
    return rows


def pose_accuracy(folder, args):
    """Fraction within 10 deg of the truth on the global-search sample, regional and global,
    and the regions the regional search met per particle: the speed is the speed of a
    search that still finds the poses."""
    from scipion_deepalign.core.io import read_particles_star
    from scipion_deepalign.core.io.columns import REGIONS_SEARCHED_COLUMN
    from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

    f = lambda name: read_particles_star(os.path.join(folder, name))  # noqa: E731
    truth, regional, sample = f("all.star"), f("aligned.star"), f("global.star")
    m = len(sample)
    within = lambda a, b: float(np.mean(  # noqa: E731
        symmetric_pose_distance_deg(a.angles_deg[:m], b.angles_deg[:m], "c1") <= 10))
    regions = regional.extra.get(REGIONS_SEARCHED_COLUMN)
    return {"align": {"within10_sample": within(regional, truth),
                      "regions_searched": None if regions is None
                      else float(np.mean(np.asarray(regions, float)))},
            "global": {"within10_sample": within(sample, truth)}}


# ----------------------------------------------------------------------------- report
def growth(rows, stage, key):
    """Slope of log(key) against log(N) for a stage (1: linear; None: one size only)."""
    pts = [(r["n"], r[key]) for r in rows if r["stage"] == stage and r[key]]
    if len({n for n, _ in pts}) < 2:
        return None
    x, y = np.log([n for n, _ in pts]), np.log([v for _, v in pts])
    return float(np.polyfit(x, y, 1)[0])


def end_to_end(rows, n, global_sample):
    """DeepAlign's measured end to end against the global search extrapolated to ``n`` (the
    mean of its two timings on the sample, per particle), or None when a stage is missing."""
    by = {r["stage"]: r["seconds"] for r in rows if r["n"] == n}
    if any(stage not in by for stage in STAGES):
        return None
    per_global = np.mean([by[s] for s in GLOBAL_STAGES]) / min(n, global_sample)
    deepalign = by["train"] + by["predict"] + by["align"] + by["reconstruct"]
    global_s = per_global * n + by["reconstruct"]
    return {"deepalign_s": deepalign, "global_s": global_s, "ratio": global_s / deepalign,
            "align_ms": 1000 * by["align"] / n, "global_ms": 1000 * per_global}


def markdown(rows, args):
    sizes = sorted({r["n"] for r in rows})
    lines = [f"# Scale benchmark ({args.box} px, {platform.node()}, "
             f"{os.cpu_count()} CPUs, device {args.device})", "",
             "Search: gallery step " + ("automatic" if args.step is None else f"{args.step:g} deg")
             + ", local refinement " + ("on" if args.refine else "off") + ".", "",
             "| N | stage | seconds | ms / particle | peak MB |", "|---|---|---|---|---|"]
    for r in rows:
        per = r["n"] if r["stage"] not in GLOBAL_STAGES else min(r["n"], args.global_sample)
        peak = "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        lines.append(f"| {r['n']} | {r['stage']} | {r['seconds']:.1f} | "
                     f"{1000 * r['seconds'] / per:.2f} | {peak} |")
    lines += ["", "End to end (training, prediction, alignment and reconstruction) against "
              "the global search made the same way, extrapolated to N from the mean of its "
              "two timings on the sample (before the training, after the alignment) plus "
              "the same reconstruction:", "",
              "| N | DeepAlign end to end (min) | global (min) | ratio | alignment ms / "
              "particle: regional / global (ratio) |", "|---|---|---|---|---|"]
    for n in sizes:
        row = end_to_end(rows, n, args.global_sample)
        if row is not None:
            lines.append(f"| {n} | {row['deepalign_s'] / 60:.1f} | {row['global_s'] / 60:.1f} | "
                         f"{row['ratio']:.1f}x | {row['align_ms']:.2f} / "
                         f"{row['global_ms']:.2f} ({row['global_ms'] / row['align_ms']:.1f}x) |")
    lines += ["", f"Poses on the global search's sample (the first {args.global_sample} "
              "particles): fraction within 10 deg of the truth.", "",
              "| N | regional | global | regions searched per particle |", "|---|---|---|---|"]
    for n in sizes:
        by = {r["stage"]: r for r in rows if r["n"] == n}
        fmt = lambda v, f="{:.3f}": "" if v is None else f.format(v)  # noqa: E731
        lines.append(f"| {n} | {fmt(by.get('align', {}).get('within10_sample'))} | "
                     f"{fmt(by.get('global', {}).get('within10_sample'))} | "
                     f"{fmt(by.get('align', {}).get('regions_searched'), '{:.2f}')} |")
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    lines += ["", f"Peak memory is each stage process's `ru_maxrss`; it includes the "
              f"benchmark's own peak ({floor:.0f} MB), which Linux counts in its children's.",
              "", f"Sizes {', '.join(map(str, sizes))}. Growth exponents (log-log slope "
              "against N: 0 flat, 1 linear):", "",
              "| stage | time | peak memory | what grows |", "|---|---|---|---|"]
    for stage in STAGES:
        t, m = growth(rows, stage, "seconds"), growth(rows, stage, "peak_mb")
        fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {stage} | {fmt(t)} | {fmt(m)} | {MEMORY_NOTES[stage]} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    for ax, key, label in zip(fig.subplots(1, 2), ("seconds", "peak_mb"),
                              ("seconds", "peak resident memory (MB)")):
        for i, stage in enumerate(("simulate", *STAGES)):  # one colour per stage, both panels
            pts = [(r["n"], r[key]) for r in rows if r["stage"] == stage and r[key]]
            if pts:
                ax.loglog(*zip(*pts), marker="o", color=f"C{i}", label=stage)
        ax.set_xlabel("particles N")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    fig.axes[1].axhline(2048, color="grey", ls="--", lw=1)
    fig.axes[1].annotate("2 GB target", (0.02, 2048), xycoords=("axes fraction", "data"),
                         va="bottom", fontsize=8, color="grey")
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    results = os.path.join(args.work, "results.json")
    rows = []
    if os.path.exists(results):  # sizes measured by an earlier run are kept, not redone
        with open(results) as fh:
            rows = json.load(fh)
    done = {r["n"] for r in rows}
    for n in sorted(int(s) for s in args.sizes.split(",") if s.strip()):
        if n in done:
            print(f"N={n:>7} already measured in {results}, kept", flush=True)
            continue
        rows += measure_size(n, args)
        rows.sort(key=lambda r: r["n"])
        with open(results, "w") as fh:  # after every size: a stopped run keeps what it has
            json.dump(rows, fh, indent=1)
    report = args.report or os.path.join(args.work, "scale.md")
    with open(report, "w") as fh:
        fh.write(markdown(rows, args))
    plot(rows, args.plot or os.path.join(args.work, "scale.png"))
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
