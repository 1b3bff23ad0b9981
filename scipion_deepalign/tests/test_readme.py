"""README.rst's "Command line" block runs as written, top to bottom, in an empty folder."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.rst"


def command_line_block(text: str) -> str:
    """The first ``code-block:: bash`` after the "Command line" heading, dedented."""
    section = text[text.index("Command line\n====="):]
    match = re.search(r"\.\. code-block:: bash\n\n((?:    .*\n|\n)+)", section)
    assert match, "no bash block in the Command line section"
    return "\n".join(line[4:] for line in match.group(1).splitlines()).strip() + "\n"


def test_block_is_found_and_names_every_command():
    block = command_line_block(README.read_text())
    for command in ("simulate", "subset", "train", "predict", "align", "run", "reconstruct",
                    "fsc", "consensus"):
        assert re.search(rf"^deepalign {command} ", block, re.M), command


def test_readme_command_line_runs_as_written(tmp_path):
    pytest.importorskip("keras")
    if not README.is_file():
        pytest.skip("README.rst is not beside the package (installed from a wheel)")
    script = ("set -euo pipefail\n"
              f'deepalign() {{ "{sys.executable}" -m scipion_deepalign.cli "$@"; }}\n'
              + command_line_block(README.read_text()))
    (tmp_path / "readme.sh").write_text(script)
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run(["bash", "readme.sh"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("sim/particles.star", "sim/reference.mrc", "train.star", "model/config.json",
                 "pred.star", "aligned.star", "run1/aligned.star", "map.mrc", "map_half1.mrc",
                 "fsc.png", "consensus"):
        assert (tmp_path / name).exists(), name
    for command in ("simulate", "subset", "train", "predict", "align", "run", "reconstruct",
                    "fsc", "consensus"):
        assert f"deepalign {command}: done in" in done.stdout, command
    for step in ("simulate", "predict", "align", "reconstruct"):
        assert re.search(rf"deepalign: {step}: 100% \(\d+ of \d+ particles\)", done.stderr), step
    assert re.search(r"training shared network \(1 of 1\): 100% \(2 of 2 epochs\), .* in all, "
                     r"accuracy=", done.stderr)
    assert "fallback" in done.stdout and "FSC 0.143 resolution" in done.stdout
