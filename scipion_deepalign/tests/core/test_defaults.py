"""core/defaults.py is the one place of every shared default: a leaf module, and the public
core functions' signatures and the command line read it (the forms: tests/scipion/test_forms.py).
"""
import argparse
import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from scipion_deepalign.core import defaults

CORE = Path(__file__).resolve().parents[2] / "core"

#: (module, function, parameter, name in defaults); functions of modules that load Keras are
#: read from their source (same rule, no Keras import)
SIGNATURES = [
    ("core.align.align", "align_particles", "batch_size", "ALIGN_BATCH"),
    ("core.align.align", "align_particles", "refine", "REFINE"),
    ("core.align.align", "align_particles", "target_resolution_a", "TARGET_RESOLUTION"),
    ("core.align.search", "Search.create", "batch_size", "ALIGN_BATCH"),
    ("core.pipeline", "run_deepalign", "spacing_deg", "REGION_SPACING_DEG"),
    ("core.pipeline", "run_deepalign", "top_k", "TOP_K"),
    ("core.pipeline", "run_deepalign", "refine", "REFINE"),
    ("core.pipeline", "run_deepalign", "class_prior", "CLASS_PRIOR"),
    ("core.subset", "balanced_subset", "spacing_deg", "REGION_SPACING_DEG"),
    ("core.judge.consensus", "angular_consensus", "max_angle_deg", "CONSENSUS_MAX_ANGLE_DEG"),
    ("core.judge.consensus", "ConsensusResult.fraction_below", "thresholds_deg",
     "CONSENSUS_REPORT_THRESHOLDS_DEG"),
    ("core.judge.reconstruct", "reconstruct_half_maps", "threads", "RECONSTRUCT_THREADS"),
    ("core.cnn.train", "train_regions", "spacing_deg", "REGION_SPACING_DEG"),
    ("core.cnn.predict", "predict_regions", "top_k", "TOP_K"),
]
KERAS_MODULES = {"core.cnn.train", "core.cnn.predict"}

#: (command, option dest, name in defaults)
CLI_OPTIONS = [
    ("train", "spacing", "REGION_SPACING_DEG"), ("run", "spacing", "REGION_SPACING_DEG"),
    ("subset", "spacing", "REGION_SPACING_DEG"), ("run", "top_k", "TOP_K"),
    ("predict", "top_k", "TOP_K"), ("align", "batch_size", "ALIGN_BATCH"),
    ("align", "refine", "REFINE"), ("consensus", "max_angle", "CONSENSUS_MAX_ANGLE_DEG"),
    ("reconstruct", "threads", "RECONSTRUCT_THREADS"),
    ("run", "class_prior", "CLASS_PRIOR"),
]


def test_defaults_is_a_leaf():
    code = ("import sys, scipion_deepalign.core.defaults; "
            "print(sorted(m for m in sys.modules if m.startswith('scipion_deepalign')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert eval(loaded) == ["scipion_deepalign", "scipion_deepalign.core",
                            "scipion_deepalign.core.defaults", "scipion_deepalign.version"]
    imports = [node for node in ast.parse((CORE / "defaults.py").read_text()).body
               if isinstance(node, (ast.Import, ast.ImportFrom)) and node.module != "__future__"]
    assert not imports, "defaults.py imports at module level"


def _source_default(module, qualname, param):
    """The default of ``param`` as written in the source (``ast.unparse``)."""
    tree = ast.parse((CORE / Path(*module.split(".")[1:])).with_suffix(".py").read_text())
    name = qualname.split(".")[-1]
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)
    args = func.args
    pairs = list(zip(args.args[len(args.args) - len(args.defaults):], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return next(ast.unparse(d) for a, d in pairs if a.arg == param)


@pytest.mark.parametrize("module, qualname, param, name", SIGNATURES,
                         ids=[f"{q}.{p}" for _, q, p, _ in SIGNATURES])
def test_core_signatures_take_their_defaults_from_defaults(module, qualname, param, name):
    if module in KERAS_MODULES:
        assert _source_default(module, qualname, param) in (name, f"defaults.{name}")
        return
    target = importlib.import_module(f"scipion_deepalign.{module}")
    for part in qualname.split("."):
        target = getattr(target, part)
    assert inspect.signature(target).parameters[param].default == getattr(defaults, name)


def test_the_source_reader_can_fail():
    assert _source_default("core.subset", "balanced_subset", "seed") == "0"


@pytest.mark.parametrize("command, dest, name", CLI_OPTIONS,
                         ids=[f"{c}.{d}" for c, d, _ in CLI_OPTIONS])
def test_cli_options_take_their_defaults_from_defaults(command, dest, name):
    parser = argparse.ArgumentParser()
    importlib.import_module(f"scipion_deepalign.cli.{command}").add_args(parser)
    action = next(a for a in parser._actions if a.dest == dest)
    assert action.default == getattr(defaults, name)


def test_same_pixel_size_is_one_relative_rule():
    assert defaults.same_pixel_size(1.0, 1.0 + 0.5 * defaults.PIXEL_SIZE_RTOL)
    assert not defaults.same_pixel_size(1.0, 1.0 + 2 * defaults.PIXEL_SIZE_RTOL)
    assert defaults.same_pixel_size(200.0, 200.1) and not defaults.same_pixel_size(2.0, 2.01)


def test_every_training_default_is_defined_in_defaults():
    from dataclasses import fields

    from scipion_deepalign.core.cnn.config import TrainConfig

    assert {f.name: f.default for f in fields(TrainConfig)} == defaults.TRAIN_DEFAULTS
    assert defaults.train_default("epochs") == TrainConfig().epochs
    with pytest.raises(KeyError, match="no field 'epoch'"):
        defaults.train_default("epoch")


@pytest.mark.parametrize("command, dest, name", [
    ("train", "epochs", "epochs"), ("run", "epochs", "epochs"),
    ("train", "images_per_epoch", "images_per_epoch"), ("train", "patience", "patience"),
    ("run", "noise_ramp_epochs", "noise_ramp_epochs"), ("train", "class_output", "class_output"),
    ("run", "class_output", "class_output")])
def test_cli_training_options_take_their_defaults_from_defaults(command, dest, name):
    parser = argparse.ArgumentParser()
    importlib.import_module(f"scipion_deepalign.cli.{command}").add_args(parser)
    action = next(a for a in parser._actions if a.dest == dest)
    assert action.default == defaults.TRAIN_DEFAULTS[name]


def test_run_trains_the_class_output_it_is_given():
    """``deepalign run --class-output head`` reaches the TrainConfig; the choices are the core's."""
    from types import SimpleNamespace

    run = importlib.import_module("scipion_deepalign.cli.run")
    parser = argparse.ArgumentParser()
    run.add_args(parser)
    words = ["--particles", "p.star", "--volume", "a.mrc", "--out", "o"]
    action = next(a for a in parser._actions if a.dest == "class_output")
    assert tuple(action.choices) == defaults.CLASS_OUTPUTS
    particles = SimpleNamespace(pixel_size_a=4.0, box_px=32)
    for kind in defaults.CLASS_OUTPUTS:
        args = parser.parse_args(words + ["--class-output", kind])
        assert run._train_config(args, particles).class_output == kind
    with pytest.raises(SystemExit):
        parser.parse_args(words + ["--class-output", "mixture"])
