"""The work folder that ``bench_relion.py`` and ``bench_classes.py`` share: its paths, the
stage records (``WORK/results/<stage>.json``), ``deepalign`` runs in a child process with
their wall and stage times, and the loop that runs the stages asked for (RELION's installed
when one needs it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import relion_tools as relion

ROOT = str(Path(__file__).resolve().parents[1])


class Bench:
    """The work folder: paths, stage records, logging."""

    def __init__(self, args, *, box_px: int):
        self.args = args
        self.work = Path(args.work).resolve()
        self.results = self.work / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        if getattr(args, "out", None):  # the report's folder, made before hours of stages
            Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
        self.sim = self.work / "sim"
        self.input = self.work / "input"
        self.star = self.input / "particles.star"
        self.reference = self.work / "reference_lowpass.mrc"
        self.bg_radius_px = int(round(0.75 * box_px / 2))  # RELION extraction's default
        self.relion_missing = None

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def record(self, stage: str):
        path = self.results / f"{stage}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, stage: str, data: dict) -> dict:
        (self.results / f"{stage}.json").write_text(json.dumps(data, indent=1))
        return data

    def deepalign(self, words, log_name) -> dict:
        """``deepalign <words>`` in a child process: wall seconds and its stage times."""
        cmd = [sys.executable, "-m", "scipion_deepalign.cli", *words]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log_path = self.work / log_name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            start = time.perf_counter()
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            seconds = time.perf_counter() - start
        if done.returncode != 0:
            last = log_path.read_text().strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"deepalign {words[0]} failed ({last[0][:300]}), see {log_path}")
        return {"seconds": seconds, "stage_seconds": _stage_times(log_path.read_text()),
                "command": "deepalign " + " ".join(map(self.shown, words))}

    def shown(self, word: str) -> str:
        """A path as the report prints it: inside the work folder relative to it, any other
        by its name."""
        if not os.path.isabs(word):
            return word
        inside = word.startswith(str(self.work) + os.sep)
        return os.path.relpath(word, self.work) if inside else os.path.basename(word)


def _stage_times(text: str) -> dict:
    """``{stage: seconds}`` from a summary's ``time per stage: a 4.2 s, b 3.5 min`` line."""
    unit = {"s": 1.0, "min": 60.0, "h": 3600.0}
    for line in text.splitlines():
        if line.strip().startswith("time per stage:"):
            words = [item.rsplit(None, 2) for item in line.split(":", 1)[1].split(",")]
            return {name.strip(): float(value) * unit[u] for name, value, u in words}
    return {}


def training_seconds(record: dict) -> float:
    """The training stage's seconds (``train``, ``training`` or ``training (reused)``)."""
    return sum(v for k, v in record["stage_seconds"].items() if k.startswith("train"))


def run_stages(b: Bench, stages, runners, needs_relion) -> dict:
    """Run the ``stages`` asked for (or not yet recorded), each by ``runners[name](b)``;
    ``{stage: record}`` of all. Without RELION the ``needs_relion`` stages are skipped (the
    report says why) and the stack is not normalised."""
    relion_version, missing = None, None
    run_load = os.getloadavg()[0]  # before this run's first stage: what "alone" is judged on
    for name in stages:
        if name not in b.args.wanted or (b.record(name) and not b.args.redo):
            continue
        if name in needs_relion and relion_version is None and missing is None:
            try:
                relion_version = relion.ensure_relion(b.log)
            except relion.RelionMissing as exc:
                missing = str(exc)
                b.log(missing)
        if missing and name in needs_relion - {"normalise"}:
            continue
        b.relion_missing = missing
        b.log(f"stage {name}")
        rec = runners[name](b)
        rec["relion_version"] = relion_version
        rec["run_load_before"] = run_load  # reports made later name the measuring run's load
        b.save(name, rec)
        b.log(f"stage {name}: {rec.get('seconds', 0.0):.1f} s")
    return {**{s: b.record(s) for s in stages}, "relion_missing": missing}
