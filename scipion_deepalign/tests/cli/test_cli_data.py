"""The CLI on real users' data: --datadir, --pixel-size, --skip-bad, plain warnings, messages
in the options' words, consensus of unlike sets."""
import numpy as np
import pytest

from scipion_deepalign.cli import main
from scipion_deepalign.cli.common import user_words
from scipion_deepalign.core.io import read_particles_star, read_volume, write_mrc
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.tests.core.io.test_io_relion_data import BOX, N, _star_text

BAD_ROWS = (1, 4)  # 0-based particles given a NaN / Inf pixel


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path):
    """RELION layout: Extract/job005/particles.mrcs named from Refine3D/job010/run_data.star."""
    proj = tmp_path / "proj"
    (proj / "Extract" / "job005").mkdir(parents=True)
    (proj / "Refine3D" / "job010").mkdir(parents=True)
    volume = make_phantom(BOX, seed=1)
    images, _ = simulate_particles(volume, N, pixel_size_a=2.0, snr=np.inf, ctf=False,
                                   max_shift_px=0.0, seed=2)
    write_mrc(proj / "Extract" / "job005" / "particles.mrcs", images, pixel_size_a=None)
    star = proj / "Refine3D" / "job010" / "run_data.star"
    star.write_text(_star_text("Extract/job005/particles.mrcs"))
    return proj, star, images


def _bare_star(path, stack):
    """RELION 3.0 STAR with poses and no pixel size."""
    rows = "".join(f"{i}@{stack} {10 * i} {5 * i} 0\n" for i in range(1, N + 1))
    path.write_text("data_\nloop_\n_rlnImageName\n_rlnAngleRot\n_rlnAngleTilt\n_rlnAnglePsi\n"
                    + rows)
    return path


def test_reconstruct_relion_project_from_another_folder(project, tmp_path, monkeypatch,
                                                        capsys):
    _, star, _ = project
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "reconstruct", "--particles", star, "--out", "map.mrc")
    assert code == 0, err
    assert read_volume(tmp_path / "map.mrc")[0].shape == (BOX, BOX, BOX)


def test_datadir(project, tmp_path, capsys):
    proj, star, _ = project
    moved = tmp_path / "moved.star"
    moved.write_text(star.read_text())  # outside the project: stacks not found
    code, _, err = _run(capsys, "reconstruct", "--particles", moved, "--out", tmp_path / "m.mrc")
    assert code == 2 and "image stack not found" in err and "--datadir" in err
    code, _, err = _run(capsys, "reconstruct", "--particles", moved, "--out", tmp_path / "m.mrc",
                        "--datadir", proj)
    assert code == 0, err
    code, _, err = _run(capsys, "reconstruct", "--particles", moved, "--out", tmp_path / "m.mrc",
                        "--datadir", tmp_path / "nothere")
    assert code == 2 and "--datadir: folder not found" in err


def test_pixel_size_option_and_message(tmp_path, capsys):
    images = np.zeros((N, BOX, BOX), np.float32)
    write_mrc(tmp_path / "p.mrcs", images, pixel_size_a=None)  # header: 0, unknown
    star = _bare_star(tmp_path / "bare.star", "p.mrcs")
    code, _, err = _run(capsys, "reconstruct", "--particles", star, "--out", tmp_path / "m.mrc")
    assert code == 2
    assert "bare.star: no pixel size" in err and "pass --pixel-size" in err
    assert "pixel_size_a" not in err
    code, _, err = _run(capsys, "reconstruct", "--particles", star, "--out", tmp_path / "m.mrc",
                        "--pixel-size", "2.5")
    assert code == 0, err
    assert read_volume(tmp_path / "m.mrc")[1] == pytest.approx(2.5)


def test_pixel_size_from_the_stack_header(tmp_path, capsys):
    write_mrc(tmp_path / "p.mrcs", np.zeros((N, BOX, BOX), np.float32), pixel_size_a=3.0)
    star = _bare_star(tmp_path / "bare.star", "p.mrcs")
    code, _, err = _run(capsys, "reconstruct", "--particles", star, "--out", tmp_path / "m.mrc")
    assert code == 0, err
    assert "WARNING: " in err and "using 3 A from the header" in err
    assert read_volume(tmp_path / "m.mrc")[1] == pytest.approx(3.0)


@pytest.fixture
def bad_star(project):
    proj, star, images = project
    images = images.copy()
    images[BAD_ROWS[0], 2, 2], images[BAD_ROWS[1], 0, 0] = np.nan, np.inf
    with pytest.warns(RuntimeWarning):  # mrcfile's NaN warning
        write_mrc(proj / "Extract" / "job005" / "particles.mrcs", images, pixel_size_a=None)
    return star


def test_nan_images_stop_with_their_names(bad_star, tmp_path, capsys):
    code, _, err = _run(capsys, "reconstruct", "--particles", bad_star, "--out",
                        tmp_path / "m.mrc")
    assert code == 2
    assert "2 of 6 particle images hold NaN or Inf" in err
    assert "#2 000002@Extract/job005/particles.mrcs" in err and "#5 000005@" in err
    assert not (tmp_path / "m.mrc").exists()


def test_skip_bad_drops_them_with_a_plain_warning(bad_star, tmp_path, capsys):
    out = tmp_path / "m.mrc"
    code, text, err = _run(capsys, "reconstruct", "--particles", bad_star, "--out", out,
                           "--skip-bad")
    assert code == 0, err
    assert f"({N - 2} particles" in text
    warning = [line for line in err.splitlines() if "NaN or Inf" in line]
    assert len(warning) == 1 and warning[0].startswith("WARNING: 2 of 6 particle images")
    assert warning[0].endswith("skipping them")
    assert ".py:" not in err and "UserWarning" not in err
    assert np.all(np.isfinite(read_volume(out)[0]))


def _consensus_inputs(tmp_path, box=BOX, pixel=2.0):
    write_mrc(tmp_path / "p.mrcs", np.zeros((N, BOX, BOX), np.float32), pixel_size_a=None)
    a = tmp_path / "a.star"
    a.write_text(_star_text("p.mrcs"))
    b = tmp_path / "b.star"
    b.write_text(_star_text("p.mrcs").replace(f" 2.0 {BOX} ", f" {pixel} {box} "))
    return a, b


@pytest.mark.parametrize("box, pixel, words", [(BOX * 2, 2.0, "box size (16 px vs 32 px)"),
                                                (BOX, 2.5, "pixel size (2 A vs 2.5 A)")],
                         ids=["box", "pixel"])
def test_consensus_refuses_unlike_sets(tmp_path, capsys, box, pixel, words):
    a, b = _consensus_inputs(tmp_path, box, pixel)
    code, _, err = _run(capsys, "consensus", "--inputs", a, b, "--out", tmp_path / "out")
    assert code == 2
    assert str(a) in err and str(b) in err and words in err


def test_consensus_output_names_images_for_its_folder(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    a, _ = _consensus_inputs(tmp_path / "in")
    code, _, err = _run(capsys, "consensus", "--inputs", a, a, "--out", tmp_path / "in" / "out")
    assert code == 0, err
    agree = read_particles_star(tmp_path / "in" / "out" / "agree.star")
    # written inside the inputs' root: relative to that root, as RELION names them
    assert agree.image_names[0] == "000001@p.mrcs" and agree.root == str(tmp_path / "in")
    assert len(agree) == N
    code, _, err = _run(capsys, "consensus", "--inputs", a, a, "--out", tmp_path / "out")
    agree = read_particles_star(tmp_path / "out" / "agree.star")
    assert agree.image_names[0] == "000001@../in/p.mrcs"  # elsewhere: relative to its folder


def test_core_argument_names_become_option_names():
    assert user_words("pass pixel_size_a") == "pass --pixel-size"
    assert user_words("max_shift_px must be in [0, 8]") == "--max-shift must be in [0, 8]"
    assert user_words("model_dir /m holds no config.json") == "--model /m holds no config.json"
    assert user_words("out_dir /o holds models") == "--out /o holds models"
    assert user_words("volume_pixel_size_a differs") == "volume_pixel_size_a differs"
    assert user_words("x.star: stack s.mrcs is missing; pass box_px") == \
        "x.star: stack s.mrcs is missing; name the folder of the stacks with --datadir DIR"


def test_align_max_shift_message_names_the_option(project, tmp_path, capsys):
    _, star, _ = project
    write_mrc(tmp_path / "ref.mrc", make_phantom(BOX, seed=1), pixel_size_a=2.0)
    code, _, err = _run(capsys, "align", "--particles", star, "--volume", tmp_path / "ref.mrc",
                        "--global", "--out", tmp_path / "a.star", "--max-shift", "100",
                        "--pixel-size", "2.0", "--device", "cpu")
    assert code == 2
    assert "--max-shift must be in" in err and "max_shift_px" not in err
