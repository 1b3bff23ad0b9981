"""The Fourier-slice projector against the real-space reference, hand-checked poses and the
downsampling rule."""
import numpy as np
import pytest

from scipion_deepalign.core.geometry import random_angles_deg
from scipion_deepalign.core.imageops import rotate_images, translate_images
from scipion_deepalign.core.projection import VolumeSpectrum, downsampled_geometry, project
from scipion_deepalign.core.simulate import make_phantom
from scipion_deepalign.tests.reference_projector import reference_project
from scipion_deepalign.tests.shared_data import shared_file


def _ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(32)


@pytest.mark.parametrize("box", [32, 33])
def test_matches_reference_projector_on_phantom(box):
    vol = make_phantom(box, seed=3)
    angles = random_angles_deg(4, 11)
    fast = project(vol, angles)
    ref = reference_project(vol, angles)
    assert fast.shape == (4, box, box) and fast.dtype == np.float32
    for f, r in zip(fast, ref):
        assert _ncc(f, r) > 0.999
        assert f.sum() == pytest.approx(r.sum(), rel=0.02)  # same units: sums over voxels


def test_matches_reference_projector_on_ribosome():
    mrcfile = pytest.importorskip("mrcfile")
    with mrcfile.open(shared_file("clean70SRibosome_vol_65p.mrc")) as m:
        vol = m.data.astype(np.float32)
    angles = np.array([[355.86, 72.2, 240.69], [63.76, 92.7, 303.8]])
    for f, r in zip(project(vol, angles), reference_project(vol, angles)):
        assert _ncc(f, r) > 0.999


def test_zero_pose_is_sum_along_z(phantom):
    out = project(phantom, [0.0, 0.0, 0.0])[0]
    assert _ncc(out, phantom.sum(axis=0)) > 0.999


def test_tilt_90_looks_along_x(phantom):
    # A(0, 90, 0) = Ry(90): image x = -map z, image y = map y; beam along map x
    out = project(phantom, [0.0, 90.0, 0.0])[0]
    side = phantom.sum(axis=2)  # [z, y]
    c = 16
    expected = np.zeros_like(out)
    for xi in range(-c + 1, c):
        expected[:, c + xi] = side[c - xi, :]
    assert _ncc(out[:, 1:], expected[:, 1:]) > 0.999


def test_psi_is_an_in_plane_rotation(phantom):
    angles = np.array([[30.0, 60.0, 10.0], [100.0, 20.0, -50.0]])
    alpha = np.array([25.0, -70.0])
    rotated = rotate_images(project(phantom, angles), alpha)
    direct = project(phantom, angles + np.c_[0 * alpha, 0 * alpha, alpha])
    wrong_way = project(phantom, angles - np.c_[0 * alpha, 0 * alpha, alpha])
    for r, d, w in zip(rotated, direct, wrong_way):
        assert _ncc(r, d) > 0.999
        assert _ncc(r, w) < 0.95


def test_shifts_are_minus_translations(phantom):
    angles = random_angles_deg(3, 5)
    shifts = np.array([[2.5, -1.0], [0.0, 3.25], [-4.0, -2.0]])
    shifted = project(phantom, angles, shifts_px=shifts)
    expected = translate_images(project(phantom, angles), -shifts)
    # same up to how a sub-pixel shift is interpolated (padded vs box-periodic spectrum)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(shifted[inner], expected[inner], atol=2e-3 * np.abs(expected).max())
    assert all(_ncc(a, b) > 0.9999 for a, b in zip(shifted, expected))


def test_batch_size_and_reused_spectrum_do_not_change_results(phantom):
    angles = random_angles_deg(7, 2)
    full = project(phantom, angles)
    np.testing.assert_allclose(project(phantom, angles, batch_size=2), full, atol=1e-6)
    np.testing.assert_allclose(project(VolumeSpectrum(phantom), angles), full, atol=1e-6)


def test_bad_inputs_name_the_parameter(phantom):
    with pytest.raises(ValueError, match="angles_deg"):
        project(phantom, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shifts_px"):
        project(phantom, np.zeros((3, 3)), shifts_px=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="cubic"):
        project(np.zeros((8, 8, 6)), np.zeros((1, 3)))


@pytest.mark.parametrize("box,pixel,target,expected", [
    (64, 1.0, 4.0, (32, 2.0)),
    (64, 1.0, 2.0, (64, 1.0)),
    (64, 1.0, 100.0, (2, 32.0)),
    (100, 1.0, 7.0, (30, 100 / 30)),
    (65, 5.0, 10.0, (64, 5.0 * 65 / 64)),
])
def test_downsampled_geometry(box, pixel, target, expected):
    new_box, new_pixel = downsampled_geometry(box, pixel, target)
    assert new_box == expected[0] and new_box % 2 == 0
    assert new_pixel == pytest.approx(expected[1])
    assert new_pixel >= pixel


def test_downsampled_geometry_reaches_target_when_possible():
    for target in np.linspace(2.0, 30.0, 57):
        new_box, new_pixel = downsampled_geometry(128, 1.0, target)
        assert 2 * new_pixel <= target + 1e-9


def test_downsampled_geometry_refuses_beyond_nyquist():
    with pytest.raises(ValueError, match=r"target_resolution_a.*Nyquist of 1.5 Å pixels is 3.0 Å"):
        downsampled_geometry(64, 1.5, 2.9)
