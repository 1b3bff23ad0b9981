"""convert: Scipion ALIGN_PROJ matrices <-> core poses, checked against pwem's own Euler code."""
import importlib.util

import numpy as np
import pytest

from scipion_deepalign.convert import (
    ctf_from_particles,
    matrix_to_pose,
    pose_to_matrix,
    read_set_poses,
    set_particle_pose,
    set_to_core,
)
from scipion_deepalign.core.geometry import euler_to_matrix, random_angles_deg
from scipion_deepalign.core.particles import CTFParams, Particles

N_POSES = 250

#: the tests that build Scipion objects; the pure conversions run without pwem
needs_pwem = pytest.mark.skipif(importlib.util.find_spec("pwem") is None,
                                reason="needs pwem (Scipion)")


@pytest.fixture(scope="module")
def poses():
    rng = np.random.default_rng(7)
    angles = random_angles_deg(N_POSES, rng)
    shifts = rng.uniform(-8.0, 8.0, (N_POSES, 2))
    return angles, shifts


def _assert_same_rotation(angles_a, angles_b, *, atol=1e-9):
    # Euler triplets are not unique (poles): compare the rotations they describe
    np.testing.assert_allclose(euler_to_matrix(angles_a), euler_to_matrix(angles_b), atol=atol)


def test_round_trip_many_random_poses(poses):
    angles, shifts = poses
    back_angles, back_shifts = matrix_to_pose(pose_to_matrix(angles, shifts))
    _assert_same_rotation(back_angles, angles)
    np.testing.assert_allclose(back_shifts, shifts, atol=1e-9)


def test_rotation_block_is_transpose_of_xmipp_euler_matrix(poses):
    emlib = pytest.importorskip("pwem.emlib")
    angles, shifts = poses
    matrices = pose_to_matrix(angles, shifts)
    for a, m in zip(angles, matrices):
        xmipp = np.array(emlib.Euler_angles2matrix(*a))
        np.testing.assert_allclose(m[:3, :3], xmipp.T, atol=1e-12)


def test_matches_scipion_inverse_transform_recipe(poses):
    """Independent oracle: the Xmipp/RELION plugins' inverse-transform construction with
    pwem.convert.transformations (negated angles, static ZYZ, translation -shift, inverted)."""
    tfs = pytest.importorskip("pwem.convert.transformations")
    angles, shifts = poses
    ours = pose_to_matrix(angles, shifts)
    for a, s, m in zip(angles, shifts, ours):
        forward = tfs.euler_matrix(*(-np.deg2rad(a)), axes="szyz")
        forward[:3, 3] = -np.array([s[0], s[1], 0.0])
        np.testing.assert_allclose(m, np.linalg.inv(forward), atol=1e-10)
        # and back: pwem's euler_from_matrix of the inverse gives the same rotation
        inv = np.linalg.inv(m)
        back = -np.rad2deg(tfs.euler_from_matrix(inv, axes="szyz"))
        _assert_same_rotation(back, a)
        np.testing.assert_allclose(-tfs.translation_from_matrix(inv)[:2], s, atol=1e-10)


def test_xmipp_matrix_to_angles_agrees(poses):
    emlib = pytest.importorskip("pwem.emlib")
    angles, shifts = poses
    back_angles, _ = matrix_to_pose(pose_to_matrix(angles[:50], shifts[:50]))
    for a, b in zip(angles[:50], back_angles):
        xa = np.array(emlib.Euler_matrix2angles(np.array(emlib.Euler_angles2matrix(*a))))
        _assert_same_rotation(xa, b)


def test_pure_shift_by_hand():
    m = pose_to_matrix([0.0, 0.0, 0.0], [3.0, -2.0])
    expected = np.eye(4)
    expected[:3, 3] = [3.0, -2.0, 0.0]
    np.testing.assert_allclose(m, expected, atol=1e-12)


def test_pure_rotation_by_hand():
    # rot = 90: passive A = Rz(90) = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]; Scipion stores A.T
    m = pose_to_matrix([90.0, 0.0, 0.0], [0.0, 0.0])
    expected = np.eye(4)
    expected[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_allclose(m, expected, atol=1e-12)
    # tilt = 90 about y: A = [[0, 0, -1], [0, 1, 0], [1, 0, 0]], projection direction +x
    m = pose_to_matrix([0.0, 90.0, 0.0], [0.0, 0.0])
    np.testing.assert_allclose(m[:3, :3], [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-12)


def test_rotation_and_shift_by_hand():
    # the translation is the shift rotated back to the map frame: A.T @ (1, 0, 0) = (0, 1, 0)
    m = pose_to_matrix([90.0, 0.0, 0.0], [1.0, 0.0])
    np.testing.assert_allclose(m[:3, 3], [0.0, 1.0, 0.0], atol=1e-12)
    angles, shifts = matrix_to_pose(m)
    _assert_same_rotation(angles, [90.0, 0.0, 0.0])  # returned as (0, 0, 90) at the pole
    np.testing.assert_allclose(shifts, [1.0, 0.0], atol=1e-12)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="shifts_px"):
        pose_to_matrix([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="matrix"):
        matrix_to_pose(np.eye(3))


# --------------------------------------------------------------------- Scipion sets
def _truth(n=12, box=24, seed=3):
    rng = np.random.default_rng(seed)
    ctf = CTFParams(defocus_u_a=rng.uniform(8000, 20000, n),
                    defocus_v_a=rng.uniform(8000, 20000, n),
                    defocus_angle_deg=rng.uniform(0, 180, n), voltage_kv=200.0, cs_mm=2.0,
                    amplitude_contrast=0.07)
    return Particles(image_names=[f"{i + 1:06d}@x.mrcs" for i in range(n)], pixel_size_a=2.5,
                     box_px=box, angles_deg=random_angles_deg(n, rng),
                     shifts_px=rng.uniform(-3, 3, (n, 2)), ctf=ctf)


def _write_set(tmp_path, truth, *, with_poses=True):
    import mrcfile
    from pwem.objects import SetOfParticles

    from scipion_deepalign.tests.scipion_helpers import write_particles_sqlite

    rng = np.random.default_rng(0)
    images = rng.normal(size=(len(truth), truth.box_px, truth.box_px)).astype(np.float32)
    stack = tmp_path / "stack.mrcs"
    with mrcfile.new(stack) as mrc:
        mrc.set_data(images)
    sqlite = str(tmp_path / "parts.sqlite")
    write_particles_sqlite(sqlite, str(stack), truth, with_poses=with_poses)
    parts = SetOfParticles(filename=sqlite)
    parts.loadAllProperties()
    return parts, images


@needs_pwem
def test_set_poses_round_trip_through_sqlite(tmp_path):
    truth = _truth()
    parts, _ = _write_set(tmp_path, truth)
    ids, angles, shifts = read_set_poses(parts)
    np.testing.assert_array_equal(ids, np.arange(1, len(truth) + 1))
    _assert_same_rotation(angles, truth.angles_deg, atol=1e-6)
    np.testing.assert_allclose(shifts, truth.shifts_px, atol=1e-6)


@needs_pwem
def test_set_particle_pose_writes_inverse_transform():
    from pwem.objects import Particle

    p = Particle()
    set_particle_pose(p, [10.0, 20.0, 30.0], [1.5, -0.5])
    np.testing.assert_allclose(p.getTransform().getMatrix(),
                               pose_to_matrix([10.0, 20.0, 30.0], [1.5, -0.5]))


@needs_pwem
def test_read_set_poses_needs_projection_alignment(tmp_path):
    parts, _ = _write_set(tmp_path, _truth(), with_poses=False)
    with pytest.raises(ValueError, match="projection alignment"):
        read_set_poses(parts)


@needs_pwem
def test_ctf_from_particles(tmp_path):
    truth = _truth()
    parts, _ = _write_set(tmp_path, truth)
    ctf = ctf_from_particles(parts.iterItems(), parts.getAcquisition())
    np.testing.assert_allclose(ctf.defocus_u_a, truth.ctf.defocus_u_a)
    np.testing.assert_allclose(ctf.defocus_v_a, truth.ctf.defocus_v_a)
    np.testing.assert_allclose(ctf.defocus_angle_deg, truth.ctf.defocus_angle_deg)
    assert (ctf.voltage_kv, ctf.cs_mm, ctf.amplitude_contrast) == (200.0, 2.0, 0.07)


@needs_pwem
def test_set_to_core_writes_stack_and_star(tmp_path):
    pytest.importorskip("scipion_deepalign.core.io.images")
    from scipion_deepalign.core.io import load_images, read_particles_star

    truth = _truth()
    parts, images = _write_set(tmp_path, truth)
    out = tmp_path / "core"
    written = set_to_core(parts, str(out))
    assert len(written) == len(truth)
    back = read_particles_star(out / "particles.star")
    np.testing.assert_allclose(back.pixel_size_a, 2.5)
    assert back.box_px == truth.box_px
    _assert_same_rotation(back.angles_deg, truth.angles_deg, atol=1e-5)
    np.testing.assert_allclose(back.shifts_px, truth.shifts_px, atol=1e-4)
    np.testing.assert_allclose(back.ctf.defocus_u_a, truth.ctf.defocus_u_a, rtol=1e-6)
    np.testing.assert_array_equal(back.extra["deepalignItemId"].astype(int),
                                  np.arange(1, len(truth) + 1))
    np.testing.assert_allclose(load_images(back), images, atol=1e-6)


@needs_pwem
def test_set_to_core_copies_the_images_a_chunk_at_a_time(tmp_path, monkeypatch):
    import scipion_deepalign.convert as convert
    import scipion_deepalign.core.io.images as images_module
    from scipion_deepalign.core.io import load_images, read_particles_star

    truth = _truth()
    parts, images = _write_set(tmp_path, truth)
    monkeypatch.setattr(images_module, "READ_CHUNK_BYTES", 3 * 4 * truth.box_px ** 2)
    reads = []
    real = convert._read_locations
    monkeypatch.setattr(convert, "_read_locations",
                        lambda locations: reads.append(len(locations)) or real(locations))
    set_to_core(parts, str(tmp_path / "core"))
    assert max(reads) == 3 and sum(reads) == len(truth) + 1  # + the first image, for the box
    back = read_particles_star(tmp_path / "core" / "particles.star")
    np.testing.assert_allclose(load_images(back), images, atol=1e-6)


@needs_pwem
def test_set_to_core_rejects_empty_set(tmp_path):
    from pwem.objects import SetOfParticles

    empty = SetOfParticles(filename=str(tmp_path / "empty.sqlite"))
    empty.setSamplingRate(1.0)
    with pytest.raises(ValueError, match="empty"):
        set_to_core(empty, str(tmp_path / "out"))


@needs_pwem
def test_set_to_core_copies_named_attributes(tmp_path):
    from pwem.objects import Integer

    from scipion_deepalign.core.io import read_particles_star

    truth = _truth(n=5)
    parts, _ = _write_set(tmp_path, truth)
    items = []
    for p in parts.iterItems():
        p = p.clone()
        p._deepalign_region1 = Integer(10 + p.getObjId())
        items.append(p)
    parts.close()
    from pwem.objects import SetOfParticles

    hinted = SetOfParticles(filename=str(tmp_path / "hinted.sqlite"))
    hinted.setSamplingRate(truth.pixel_size_a)
    for p in items:
        hinted.append(p)
    hinted.write()
    set_to_core(hinted, str(tmp_path / "core"),
                extra_attributes={"_deepalign_region1": "deepalignRegion1"})
    back = read_particles_star(tmp_path / "core" / "particles.star")
    np.testing.assert_array_equal(back.extra["deepalignRegion1"].astype(int), 10 + np.arange(1, 6))
    with pytest.raises(ValueError, match="lack attribute _missing"):
        set_to_core(hinted, str(tmp_path / "core2"), extra_attributes={"_missing": "x"})


@needs_pwem
def test_volume_to_core(tmp_path):
    import mrcfile
    from pwem.objects import Volume

    from scipion_deepalign.convert import volume_to_core
    from scipion_deepalign.core.io import read_mrc

    data = np.random.default_rng(1).normal(size=(16, 16, 16)).astype(np.float32)
    path = tmp_path / "map.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
    vol = Volume(location=str(path) + ":mrc")
    vol.setSamplingRate(2.5)
    assert volume_to_core(vol, str(tmp_path / "ref.mrc")) == (16, 2.5)
    back, pixel = read_mrc(tmp_path / "ref.mrc")
    np.testing.assert_array_equal(back, data)
    assert pixel == pytest.approx(2.5)
    flat = tmp_path / "flat.mrc"
    with mrcfile.new(flat) as mrc:
        mrc.set_data(np.zeros((4, 16, 16), np.float32))
    bad = Volume(location=str(flat))
    bad.setSamplingRate(1.0)
    with pytest.raises(ValueError, match="must be a cube"):
        volume_to_core(bad, str(tmp_path / "bad.mrc"))


@needs_pwem
def test_read_set_images_mrc_and_spider(tmp_path):
    """MRC stacks are read with mrcfile, other formats through pwem's ImageHandler."""
    import mrcfile
    from pwem.objects import Particle, SetOfParticles


    data = np.random.default_rng(4).normal(size=(3, 8, 8)).astype(np.float32)
    with mrcfile.new(tmp_path / "a.mrcs") as mrc:
        mrc.set_data(data)
    emlib_image = pytest.importorskip("pwem.emlib.image")
    emlib_image.ImageHandler().convert(str(tmp_path / "a.mrcs"), str(tmp_path / "a.stk"))
    parts = SetOfParticles(filename=str(tmp_path / "mixed.sqlite"))
    for index, name in ((3, "a.stk"), (1, "a.mrcs"), (2, "a.mrcs:mrcs")):
        parts.append(Particle(location=(index, str(tmp_path / name))))
    np.testing.assert_allclose(_read_set_images(parts), data[[2, 0, 1]], atol=1e-6)


@needs_pwem
def test_ctf_from_particles_keeps_each_particles_acquisition():
    """Particles of two optics groups (300 and 200 kV acquisitions) keep their own."""
    from pwem.objects import Acquisition, CTFModel, Particle

    items = []
    for kv, cs in ((300.0, 2.7), (200.0, 2.0), (300.0, 2.7)):
        acq = Acquisition()
        acq.setVoltage(kv)
        acq.setSphericalAberration(cs)
        acq.setAmplitudeContrast(0.1)
        item = Particle()
        item.setAcquisition(acq)
        model = CTFModel()
        model.setStandardDefocus(15000.0, 14000.0, 10.0)
        item.setCTF(model)
        items.append(item)
    ctf = ctf_from_particles(items, items[0].getAcquisition())
    np.testing.assert_array_equal(ctf.voltage_kv, [300.0, 200.0, 300.0])
    np.testing.assert_array_equal(ctf.cs_mm, [2.7, 2.0, 2.7])
    assert ctf.amplitude_contrast == 0.1  # the same for all: one float


@needs_pwem
def test_set_images_go_through_the_validated_reader(tmp_path):
    """A broken stack gets core.io.mrc's message naming the file, not a raw mrcfile error."""
    from pwem.objects import Particle, SetOfParticles

    from scipion_deepalign.core.io import write_mrc

    write_mrc(tmp_path / "a.mrcs", np.zeros((3, 8, 8), np.float32), pixel_size_a=1.0)
    with open(tmp_path / "a.mrcs", "r+b") as f:
        f.truncate(1024 + 8 * 8 * 4)  # header plus one image of three
    parts = SetOfParticles(filename=str(tmp_path / "broken.sqlite"))
    parts.append(Particle(location=(2, str(tmp_path / "a.mrcs"))))
    with pytest.raises(ValueError, match="a.mrcs: not a readable MRC file"):
        _read_set_images(parts)


def _read_set_images(parts):
    """What set_to_core reads: the images at the set's locations, in iteration order."""
    from scipion_deepalign import convert

    return convert._read_locations([p.getLocation() for p in parts])


def test_poses_at_sampling_rescales_shifts_to_the_set():
    from scipion_deepalign.convert import poses_at_sampling
    from scipion_deepalign.core.particles import Particles

    star = Particles(image_names=["1@a.mrcs", "2@a.mrcs"], pixel_size_a=2.0, box_px=16,
                     angles_deg=np.zeros((2, 3)), shifts_px=np.array([[1.0, -2.0], [0, 0.5]]))
    angles, shifts = poses_at_sampling(star, 1.0)  # the set at 1 A/px: twice the pixels
    np.testing.assert_allclose(shifts, [[2.0, -4.0], [0, 1.0]])
    star.shifts_px = None
    np.testing.assert_allclose(poses_at_sampling(star, 1.0)[1], np.zeros((2, 2)))
    star.angles_deg = None
    with pytest.raises(ValueError, match="no angles"):
        poses_at_sampling(star, 1.0)
