"""``--target-resolution``: one option, one default (auto) in train, run and align; the
summary says which resolution was used and why; a bad value names the option."""
import argparse
import importlib

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core import defaults
from scipion_deepalign.core.imageops import low_pass_volume
from scipion_deepalign.core.io import write_mrc, write_particles
from scipion_deepalign.core.resolution import training_input
from scipion_deepalign.core.simulate import make_phantom, simulate_particles

PIXEL_A = 4.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Noiseless particles of a 32-px phantom and the phantom low-passed to 12 A."""
    folder = tmp_path_factory.mktemp("resolution_cli")
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 4, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       max_shift_px=1.0, seed=3)
    write_particles(folder / "particles.mrcs", folder / "particles.star", images, parts)
    reference = low_pass_volume(volume, pixel_size_a=PIXEL_A, resolution_a=12.0)
    write_mrc(folder / "ref.mrc", reference, pixel_size_a=PIXEL_A)
    return folder


def _align(folder, *extra):
    return main(["align", "--particles", str(folder / "particles.star"), "--volume",
                 str(folder / "ref.mrc"), "--global", "--step", "15", "--max-shift", "2",
                 "--device", "cpu", "--out", str(folder / "aligned.star"), *extra])


def _defaults(command):
    parser = argparse.ArgumentParser()
    importlib.import_module(f"scipion_deepalign.cli.{command}").add_args(parser)
    return {action.dest: action.default for action in parser._actions}


@pytest.mark.parametrize("command", ["train", "run", "align"])
def test_every_command_defaults_to_auto(command):
    assert _defaults(command)["target_resolution"] == defaults.TARGET_RESOLUTION == "auto"


@pytest.mark.parametrize("extra, words", [
    ((), "search at 1"),  # the 12 A map's estimate, 10-13 A
    (("--target-resolution", "10"), "search at 10 A (given)"),
    (("--target-resolution", "full"), "search at full resolution (full resolution asked for)"),
    (("--target-resolution", "0"), "search at full resolution"),
], ids=["auto", "given", "full", "zero"])
def test_the_summary_says_which_resolution_and_why(inputs, capsys, extra, words):
    assert _align(inputs, *extra) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "resolution:" in line)
    assert words in line, line
    if not extra:
        assert "estimated from the reference map" in line and "refinement box" in line


def test_the_summary_file_says_it_too(inputs):
    """What the Align and Refine protocols show (NAME.summary.json beside the output)."""
    from scipion_deepalign.core.io import read_json, summary_path

    assert _align(inputs) == 0
    report = read_json(summary_path(str(inputs / "aligned.star")))
    assert "estimated from the reference map" in report["resolution"]
    assert report["search_box_px"] < report["refine_box_px"] <= 32


@pytest.mark.parametrize("value, message", [
    ("fine", "--target-resolution must be auto, full"),
    ("-2", "--target-resolution must be auto, full"),
    ("3", "--target-resolution 3.0 A is finer than Nyquist"),  # of 4 A pixels: 8 A
])
def test_a_bad_value_names_the_option(inputs, capsys, value, message):
    assert _align(inputs, "--target-resolution", value) == 2
    assert message in capsys.readouterr().err


def test_training_reads_auto_as_the_default_input_box():
    assert training_input("auto", 64) == (None, None)
    assert training_input("full", 64) == (None, 64)
    assert training_input("8", 64) == (8.0, None)
    with pytest.raises(ValueError, match="--target-resolution must be auto, full"):
        training_input("coarse", 64)


@pytest.mark.parametrize("target, box, words", [
    ("auto", None, "24 px at 5.33 A/px (Nyquist 10.7 A; auto: the network's measured input"),
    ("full", None, "64 px at 2 A/px (Nyquist 4 A; full: the particle box)"),
    (16.0, None, "16 px at 8 A/px (Nyquist 16 A; --target-resolution given)"),
    ("auto", 32, "32 px at 4 A/px (Nyquist 8 A; --box given)"),
], ids=["auto", "full", "given", "box"])
def test_train_and_run_say_the_network_input_and_why(target, box, words):
    from types import SimpleNamespace

    from scipion_deepalign.cli.shared_options import summarise_network_input

    lines = {}
    summary = SimpleNamespace(add=lambda key, value: lines.__setitem__(key, value))
    summarise_network_input(summary, SimpleNamespace(target_resolution=target, box=box),
                            SimpleNamespace(box_px=64, pixel_size_a=2.0))
    assert words in lines["network input"]


def test_train_children_get_the_option_only_when_given():
    from scipion_deepalign.cli.train import _child_command

    parser = argparse.ArgumentParser()
    importlib.import_module("scipion_deepalign.cli.train").add_args(parser)
    base = ["--particles", "p.star", "--out", "m"]
    boxed = _child_command(parser.parse_args(base + ["--box", "24"]), [1], 0)
    assert "--target-resolution" not in boxed and "--box" in boxed
    given = _child_command(parser.parse_args(base + ["--target-resolution", "full"]), [1], 0)
    assert given[given.index("--target-resolution") + 1] == "full"
