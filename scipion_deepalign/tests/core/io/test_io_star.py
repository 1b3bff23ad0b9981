"""RELION STAR IO: every shared STAR file, round trips, extra columns, images, regions."""
import os
import shutil

import numpy as np
import pytest

from scipion_deepalign.core.io import (
    load_images,
    read_particles_star,
    read_regions_star,
    read_star_blocks,
    split_image_name,
    stack_path,
    write_particles,
    write_particles_star,
    write_regions_star,
)
from scipion_deepalign.core.particles import CTFParams, Particles
from scipion_deepalign.tests.shared_data import shared_file

RELION31_ROW1 = {"rot": -102.30296, "tilt": 82.318041, "psi": 124.706463,
                 "ox_a": 0.019324, "oy_a": -0.64686, "du": 13108.082418, "dv": 12845.582418,
                 "dang": -160.39}


def _particles(n=6, box=24, pixel=2.5, seed=0):
    rng = np.random.default_rng(seed)
    ctf = CTFParams(defocus_u_a=rng.uniform(8000, 20000, n),
                    defocus_v_a=rng.uniform(8000, 20000, n),
                    defocus_angle_deg=rng.uniform(-90, 90, n), voltage_kv=200.0, cs_mm=2.0,
                    amplitude_contrast=0.07, phase_shift_deg=np.zeros(n))
    return Particles(
        image_names=[f"{i:06d}@particles.mrcs" for i in range(1, n + 1)], pixel_size_a=pixel,
        box_px=box, angles_deg=rng.uniform([-180, 0, -180], [180, 180, 180], (n, 3)),
        shifts_px=rng.uniform(-3, 3, (n, 2)), ctf=ctf,
        extra={"deepalignRegion1": rng.integers(1, 20, n), "deepalignRegionProb1": rng.random(n),
               "deepalignScore": rng.random(n), "rlnRandomSubset": rng.integers(1, 3, n),
               "rlnMicrographName": np.array([f"mic_{i}.mrc" for i in range(n)])})


def _assert_same(a: Particles, b: Particles, *, names=True):
    assert len(a) == len(b) and a.box_px == b.box_px
    assert a.pixel_size_a == pytest.approx(b.pixel_size_a)
    if names == "resolved":  # written elsewhere: names rewritten, same stacks
        assert [split_image_name(n)[0] for n in a.image_names] == \
            [split_image_name(n)[0] for n in b.image_names]
        assert [os.path.realpath(stack_path(n, a.root)) for n in a.image_names] == \
            [os.path.realpath(stack_path(n, b.root)) for n in b.image_names]
    elif names:
        assert a.image_names == b.image_names
    np.testing.assert_allclose(a.angles_deg, b.angles_deg, atol=1e-5)
    np.testing.assert_allclose(a.shifts_px, b.shifts_px, atol=1e-5)
    for f in ("defocus_u_a", "defocus_v_a", "defocus_angle_deg", "phase_shift_deg"):
        np.testing.assert_allclose(getattr(a.ctf, f), getattr(b.ctf, f), atol=1e-5)
    for f in ("voltage_kv", "cs_mm", "amplitude_contrast"):
        assert getattr(a.ctf, f) == pytest.approx(getattr(b.ctf, f))
    assert set(a.extra) == set(b.extra)
    for k in a.extra:
        if a.extra[k].dtype.kind in "iu":
            assert b.extra[k].dtype.kind in "iu", k
            np.testing.assert_array_equal(a.extra[k], b.extra[k])
        elif a.extra[k].dtype.kind == "f":
            np.testing.assert_allclose(a.extra[k], b.extra[k], atol=1e-6)
        else:
            assert list(a.extra[k]) == list(b.extra[k])


# ------------------------------------------------------------- shared real files
def test_relion31_real_file():
    p = read_particles_star(shared_file("star", "relion31.star"))
    assert len(p) == 5 and p.box_px == 256 and p.pixel_size_a == pytest.approx(2.806)
    r = RELION31_ROW1
    np.testing.assert_allclose(p.angles_deg[0], [r["rot"], r["tilt"], r["psi"]])
    np.testing.assert_allclose(p.shifts_px[0], np.array([r["ox_a"], r["oy_a"]]) / 2.806)
    np.testing.assert_allclose([p.ctf.defocus_u_a[0], p.ctf.defocus_v_a[0],
                                p.ctf.defocus_angle_deg[0]], [r["du"], r["dv"], r["dang"]])
    assert (p.ctf.voltage_kv, p.ctf.cs_mm, p.ctf.amplitude_contrast) == (300.0, 0.01, 0.1)
    assert p.image_names[0] == "000001@relion31.mrcs"
    assert "rlnRandomSubset" in p.extra and p.extra["rlnRandomSubset"].dtype.kind == "i"
    assert p.extra["rlnMicrographName"][0].startswith("Micrographs/18aug10a")
    assert "rlnOpticsGroup" not in p.extra and "rlnAngleRot" not in p.extra
    with pytest.warns(UserWarning, match="old-style MRC header"):
        images = load_images(p, index=[4, 0])
    assert images.shape == (2, 256, 256) and images.dtype == np.float32 and images.std() > 0


@pytest.mark.parametrize("box, first", [(64, [275.167758, 67.327105, 47.970504]),
                                        (65, [355.858841, 72.200518, 240.688133])])
def test_rln_proj_needs_pixel_size(box, first):
    path = shared_file(f"rln_proj_{box}.star")
    with pytest.raises(ValueError, match=f"rln_proj_{box}.star: no pixel size.*pixel_size_a"):
        read_particles_star(path)
    p = read_particles_star(path, pixel_size_a=5.0)
    assert len(p) == 5 and p.pixel_size_a == 5.0 and p.box_px == box  # box from the stack
    np.testing.assert_allclose(p.angles_deg[0], first)
    assert np.all(p.shifts_px == 0)
    assert load_images(p).shape == (5, box, box)


@pytest.mark.parametrize("box", [64, 65])
def test_rln_proj_relion30_origins_in_pixels(box):
    p = read_particles_star(shared_file(f"rln_proj_{box}_shifted.star"))
    np.testing.assert_allclose(p.shifts_px, [[6, 10], [10, -5], [-8, 11], [-13, -3]])
    c = read_particles_star(shared_file(f"rln_proj_{box}_centered.star"))
    np.testing.assert_allclose(c.angles_deg, p.angles_deg)
    assert np.all(c.shifts_px == 0)
    assert load_images(p).shape == (4, box, box)


def test_six_optics_groups_with_different_pixel_sizes_refused():
    with pytest.raises(ValueError, match="optics groups differ in rlnImagePixelSize"):
        read_particles_star(shared_file("star", "relion31.6opticsgroups.star"))


def test_relion5_file_and_missing_stack():
    p = read_particles_star(shared_file("star", "relion5.star"))
    assert len(p) == 17 and p.box_px == 448 and p.pixel_size_a == pytest.approx(0.89)
    assert p.ctf.voltage_kv == 100.0 and p.ctf.cs_mm == 1.6
    assert "rlnRandomSubset" in p.extra
    with pytest.raises(FileNotFoundError, match="toy_images_a.mrcs"):
        load_images(p)


def test_old_style_star_magnification(tmp_path):
    src = shared_file("star", "empiar_10076_7.star")
    (tmp_path / "alone").mkdir()
    alone = shutil.copy(src, tmp_path / "alone" / "e.star")  # no stack in any parent folder
    with pytest.raises(ValueError, match="first image stack .*empiar_10076_7.mrc is missing"):
        read_particles_star(alone)
    p = read_particles_star(alone, box_px=320)
    assert p.pixel_size_a == pytest.approx(5 * 1e4 / 38168)
    assert p.ctf.amplitude_contrast == pytest.approx(0.07) and p.angles_deg is None
    np.testing.assert_allclose(p.ctf.defocus_u_a[:2], [15301.1, 15303.0])
    # beside its stack, the box comes from the stack header and the images load
    shutil.copy(src, tmp_path / "e.star")
    os.symlink(shared_file("empiar_10076_7.mrc"), tmp_path / "empiar_10076_7.mrc")
    q = read_particles_star(tmp_path / "e.star")
    assert q.box_px == 320 and load_images(q, index=slice(0, 2)).shape == (2, 320, 320)


def test_trpv1_files():
    p = read_particles_star(shared_file("trpv1", "trpv1_small_stack.star"))
    assert len(p) == 10 and p.box_px == 48 and p.pixel_size_a == pytest.approx(4.88)
    np.testing.assert_allclose(p.shifts_px[0], np.array([-8.149219, -6.120969]) / 4.88)
    assert p.ctf.cs_mm == 2.0
    assert sorted(set(p.extra["rlnRandomSubset"].tolist())) == [1, 2]
    assert load_images(p).shape == (10, 48, 48)
    orig = read_particles_star(shared_file("trpv1", "trpv1_small_stack.orig.star"))
    with pytest.raises(FileNotFoundError, match="batch_0_restacked.mrc"):
        load_images(orig)


@pytest.mark.parametrize("name", [("star", "relion31.star"), ("trpv1", "trpv1_small_stack.star")])
def test_real_file_round_trip(tmp_path, name):
    a = read_particles_star(shared_file(*name))
    write_particles_star(tmp_path / "out.star", a)
    b = read_particles_star(tmp_path / "out.star")
    _assert_same(a, b, names="resolved")


# ------------------------------------------------------------- synthetic round trips
def test_write_particles_round_trip_with_custom_columns(tmp_path):
    p = _particles()
    images = np.random.default_rng(1).normal(size=(6, 24, 24)).astype(np.float32)
    (tmp_path / "stacks").mkdir()
    new = write_particles(tmp_path / "stacks" / "p.mrcs", tmp_path / "p.star", images, p)
    assert new.image_names[0] == "000001@stacks/p.mrcs" and new.root == str(tmp_path)
    back = read_particles_star(tmp_path / "p.star")
    _assert_same(new, back)
    np.testing.assert_array_equal(load_images(back), images)
    np.testing.assert_array_equal(load_images(back, index=[5, 1]), images[[5, 1]])
    assert sorted(os.listdir(tmp_path)) == ["p.star", "stacks"]  # no temp files


def test_round_trip_without_poses_or_ctf(tmp_path):
    p = Particles(image_names=["1@a.mrcs", "2@a.mrcs"], pixel_size_a=1.5, box_px=32,
                  root=str(tmp_path))
    write_particles_star(tmp_path / "p.star", p)
    q = read_particles_star(tmp_path / "p.star")
    assert q.angles_deg is None and q.shifts_px is None and q.ctf is None and q.extra == {}
    assert q.image_names == p.image_names and q.box_px == 32


def test_emtable_custom_column_names_survive(tmp_path):
    write_particles_star(tmp_path / "p.star", _particles())
    cols = read_star_blocks(tmp_path / "p.star")["particles"]
    assert {"deepalignRegion1", "deepalignRegionProb1", "deepalignScore"} <= set(cols)


def test_write_rejects_bad_extra(tmp_path):
    p = _particles()
    p.extra["bad-name"] = np.zeros(len(p))
    with pytest.raises(ValueError, match="'bad-name'.*identifier"):
        write_particles_star(tmp_path / "p.star", p)
    p = _particles()
    p.extra["rlnMicrographName"][1] = "two words"
    with pytest.raises(ValueError, match="'rlnMicrographName': text values"):
        write_particles_star(tmp_path / "p.star", p)
    p = _particles()
    p.extra["deepalignScore"] = np.zeros(2)
    with pytest.raises(ValueError, match="extra column 'deepalignScore' has shape"):
        write_particles_star(tmp_path / "p.star", p)
    assert not os.listdir(tmp_path)


def test_write_particles_rejects_count_mismatch(tmp_path):
    with pytest.raises(ValueError, match="5 images but 6 particles"):
        write_particles(tmp_path / "s.mrcs", tmp_path / "s.star", np.zeros((5, 24, 24)),
                        _particles())


def test_load_images_index_out_of_range(tmp_path):
    p = write_particles(tmp_path / "s.mrcs", tmp_path / "s.star", np.zeros((6, 24, 24)),
                        _particles())
    p.image_names[2] = "7@s.mrcs"
    with pytest.raises(ValueError, match=r"s\.mrcs: image index 7 out of range.*6 images"):
        load_images(p)


def test_load_images_box_mismatch(tmp_path):
    p = write_particles(tmp_path / "s.mrcs", tmp_path / "s.star", np.zeros((6, 24, 24)),
                        _particles())
    p.box_px = 32
    with pytest.raises(ValueError, match="images are 24 px but the particles say box_px=32"):
        load_images(p)


# ------------------------------------------------------------- optics groups
OPTICS_TWO = """
data_optics

loop_
_rlnOpticsGroup
_rlnImagePixelSize
_rlnImageSize
_rlnVoltage
_rlnSphericalAberration
_rlnAmplitudeContrast
1 1.5 64 300 2.7 0.1
2 1.5 {box} 200 2.7 0.1

data_particles

loop_
_rlnImageName
_rlnOpticsGroup
_rlnDefocusU
_rlnOriginXAngst
_rlnOriginYAngst
1@a.mrcs 1 10000 1.5 0
2@a.mrcs {group} 12000 0 3.0
"""


def test_optics_groups_differing_voltage_give_each_particle_its_own(tmp_path):
    (tmp_path / "p.star").write_text(OPTICS_TWO.format(box=64, group=2))
    p = read_particles_star(tmp_path / "p.star")
    np.testing.assert_array_equal(p.ctf.voltage_kv, [300.0, 200.0])
    assert p.ctf.cs_mm == 2.7 and p.ctf.amplitude_contrast == 0.1  # shared: one float
    assert p.box_px == 64
    np.testing.assert_allclose(p.shifts_px, [[1, 0], [0, 2]])
    np.testing.assert_allclose(p.ctf.defocus_v_a, p.ctf.defocus_u_a)
    np.testing.assert_array_equal(p.ctf.subset([1]).voltage_kv, [200.0])


def test_optics_groups_round_trip_keeps_both_groups(tmp_path):
    (tmp_path / "p.star").write_text(OPTICS_TWO.format(box=64, group=2))
    p = read_particles_star(tmp_path / "p.star")
    write_particles_star(tmp_path / "q.star", p)
    optics = read_star_blocks(tmp_path / "q.star")["optics"]
    np.testing.assert_array_equal(np.asarray(optics["rlnOpticsGroup"], int), [1, 2])
    np.testing.assert_allclose(np.asarray(optics["rlnVoltage"], float), [300.0, 200.0])
    q = read_particles_star(tmp_path / "q.star")
    np.testing.assert_array_equal(q.optics_group, [1, 2])
    np.testing.assert_array_equal(q.ctf.voltage_kv, [300.0, 200.0])
    np.testing.assert_allclose(q.shifts_px, p.shifts_px)


def test_particles_without_optics_table_get_one_group_per_voltage(tmp_path):
    p = _particles(n=4)
    p.ctf.voltage_kv = np.array([300.0, 200.0, 300.0, 200.0])
    write_particles_star(tmp_path / "p.star", p)
    q = read_particles_star(tmp_path / "p.star")
    np.testing.assert_array_equal(q.optics_group, [2, 1, 2, 1])
    np.testing.assert_array_equal(q.ctf.voltage_kv, p.ctf.voltage_kv)


def test_one_group_with_two_voltages_refused_on_writing(tmp_path):
    (tmp_path / "p.star").write_text(OPTICS_TWO.format(box=64, group=1))
    p = read_particles_star(tmp_path / "p.star")
    p.ctf.voltage_kv = np.array([300.0, 200.0])
    with pytest.raises(ValueError, match="particles of optics group 1 differ in rlnVoltage"):
        write_particles_star(tmp_path / "q.star", p)


def test_optics_groups_with_different_pixel_sizes_refused_naming_the_groups(tmp_path):
    text = OPTICS_TWO.format(box=64, group=2).replace("2 1.5 64 200", "2 1.2 64 200")
    (tmp_path / "p.star").write_text(text)
    with pytest.raises(ValueError, match=r"optics groups differ in rlnImagePixelSize "
                                         r"\(group 1: 1.5, group 2: 1.2\)"):
        read_particles_star(tmp_path / "p.star")


def test_optics_groups_different_box_refused(tmp_path):
    (tmp_path / "p.star").write_text(OPTICS_TWO.format(box=96, group=2))
    with pytest.raises(ValueError, match="optics groups differ in rlnImageSize"):
        read_particles_star(tmp_path / "p.star")
    # only the groups actually used count
    (tmp_path / "p.star").write_text(OPTICS_TWO.format(box=96, group=1))
    assert read_particles_star(tmp_path / "p.star").box_px == 64


def test_undefined_optics_group_refused(tmp_path):
    (tmp_path / "p.star").write_text(OPTICS_TWO.format(box=64, group=3))
    with pytest.raises(ValueError, match=r"optics groups \[3\]"):
        read_particles_star(tmp_path / "p.star")


def test_explicit_pixel_size_overrides_with_warning(tmp_path):
    (tmp_path / "p.star").write_text(OPTICS_TWO.format(box=64, group=1))
    with pytest.warns(UserWarning, match="replaced by pixel_size_a=3.0"):
        p = read_particles_star(tmp_path / "p.star", pixel_size_a=3.0)
    np.testing.assert_allclose(p.shifts_px[0], [0.5, 0])


def test_missing_and_non_star_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.star"):
        read_particles_star(tmp_path / "nothere.star")
    (tmp_path / "x.star").write_text("hello\n")
    with pytest.raises(ValueError, match="x.star: not a STAR file"):
        read_particles_star(tmp_path / "x.star")


def test_repeated_blocks_refused_naming_the_block(tmp_path):
    write_particles_star(tmp_path / "p.star", _particles())
    text = (tmp_path / "p.star").read_text()
    (tmp_path / "joined.star").write_text(text + text)  # optics, particles, optics, particles
    with pytest.raises(ValueError, match=r"joined.star: block data_optics appears 2 times"):
        read_particles_star(tmp_path / "joined.star")


def test_file_that_is_not_text_names_itself(tmp_path):
    (tmp_path / "binary.star").write_bytes(b"data_\nloop_\n\xff\xfe\x00\x81 stack\n")
    with pytest.raises(ValueError, match=r"binary.star: not a STAR file \(not .*text: byte 0x"):
        read_particles_star(tmp_path / "binary.star")


def test_partial_angles_stay_extra(tmp_path):
    (tmp_path / "p.star").write_text(
        "data_\nloop_\n_rlnImageName\n_rlnAnglePsi\n1@a.mrcs 12.5\n2@a.mrcs -3\n")
    p = read_particles_star(tmp_path / "p.star", pixel_size_a=1.0, box_px=16)
    assert p.angles_deg is None and p.shifts_px is None
    np.testing.assert_allclose(p.extra["rlnAnglePsi"], [12.5, -3.0])


# ------------------------------------------------------------- regions
def test_regions_round_trip(tmp_path):
    centres = np.array([[0.0, 0.0], [90.0, 45.5], [-120.25, 135.0]])
    write_regions_star(tmp_path / "regions.star", centres, symmetry="c4", spacing_deg=30)
    back, sym, spacing = read_regions_star(tmp_path / "regions.star")
    np.testing.assert_allclose(back, centres)
    assert sym == "c4" and spacing == 30.0


def test_regions_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"centres_deg must have shape \(R, 2\)"):
        write_regions_star(tmp_path / "r.star", np.zeros((3, 3)), symmetry="c1", spacing_deg=10)
    write_particles_star(tmp_path / "p.star", _particles())
    with pytest.raises(ValueError, match="not a regions file"):
        read_regions_star(tmp_path / "p.star")
