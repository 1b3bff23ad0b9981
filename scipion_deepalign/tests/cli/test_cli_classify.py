"""``deepalign classify``: a two-map mixture classed right from the true maps low-passed, its
per-iteration report (classify.json, the summary's table), resume after a finished
iteration, and the arguments refused before any search (a mask of another box, naming it)."""
import json
import os

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.io import columns, read_particles_star, write_mrc
from scipion_deepalign.tests.helpers import write_pair_mixture

PIXEL_A = 4.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classify_cli")
    truth = write_pair_mixture(folder, 60, snr=1.0, seed=11, pixel_size_a=PIXEL_A,
                               reference_resolution_a=20)
    write_mrc(folder / "mask40.mrc", np.ones((40, 40, 40), np.float32), pixel_size_a=PIXEL_A)
    return folder, truth


def _classify(folder, *extra, out="cls"):
    return main(["classify", "--particles", str(folder / "in.star"), "--volume",
                 str(folder / "A.mrc"), "--volume", str(folder / "B.mrc"), "--max-shift", "3",
                 "--device", "cpu", "--out", str(folder / out), *extra])


@pytest.fixture(scope="module")
def classified(inputs):
    folder, truth = inputs
    assert _classify(folder, "--iterations", "1") == 0  # killed after iteration 1, say
    first = os.path.getmtime(folder / "cls" / "it001" / "iteration.json")
    assert _classify(folder, "--iterations", "5") == 0
    return folder, truth, first


def test_classes_right_and_written(classified):
    folder, truth, _ = classified
    out = read_particles_star(folder / "cls" / "classes.star")
    assert np.mean(columns.class_numbers(out.extra) == truth) >= 0.9
    assert out.angles_deg is not None and len(out) == 60
    for k in (1, 2):
        assert (folder / "cls" / f"class_{k:03d}.mrc").is_file()


def test_class_search_mean_searches_once(classified):
    """``--class-search mean``: each iteration searches the class maps' mean once (and one
    region of each particle's class map) instead of every class map, fewer comparisons a
    particle, the classes still told apart."""
    folder, truth, _ = classified
    assert _classify(folder, "--iterations", "1", "--class-search", "mean",
                     out="cls_mean") == 0
    out = read_particles_star(folder / "cls_mean" / "classes.star")
    assert np.mean(columns.class_numbers(out.extra) == truth) >= 0.8  # chance 0.5
    mean = json.loads((folder / "cls_mean" / "classify.json").read_text())["iterations"][0]
    each = json.loads((folder / "cls" / "classify.json").read_text())["iterations"][0]
    assert mean["comparisons_per_particle"] < 0.75 * each["comparisons_per_particle"]


def test_report_per_iteration(classified):
    folder, _, _ = classified
    report = json.loads((folder / "cls" / "classify.json").read_text())
    its = report["iterations"]
    assert [r["iteration"] for r in its] == list(range(1, len(its) + 1))
    assert report["stopped"] == "converged" and len(its) < 5
    assert its[0]["changed_fraction"] is None and its[-1]["changed_fraction"] < 0.01
    assert its[1]["changed_fraction"] < 0.2  # resumed with iteration 1's classes
    for r in its:
        assert sum(r["class_sizes"]) == 60 and len(r["resolution_0143_a"]) == 2
    assert report["inputs"]["classes"] == 2


def test_resume_skips_the_finished_iteration(classified, capsys):
    folder, _, first = classified
    assert os.path.getmtime(folder / "cls" / "it001" / "iteration.json") == first
    capsys.readouterr()
    assert _classify(folder, "--iterations", "5") == 0  # finished: nothing left to run
    printed = capsys.readouterr().out
    assert "stopped: after iteration" in printed and "resumed from the folder" in printed
    assert "changed  FSC 0.143 per class" in printed


def test_other_inputs_in_the_folder_are_refused(classified, capsys):
    folder, _, _ = classified
    assert _classify(folder, "--seed", "3") == 2
    assert "holds a classification of other inputs (differs: seed)" in capsys.readouterr().err


def test_mask_of_another_box_is_refused_naming_it(inputs, capsys):
    folder, _ = inputs
    assert _classify(folder, "--mask", str(folder / "mask40.mrc"), out="masked") == 2
    err = capsys.readouterr().err
    assert "mask40.mrc" in err and "differs from the particles' box" in err
    assert not (folder / "masked" / "it001").exists()  # before any search


def test_two_classes_from_one_map(inputs, capsys):
    """``--volume A --classes 2``: the variance split draws the first classes (said in the
    iteration's line and in classify.json), far above chance (measured 0.75 on these 60
    particles and a 20-A map A; tests/core/classes/test_split.py measures the split itself)."""
    folder, truth = inputs
    capsys.readouterr()
    assert main(["classify", "--particles", str(folder / "in.star"), "--volume",
                 str(folder / "A.mrc"), "--classes", "2", "--split-resolution", "16",
                 "--iterations", "2", "--max-shift", "3", "--device", "cpu", "--out",
                 str(folder / "one")]) == 0
    assert "first classes by the variance split" in capsys.readouterr().err
    out = columns.class_numbers(read_particles_star(folder / "one" / "classes.star").extra)
    assert max(np.mean(out == truth), np.mean(out != truth)) >= 0.7
    report = json.loads((folder / "one" / "classify.json").read_text())
    assert report["inputs"]["start"] == "variance"
    assert report["inputs"]["split_resolution_a"] == 16
    assert report["iterations"][0]["first_split"]["kind"] == "variance"


def test_one_structure_split_in_two_is_said(tmp_path, capsys):
    """One structure's particles (the phantom, SNR 1), two random classes from its map: the
    summary and a warning say the two class maps correlate as well as their half maps,
    whatever the class probability (the core's negative control, through the command)."""
    from scipion_deepalign.core.classes import simulate_mixture
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import write_particles
    from scipion_deepalign.tests.helpers import phantom_pair

    a = phantom_pair()[0]
    images, particles, _ = simulate_mixture([a], 60, pixel_size_a=PIXEL_A, snr=1.0, ctf=True,
                                            max_shift_px=2.0, seed=1)
    particles.angles_deg = particles.shifts_px = None
    write_particles(tmp_path / "particles.mrcs", tmp_path / "one.star", images, particles)
    write_mrc(tmp_path / "A.mrc", low_pass_volume(a, pixel_size_a=PIXEL_A, resolution_a=20.0),
              pixel_size_a=PIXEL_A)
    capsys.readouterr()
    assert main(["classify", "--particles", str(tmp_path / "one.star"), "--volume",
                 str(tmp_path / "A.mrc"), "--classes", "2", "--start", "random", "--iterations",
                 "6", "--max-shift", "3", "--device", "cpu", "--out", str(tmp_path / "cls")]) == 0
    printed = capsys.readouterr()
    assert "alike: classes 1 and 2: their maps correlate" in printed.out
    assert "one structure split in two" in printed.err  # the warning too


@pytest.mark.parametrize("extra, words", [
    (("--classes", "2"), "--classes starts every class from one --volume"),
    (("--stop-fraction", "1.5"), "--stop-fraction must be in [0, 1)"),
    (("--filter-fsc", "1"), "--filter-fsc must be in (0, 1)"),
    (("--start", "random"), "--start draws the first classes of a one-map start; give it "
                            "with --classes K"),
    (("--split-resolution", "20"), "--split-resolution draws the first classes of a one-map "
                                   "start"),
])
def test_bad_options_are_refused(inputs, capsys, extra, words):
    folder, _ = inputs
    assert _classify(folder, *extra, out="bad") == 2
    assert words in capsys.readouterr().err
