"""Real users' STAR files: RELION project layout, pixel sizes, optics groups, bad images."""
import os

import numpy as np
import pytest

from scipion_deepalign.core.io import (
    NonFiniteImagesError,
    finite_particle_rows,
    join_image_name,
    load_images,
    load_particle_images,
    locate_stacks,
    read_particles_star,
    relocate_image_names,
    split_image_name,
    write_mrc,
    write_particles_star,
)
from scipion_deepalign.tests.shared_data import shared_file

BOX, N = 16, 6

OPTICS = """
data_optics

loop_
_rlnOpticsGroup
_rlnOpticsGroupName
_rlnImagePixelSize
_rlnImageSize
_rlnVoltage
_rlnSphericalAberration
_rlnAmplitudeContrast
_rlnBeamTiltX
{rows}
"""
PARTICLES = """
data_particles

loop_
_rlnImageName
_rlnOpticsGroup
_rlnAngleRot
_rlnAngleTilt
_rlnAnglePsi
_rlnOriginXAngst
_rlnOriginYAngst
_rlnDefocusU
{rows}
"""


def _star_text(stack, groups=(1,) * N, optics=((1, 2.0, 300, 2.7, 0.1),)):
    orows = "\n".join(f"{g} opticsGroup{g} {px} {BOX} {kv} {cs} {ac} 0.{g}"
                      for g, px, kv, cs, ac in optics)
    prows = "\n".join(f"{i:06d}@{stack} {g} {10 * i} {5 * i} {-3 * i} {0.5 * i} {-0.25 * i} "
                      f"{10000 + i}" for i, g in zip(range(1, N + 1), groups))
    return OPTICS.format(rows=orows) + PARTICLES.format(rows=prows)


def _images(seed=0):
    return np.random.default_rng(seed).normal(size=(N, BOX, BOX)).astype(np.float32)


@pytest.fixture
def project(tmp_path):
    """A RELION project: Extract/job005/particles.mrcs and Refine3D/job010/run_data.star."""
    proj = tmp_path / "proj"
    (proj / "Extract" / "job005").mkdir(parents=True)
    (proj / "Refine3D" / "job010").mkdir(parents=True)
    images = _images()
    write_mrc(proj / "Extract" / "job005" / "particles.mrcs", images, pixel_size_a=2.0)
    star = proj / "Refine3D" / "job010" / "run_data.star"
    star.write_text(_star_text("Extract/job005/particles.mrcs"))
    return proj, star, images


# ------------------------------------------------------------- where images are found
def test_relion_project_layout_finds_images_above_the_star(project, monkeypatch, tmp_path):
    proj, star, images = project
    monkeypatch.chdir(tmp_path)  # neither the project nor the STAR's folder
    p = read_particles_star(star)
    assert p.root == str(proj)
    np.testing.assert_array_equal(load_images(p), images)


def test_datadir_is_tried_first(project, tmp_path):
    proj, star, images = project
    other = tmp_path / "copy" / "Extract" / "job005"
    other.mkdir(parents=True)
    write_mrc(other / "particles.mrcs", images * 2, pixel_size_a=2.0)
    p = read_particles_star(star, datadir=tmp_path / "copy")
    np.testing.assert_array_equal(load_images(p), images * 2)


def test_current_folder_is_tried_last(tmp_path, monkeypatch):
    (tmp_path / "star").mkdir()
    (tmp_path / "data").mkdir()
    write_mrc(tmp_path / "data" / "p.mrcs", _images(), pixel_size_a=2.0)
    (tmp_path / "star" / "p.star").write_text(_star_text("p.mrcs"))
    monkeypatch.chdir(tmp_path / "data")
    assert read_particles_star(tmp_path / "star" / "p.star").root == str(tmp_path / "data")


def test_missing_stack_is_named(tmp_path):
    (tmp_path / "p.star").write_text(_star_text("Extract/nothere.mrcs"))
    p = read_particles_star(tmp_path / "p.star")
    with pytest.raises(FileNotFoundError, match="image stack not found: .*Extract/nothere.mrcs"):
        load_images(p)


def test_stacks_found_in_different_folders_share_one_root(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_mrc(tmp_path / "a" / "b" / "near.mrcs", _images(), pixel_size_a=2.0)
    write_mrc(tmp_path / "far.mrcs", _images(1), pixel_size_a=2.0)
    star = tmp_path / "a" / "b" / "p.star"
    root, names = locate_stacks(["1@near.mrcs", "2@far.mrcs"], star)
    assert root == str(tmp_path / "a" / "b") and names == ["1@near.mrcs", "2@../../far.mrcs"]


def test_at_sign_in_stack_path(tmp_path):
    """The index is what precedes the first '@'; the path may hold more."""
    assert split_image_name("12@run@2/p.mrcs") == (12, "run@2/p.mrcs")
    (tmp_path / "run@2").mkdir()
    write_mrc(tmp_path / "run@2" / "p.mrcs", _images(), pixel_size_a=2.0)
    (tmp_path / "p.star").write_text(_star_text("run@2/p.mrcs"))
    assert load_images(read_particles_star(tmp_path / "p.star")).shape == (N, BOX, BOX)


def test_at_sign_in_stack_path_everywhere_names_are_handled(tmp_path):
    """Relocating, joining and matching names all split at the first '@', like the reader."""
    from scipion_deepalign.core.judge.consensus import match_particles

    assert relocate_image_names(["3@run@2/p@1.mrcs", "1@p@1.mrcs"], tmp_path / "a",
                                tmp_path) == ["3@a/run@2/p@1.mrcs", "1@a/p@1.mrcs"]
    assert join_image_name("007@old@dir/p.mrcs", "new@dir/p.mrcs") == "007@new@dir/p.mrcs"
    common, (ia, ib) = match_particles(["3@run/p@2.mrcs", "4@run/p@2.mrcs"],
                                       ["000004@/data/p@2.mrcs", "000003@/data/p@2.mrcs"])
    assert common == ["3@run/p@2.mrcs", "4@run/p@2.mrcs"] and ib.tolist() == [1, 0]
    with pytest.raises(ValueError, match="before '@' must be an integer"):
        split_image_name("run@2/p.mrcs")


def test_stack_image_names_are_what_relion_writes_and_the_reader_reads():
    from scipion_deepalign.core.particles import stack_image_names

    names = stack_image_names(3, "run@2/p.mrcs")
    assert names == ["000001@run@2/p.mrcs", "000002@run@2/p.mrcs", "000003@run@2/p.mrcs"]
    assert [split_image_name(n) for n in names] == [(i, "run@2/p.mrcs") for i in (1, 2, 3)]
    assert stack_image_names(0, "p.mrcs") == []


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_written_star_is_read_back_from_another_folder(project, tmp_path, monkeypatch, where):
    proj, star, images = project
    out_dir = proj / "DeepAlign" / "job011" if where == "inside" else tmp_path / "elsewhere"
    out_dir.mkdir(parents=True)
    write_particles_star(out_dir / "aligned.star", read_particles_star(star))
    names = read_particles_star(out_dir / "aligned.star").image_names
    if where == "inside":  # RELION convention: relative to the project, RELION runs there
        assert names[0] == "000001@Extract/job005/particles.mrcs"
        assert os.path.isfile(proj / split_image_name(names[0])[1])
    else:  # relative to the STAR's own folder
        assert os.path.isfile(out_dir / split_image_name(names[0])[1])
    monkeypatch.chdir(tmp_path)
    back = read_particles_star(out_dir / "aligned.star")
    np.testing.assert_array_equal(load_images(back), images)


# ------------------------------------------------------------- pixel size
def test_pixel_size_from_the_stack_header(tmp_path):
    write_mrc(tmp_path / "p.mrcs", _images(), pixel_size_a=3.5)
    (tmp_path / "p.star").write_text(
        "data_\nloop_\n_rlnImageName\n" + "".join(f"{i}@p.mrcs\n" for i in range(1, N + 1)))
    with pytest.warns(UserWarning, match="using 3.5 A from the header of"):
        p = read_particles_star(tmp_path / "p.star")
    assert p.pixel_size_a == 3.5 and p.box_px == BOX


def test_no_pixel_size_anywhere_names_the_file(tmp_path):
    write_mrc(tmp_path / "p.mrcs", _images(), pixel_size_a=None)
    (tmp_path / "p.star").write_text("data_\nloop_\n_rlnImageName\n1@p.mrcs\n")
    with pytest.raises(ValueError, match=r"p\.star: no pixel size .*pass pixel_size_a"):
        read_particles_star(tmp_path / "p.star")
    assert read_particles_star(tmp_path / "p.star", pixel_size_a=1.7).pixel_size_a == 1.7


def test_relion30_star_without_its_stack_and_pixel_size(tmp_path):
    src = shared_file("star", "empiar_10076_7.star")
    text = src.read_text().replace(" 38168 5", "")  # drop magnification and detector pixel
    text = text.replace("_rlnMagnification #9\n_rlnDetectorPixelSize #10\n", "")
    (tmp_path / "e.star").write_text(text)
    with pytest.raises(ValueError, match=r"e\.star: no pixel size"):
        read_particles_star(tmp_path / "e.star", box_px=320)
    os.symlink(shared_file("empiar_10076_7.mrc"), tmp_path / "empiar_10076_7.mrc")
    with pytest.raises(ValueError, match=r"no pixel size .*empiar_10076_7\.mrc"):
        read_particles_star(tmp_path / "e.star")


# ------------------------------------------------------------- optics groups
TWO_GROUPS = ((1, 2.0, 300, 2.7, 0.1), (2, 2.0, 200, 2.0, 0.07))


def _same_optics(a, b):
    assert set(a.optics) == set(b.optics)
    for col in a.optics:
        if np.asarray(a.optics[col]).dtype.kind in "fi":
            np.testing.assert_allclose(np.asarray(a.optics[col], float),
                                       np.asarray(b.optics[col], float), err_msg=col)
        else:
            assert list(a.optics[col]) == list(b.optics[col]), col
    np.testing.assert_array_equal(a.optics_group, b.optics_group)


def test_two_optics_groups_survive_read_and_write(tmp_path):
    (tmp_path / "p.star").write_text(_star_text("p.mrcs", groups=(1, 2, 2, 1, 2, 1),
                                                optics=TWO_GROUPS))
    a = read_particles_star(tmp_path / "p.star")
    np.testing.assert_array_equal(a.optics_group, [1, 2, 2, 1, 2, 1])
    np.testing.assert_allclose(a.optics["rlnVoltage"], [300, 200])
    np.testing.assert_allclose(a.ctf.voltage_kv, [300, 200, 200, 300, 200, 300])
    np.testing.assert_allclose(a.ctf.cs_mm, [2.7, 2.0, 2.0, 2.7, 2.0, 2.7])
    write_particles_star(tmp_path / "q.star", a)
    b = read_particles_star(tmp_path / "q.star")
    _same_optics(a, b)
    np.testing.assert_allclose(b.ctf.amplitude_contrast, a.ctf.amplitude_contrast)
    np.testing.assert_allclose(b.optics["rlnBeamTiltX"], [0.1, 0.2])  # unknown column kept
    assert a.subset([1, 2]).optics_group.tolist() == [2, 2]


@pytest.mark.filterwarnings("ignore:.*optics groups differ:UserWarning")
def test_six_optics_groups_round_trip(tmp_path):
    a = read_particles_star(shared_file("star", "relion31.6opticsgroups.star"),
                            mixed_pixel_sizes=True)
    assert len(a.optics["rlnOpticsGroup"]) == 6
    write_particles_star(tmp_path / "out.star", a)
    b = read_particles_star(tmp_path / "out.star", mixed_pixel_sizes=True)
    _same_optics(a, b)
    np.testing.assert_allclose(a.shifts_px, b.shifts_px, atol=1e-5)
    assert b.optics["rlnOddZernike"][0] == a.optics["rlnOddZernike"][0]


def test_changed_pixel_size_and_box_are_written_to_the_groups(tmp_path):
    (tmp_path / "p.star").write_text(_star_text("p.mrcs"))
    a = read_particles_star(tmp_path / "p.star")
    a.pixel_size_a, a.box_px = 4.0, BOX // 2
    write_particles_star(tmp_path / "q.star", a)
    b = read_particles_star(tmp_path / "q.star")
    assert (b.pixel_size_a, b.box_px) == (4.0, BOX // 2)
    np.testing.assert_allclose(b.shifts_px, a.shifts_px)


# ------------------------------------------------------------- NaN / Inf images
@pytest.fixture
def bad_stack(tmp_path):
    images = _images()
    images[1, 3, 3] = np.nan
    images[4, 0, 0] = np.inf
    with pytest.warns(RuntimeWarning, match="NaN"):  # mrcfile's, when writing
        write_mrc(tmp_path / "p.mrcs", images, pixel_size_a=2.0)
    (tmp_path / "p.star").write_text(_star_text("p.mrcs"))
    return read_particles_star(tmp_path / "p.star"), images


def test_non_finite_images_are_named(bad_stack):
    p, _ = bad_stack
    with pytest.raises(NonFiniteImagesError,
                       match=r"2 of 6 particle images hold NaN or Inf .*#2 000002@p\.mrcs, "
                             r"#5 000005@p\.mrcs") as info:
        load_images(p)
    assert info.value.rows.tolist() == [1, 4]
    with pytest.raises(NonFiniteImagesError, match="#5 000005@p.mrcs"):
        load_images(p, index=slice(3, 6))


def test_the_whole_set_check_reads_in_chunks_of_bytes_not_images(bad_stack, monkeypatch):
    import scipion_deepalign.core.io.images as images_module

    assert images_module.read_chunk(64) == 4096 and images_module.read_chunk(256) == 256
    assert images_module.read_chunk(10 ** 5) == 1
    p, _ = bad_stack
    reads = []
    real = images_module._read_images
    monkeypatch.setattr(images_module, "_read_images",
                        lambda particles, rows: reads.append(len(rows)) or real(particles, rows))
    monkeypatch.setattr(images_module, "READ_CHUNK_BYTES", 4 * BOX * BOX * 4)  # 4 images
    with pytest.raises(NonFiniteImagesError, match="#2 000002@p.mrcs, #5 000005@p.mrcs"):
        finite_particle_rows(p)
    assert reads == [4, 2]


def test_skip_bad_drops_them_with_a_warning(bad_stack):
    p, images = bad_stack
    with pytest.warns(UserWarning, match="#2 000002@p.mrcs.*skipping them"):
        rows, kept = load_particle_images(p, skip_bad=True)
    assert rows.tolist() == [0, 2, 3, 5]
    np.testing.assert_array_equal(kept, images[[0, 2, 3, 5]])
