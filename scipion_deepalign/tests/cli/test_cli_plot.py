"""``deepalign plot``: the viewers' figures from files, in the format of ``--out``."""
import json
from dataclasses import replace

import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.core.geometry import random_angles_deg
from scipion_deepalign.core.io import (
    write_mrc,
    write_particles,
    write_particles_star,
    write_regions_star,
)
from scipion_deepalign.core.regions import region_centres_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles

BOX, PIXEL_A, N = 16, 5.0, 40


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    volume = make_phantom(BOX, seed=1)
    images, parts = simulate_particles(volume, N, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       seed=5)
    parts = write_particles(root / "aligned.mrcs", root / "aligned.star", images, parts)
    angles = parts.angles_deg.copy()
    angles[: N // 4] = random_angles_deg(N // 4, 6)
    write_particles_star(root / "other.star", replace(parts, angles_deg=angles))
    rng = np.random.default_rng(0)
    for name in ("half1", "half2"):
        write_mrc(root / f"{name}.mrc", volume + 0.3 * volume.std() * rng.standard_normal(
            volume.shape), pixel_size_a=PIXEL_A)
    return root


def _model(folder, *, shared):
    folder.mkdir()
    centres = region_centres_deg(90.0, "c1")[:, :2]
    write_regions_star(folder / "regions.star", centres, symmetry="c1", spacing_deg=90.0)
    curve = {"loss": [1.0, 0.6], "accuracy": [0.5, 0.7], "val_loss": [1.1, 0.8],
             "val_accuracy": [0.4, 0.6]}
    if shared:
        curve["n_particles_per_region"] = list(range(10, 10 + len(centres)))
        (folder / "history_shared.json").write_text(json.dumps(curve))
    else:
        for region in (1, 2):
            (folder / f"history_{region:04d}.json").write_text(json.dumps(curve))
    return folder, len(centres)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 2000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_distribution_png_and_svg(data, capsys, tmp_path):
    code, out, err = _run(capsys, "plot", "distribution", "--particles", data / "aligned.star",
                          "--out", tmp_path / "d.png")
    assert code == 0, err
    assert _is_png(tmp_path / "d.png") and "wrote" in out
    code, _, err = _run(capsys, "plot", "distribution", "--particles", data / "aligned.star",
                        "--symmetry", "c4", "--out", tmp_path / "d.svg")
    assert code == 0, err
    assert (tmp_path / "d.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("shared", [False, True], ids=["regional", "shared"])
def test_plot_training_and_regions(capsys, tmp_path, shared):
    model, _ = _model(tmp_path / "model", shared=shared)
    code, out, err = _run(capsys, "plot", "training", "--model", model,
                          "--out", tmp_path / "t.png", "--regions-out", tmp_path / "r.png")
    assert code == 0, err
    assert _is_png(tmp_path / "t.png") and _is_png(tmp_path / "r.png")
    assert out.count("wrote") == 2


def test_plot_angular_differences(data, capsys, tmp_path):
    code, _, err = _run(capsys, "plot", "angular-differences", "--inputs",
                        data / "aligned.star", data / "other.star", "--threshold", "5",
                        "--out", tmp_path / "a.png")
    assert code == 0, err
    assert _is_png(tmp_path / "a.png")


def test_plot_fsc_maps_and_csv_are_named_after_the_files(data, capsys, tmp_path):
    from scipion_deepalign.cli.plot import read_fsc_csv

    code, _, err = _run(capsys, "fsc", data / "half1.mrc", data / "half2.mrc",
                        "--csv", tmp_path / "run1.csv", "--plot", tmp_path / "one.png")
    assert code == 0, err
    assert _is_png(tmp_path / "one.png")
    code, _, err = _run(capsys, "plot", "fsc", "--maps", data / "half1.mrc", data / "half2.mrc",
                        "--csv", tmp_path / "run1.csv", "--out", tmp_path / "f.png")
    assert code == 0, err
    assert _is_png(tmp_path / "f.png")
    # the CSV curve keeps the resolutions of the maps' curve
    from scipion_deepalign.core.io import read_volume
    from scipion_deepalign.core.judge.fsc import fsc_curve

    maps = [read_volume(data / f"{n}.mrc")[0] for n in ("half1", "half2")]
    direct = fsc_curve(*maps, pixel_size_a=PIXEL_A)
    again = read_fsc_csv(tmp_path / "run1.csv")
    assert again.pixel_size_a == pytest.approx(PIXEL_A)
    assert again.resolution_0143_a == pytest.approx(direct.resolution_0143_a, rel=1e-3)


def test_plot_fsc_labels_from_file_names():
    from scipion_deepalign.cli.fsc import map_pair_label

    assert map_pair_label("/data/run_half1.mrc", "run_half2.mrc") == "run_half1 vs run_half2"


@pytest.mark.parametrize("argv, message", [
    (["distribution", "--particles", "{root}/aligned.star", "--out", "{tmp}/d.jpg"],
     "--out must end in .png, .svg, .pdf"),
    (["fsc", "--out", "{tmp}/f.png"], "give at least one --maps"),
    (["angular-differences", "--inputs", "{root}/aligned.star", "--out", "{tmp}/a.png"],
     "at least two STAR files"),
    (["training", "--model", "{tmp}/nowhere", "--out", "{tmp}/t.png"], "folder not found"),
    (["fsc", "--maps", "{root}/half1.mrc", "{root}/half2.mrc", "--label", "a", "--label", "b",
      "--out", "{tmp}/f.png"], "--label given 2 times for 1 curves"),
])
def test_plot_errors_name_the_option(data, capsys, tmp_path, argv, message):
    argv = [a.format(root=data, tmp=tmp_path) for a in argv]
    code, _, err = _run(capsys, "plot", *argv)
    assert code == 2 and message in err, err
