"""`deepalign` dispatcher and `deepalign simulate`: outputs that re-read to the truth, and
one exit-2 one-line error per bad argument."""
import subprocess
import sys

import numpy as np
import pytest

from scipion_deepalign import cli
from scipion_deepalign.core.io import (
    load_images,
    read_mrc,
    read_particles_star,
    read_volume,
    write_mrc,
)
from scipion_deepalign.core.simulate import clean_particle_images, make_phantom
from scipion_deepalign.version import __version__


def _ncc(a, b):
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    return (a * b).sum(axis=(-2, -1)) / np.sqrt((a * a).sum(axis=(-2, -1))
                                                * (b * b).sum(axis=(-2, -1)))


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    return err[-1]


# ------------------------------------------------------------------ dispatcher
def test_version_and_help_without_heavy_imports():
    code = ("import sys; from scipion_deepalign.cli import main; rc = main(['--help']); "
            "print('TF', 'tensorflow' in sys.modules); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "TF False" in out.stdout
    for name in cli.COMMANDS:
        assert name in out.stdout
    out = subprocess.run([sys.executable, "-m", "scipion_deepalign.cli", "--version"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"deepalign {__version__}"


def test_no_command_and_unknown_command(capsys):
    assert cli.main([]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in _error_line(capsys)


def test_missing_command_module_does_not_break_others(capsys, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "nosuchcmd", "not written yet")
    assert cli.main(["nosuchcmd", "--x"]) == 2
    assert _error_line(capsys).startswith("deepalign nosuchcmd: error: command not available")
    assert cli.main(["simulate", "--help"]) == 0
    assert "--max-shift" in capsys.readouterr().out


# ------------------------------------------------------------------ simulate
def test_simulate_phantom_outputs_reread_to_truth(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = cli.main(["simulate", "--out", str(out), "--phantom", "--n", "6", "--box", "24",
                   "--pixel-size", "3.5", "--snr", "1000", "--max-shift", "2", "--seed", "3"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "particles.mrcs", "particles.star", "reference.mrc"]
    ref, ref_pixel = read_volume(out / "reference.mrc")
    assert ref.shape == (24, 24, 24) and ref_pixel == pytest.approx(3.5)
    np.testing.assert_allclose(ref, make_phantom(24, seed=3), atol=1e-6)

    particles = read_particles_star(out / "particles.star")
    assert len(particles) == 6 and particles.box_px == 24
    assert particles.pixel_size_a == pytest.approx(3.5)
    assert np.abs(particles.shifts_px).max() > 0.1 and np.hypot(*particles.shifts_px.T).max() <= 2
    assert particles.ctf is not None
    images = load_images(particles)
    # re-projecting the reference at the STAR's poses gives the images back (SNR 1000)
    assert _ncc(images, clean_particle_images(ref, particles)).min() > 0.99
    # and a wrong in-plane angle does not
    wrong = particles.subset(slice(None))
    wrong.angles_deg = wrong.angles_deg + [0, 0, 25]
    assert _ncc(images, clean_particle_images(ref, wrong)).max() < 0.9


def test_progress_lines_by_default_and_quiet_with_q(tmp_path, capsys):
    argv = ["simulate", "--out", str(tmp_path), "--n", "20", "--box", "16", "--no-ctf"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "deepalign: simulating 20 particles" in captured.err
    assert "simulate: 50% (10 of 20 particles)" in captured.err and "ETA" in captured.err
    assert "particles/s" in captured.err
    assert cli.main(["-q"] + argv) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "wrote" in captured.out  # -q keeps the summary
    assert cli.main(argv[:1] + ["-q"] + argv[1:]) == 0 and capsys.readouterr().err == ""


def test_simulate_volume_resampled_no_ctf(tmp_path, capsys):
    vol = make_phantom(32, seed=1)
    write_mrc(tmp_path / "map.mrc", vol, pixel_size_a=2.0)
    rc = cli.main(["simulate", "--out", str(tmp_path / "o"), "--volume", str(tmp_path / "map.mrc"),
                   "--n", "3", "--box", "24", "--no-ctf", "--snr", "1000"])
    assert rc == 0, capsys.readouterr().err
    ref, pixel = read_mrc(tmp_path / "o" / "reference.mrc")
    assert ref.shape == (24, 24, 24) and pixel == pytest.approx(2.0 * 32 / 24, rel=1e-5)
    particles = read_particles_star(tmp_path / "o" / "particles.star")
    assert particles.pixel_size_a == pytest.approx(2.0 * 32 / 24, rel=1e-5)
    assert particles.ctf is None and np.all(particles.shifts_px == 0)
    assert _ncc(load_images(particles), clean_particle_images(ref, particles)).min() > 0.99


def test_simulate_volume_without_pixel_size(tmp_path, capsys):
    write_mrc(tmp_path / "map.mrc", make_phantom(24), pixel_size_a=None)
    argv = ["simulate", "--out", str(tmp_path / "o"), "--volume", str(tmp_path / "map.mrc"),
            "--n", "2", "--box", "24"]
    assert cli.main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("deepalign simulate: error:") and "--pixel-size" in line
    assert cli.main(argv + ["--pixel-size", "2"]) == 0


def test_simulate_volume_not_cubic(tmp_path, capsys):
    write_mrc(tmp_path / "s.mrcs", np.zeros((5, 24, 24)), pixel_size_a=1.0)
    assert cli.main(["simulate", "--out", str(tmp_path / "o"), "--volume",
                     str(tmp_path / "s.mrcs"), "--n", "2", "--box", "24"]) == 2
    line = _error_line(capsys)
    assert line.startswith("deepalign simulate: error: --volume:") and "cubic" in line


@pytest.mark.parametrize("extra, option", [
    (["--n", "0", "--box", "24"], "--n"),
    (["--n", "-3", "--box", "24"], "--n"),
    (["--n", "two", "--box", "24"], "--n"),
    (["--n", "2", "--box", "25"], "--box"),
    (["--n", "2", "--box", "8"], "--box"),
    (["--n", "2", "--box", "24", "--snr", "0"], "--snr"),
    (["--n", "2", "--box", "24", "--snr", "-1"], "--snr"),
    (["--n", "2", "--box", "24", "--pixel-size", "0"], "--pixel-size"),
    (["--n", "2", "--box", "24", "--max-shift", "-1"], "--max-shift"),
    (["--n", "2", "--box", "24", "--max-shift", "6"], "--max-shift"),
    (["--n", "2", "--box", "24", "--volume", "nothere.mrc"], "--volume"),
    (["--n", "2", "--box", "24", "--volume", "x.mrc", "--phantom"], "--phantom"),
    (["--n", "2", "--box", "24", "--symmetry", "q7"], "--symmetry"),
    (["--box", "24"], "--n"),
], ids=["n0", "n-neg", "n-text", "box-odd", "box-small", "snr0", "snr-neg", "pixel0",
        "shift-neg", "shift-big", "volume-missing", "volume-and-phantom", "symmetry", "n-missing"])
def test_simulate_bad_arguments(tmp_path, capsys, extra, option):
    rc = cli.main(["simulate", "--out", str(tmp_path / "o")] + extra)
    assert rc == 2
    line = _error_line(capsys)
    assert line.startswith("deepalign simulate: error:") and option in line, line
    assert not (tmp_path / "o" / "particles.star").exists()
