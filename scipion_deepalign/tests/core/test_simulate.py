"""Phantom and particle simulator: determinism, truthful metadata, SNR, (a)symmetry."""
import numpy as np
import pytest
from scipy import ndimage

from scipion_deepalign.core.ctf import apply_ctf, ctf_images
from scipion_deepalign.core.imageops import circular_mask, translate_images
from scipion_deepalign.core.projection import project
from scipion_deepalign.core.simulate import (
    clean_particle_images,
    make_phantom,
    signal_mask_radius_px,
    simulate_particles,
)

BOX = 32


def _ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _axis_rotation(axis, angle_deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = np.deg2rad(angle_deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def _transformed(vol, s):
    """W(r) = V(S r), r = (x, y, z) from the centre, volume indexed [z, y, x]."""
    box = vol.shape[0]
    g = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    r = s @ np.stack([xx.ravel(), yy.ravel(), zz.ravel()])
    c = box // 2
    out = ndimage.map_coordinates(vol, [r[2] + c, r[1] + c, r[0] + c], order=1)
    return out.reshape(vol.shape)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(BOX)


def test_phantom_shape_positive_deterministic(phantom):
    assert phantom.shape == (BOX, BOX, BOX) and phantom.dtype == np.float32
    assert phantom.min() >= 0 and phantom.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(make_phantom(BOX), phantom)
    assert _ncc(make_phantom(BOX, seed=1), phantom) < 0.9
    # compact: density within ~0.35 box of the centre
    assert signal_mask_radius_px(phantom) <= 0.35 * BOX + 2


@pytest.mark.parametrize("axis,angle", [((0, 0, 1), 90), ((1, 0, 0), 180), ((1, 1, 1), 120),
                                        ((0, 1, 0), 180), ((0, 0, 1), 180)])
def test_phantom_is_asymmetric(phantom, axis, angle):
    assert _ncc(_transformed(phantom, _axis_rotation(axis, angle)), phantom) < 0.85


@pytest.mark.parametrize("symmetry", ["c4", "d2", "t"])
def test_symmetric_phantom_is_invariant_under_its_group(symmetry):
    sym = pytest.importorskip("scipion_deepalign.core.symmetry")
    vol = make_phantom(BOX, symmetry=symmetry)
    ops = sym.symmetry_matrices(symmetry)
    for s in ops[1:]:
        assert _ncc(_transformed(vol, s), vol) > 0.99
    # but not under a rotation outside the group
    assert _ncc(_transformed(vol, _axis_rotation((0.3, 0.5, 0.8), 37)), vol) < 0.9


def test_simulation_shapes_names_and_determinism(phantom):
    imgs, parts = simulate_particles(phantom, 6, pixel_size_a=3.0, max_shift_px=3.0, seed=4)
    assert imgs.shape == (6, BOX, BOX) and imgs.dtype == np.float32
    assert parts.image_names[0] == "000001@particles.mrcs"
    assert parts.image_names[-1] == "000006@particles.mrcs"
    assert parts.box_px == BOX and parts.pixel_size_a == 3.0
    assert parts.angles_deg.shape == (6, 3) and parts.shifts_px.shape == (6, 2)
    assert len(parts.ctf) == 6
    again, parts2 = simulate_particles(phantom, 6, pixel_size_a=3.0, max_shift_px=3.0, seed=4)
    np.testing.assert_array_equal(again, imgs)
    np.testing.assert_array_equal(parts2.angles_deg, parts.angles_deg)
    other, _ = simulate_particles(phantom, 6, pixel_size_a=3.0, max_shift_px=3.0, seed=5)
    assert not np.allclose(other, imgs)


def test_simulation_parameter_ranges(phantom):
    _, parts = simulate_particles(phantom, 200, pixel_size_a=3.0, max_shift_px=4.0, seed=1,
                                  defocus_range_a=(12000, 20000), snr=np.inf)
    radius = np.linalg.norm(parts.shifts_px, axis=1)
    assert radius.max() <= 4.0 and radius.max() > 3.5
    mean_df = (parts.ctf.defocus_u_a + parts.ctf.defocus_v_a) / 2
    assert mean_df.min() >= 12000 and mean_df.max() <= 20000
    assert parts.ctf.voltage_kv == 300.0 and parts.ctf.cs_mm == 2.7
    assert parts.ctf.amplitude_contrast == 0.1
    # uniform directions: mean of cos(tilt) near 0, psi spread over the circle
    assert abs(np.cos(np.deg2rad(parts.angles_deg[:, 1])).mean()) < 0.15
    assert np.ptp(parts.angles_deg[:, 2]) > 300


def test_measured_snr_matches_request(phantom):
    imgs, parts = simulate_particles(phantom, 40, pixel_size_a=3.0, snr=0.2, max_shift_px=2.0,
                                     seed=2)
    clean = clean_particle_images(phantom, parts)
    noise = imgs - clean
    mask = circular_mask(BOX, signal_mask_radius_px(phantom))
    snr = clean[:, mask].var() / noise.var()
    assert snr == pytest.approx(0.2, rel=0.1)
    assert abs(noise.mean()) < 0.05 * noise.std()


def test_recorded_metadata_reproduce_each_particle(phantom):
    imgs, parts = simulate_particles(phantom, 5, pixel_size_a=2.5, snr=np.inf,
                                     max_shift_px=3.0, seed=7)
    i = 3
    one = parts.subset([i])
    proj = project(phantom, one.angles_deg)
    expected = translate_images(apply_ctf(proj, ctf_images(BOX, 2.5, one.ctf)), -one.shifts_px)
    np.testing.assert_allclose(imgs[i], expected[0], atol=1e-5 * np.abs(expected).max())


def test_shift_recorded_with_relion_sign(phantom):
    imgs, parts = simulate_particles(phantom, 3, pixel_size_a=3.0, snr=np.inf, ctf=False,
                                     max_shift_px=4.0, seed=3)
    centred = translate_images(imgs, parts.shifts_px)  # +origin centres a particle
    proj = project(phantom, parts.angles_deg)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(centred[inner], proj[inner], atol=1e-3 * proj.max())
    assert parts.ctf is None


def test_given_angles_are_used(phantom):
    angles = np.array([[10.0, 20.0, 30.0], [-40.0, 150.0, 60.0]])
    imgs, parts = simulate_particles(phantom, 2, pixel_size_a=3.0, snr=np.inf, ctf=False,
                                     angles_deg=angles)
    np.testing.assert_array_equal(parts.angles_deg, angles)
    np.testing.assert_allclose(imgs, project(phantom, angles), atol=1e-5)


def test_bad_arguments_are_named(phantom):
    with pytest.raises(ValueError, match="angles_deg"):
        simulate_particles(phantom, 3, pixel_size_a=1.0, angles_deg=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="snr"):
        simulate_particles(phantom, 3, pixel_size_a=1.0, snr=0.0)
    with pytest.raises(ValueError, match="box_px"):
        make_phantom(8)
