"""Run every benchmark of docs/benchmarks.md in turn (``make benchmarks``).

Each script prints its own tables; results are written under ``benchmarks/out/`` and the
numbers quoted in docs/benchmarks.md come from such a run. Takes about two hours on 2 cores
(the accuracy benchmark about 45 minutes, the scale benchmark's 100k point most of the rest).
"""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

RUNS = [
    ("bench_cnn.py", ["--json", str(OUT / "cnn.json")]),
    ("bench_align.py", ["--cnn", "--epochs", "5", "--out", str(OUT / "align.md")]),
    ("bench_accuracy.py", ["--refine", "--out", str(OUT / "accuracy.md"),
                           "--json", str(OUT / "accuracy.json")]),
    ("bench_reconstruct.py", ["--sizes", "2000,20000"]),
    ("bench_scale.py", ["--work", str(OUT / "scale"), "--report", str(OUT / "scale.md")]),
]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for script, args in RUNS:
        print(f"== {script} {' '.join(args)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), *args], env=env)
        if code:
            print(f"{script} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
