"""FSC identities and known crossings."""
import numpy as np
import pytest

from scipion_deepalign.core.judge.fsc import fsc_curve, resolution_at_threshold, soft_sphere_mask


def _noise(box, seed):
    return np.random.default_rng(seed).standard_normal((box,) * 3).astype(np.float32)


def _radius(box):
    k = np.fft.fftfreq(box) * box
    return np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)


def test_map_with_itself_is_one():
    vol = _noise(24, 0)
    res = fsc_curve(vol, vol, pixel_size_a=2.0)
    assert res.fsc.shape == (13,)
    np.testing.assert_allclose(res.fsc, 1.0, atol=1e-9)
    assert res.resolution_0143_a == pytest.approx(4.0)  # never crosses: Nyquist
    np.testing.assert_allclose(res.frequency_inv_a, np.arange(13) / (24 * 2.0))


def test_independent_noise_is_near_zero():
    box = 32
    res = fsc_curve(_noise(box, 1), _noise(box, 2), pixel_size_a=1.0)
    shells = slice(2, None)
    assert np.all(np.abs(res.fsc[shells]) < 4.0 / np.sqrt(res.shell_counts[shells]))
    # the shell counts are those of the full transform
    full = np.bincount(np.rint(_radius(box)).astype(int).ravel())[:box // 2 + 1]
    np.testing.assert_array_equal(res.shell_counts, full)


def test_matches_full_transform_formula():
    box = 20
    a, b = _noise(box, 3), _noise(box, 3) + 0.5 * _noise(box, 4)
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    shell = np.rint(_radius(box)).astype(int).ravel()
    keep = shell <= box // 2
    num = np.bincount(shell[keep], np.real(fa.ravel() * np.conj(fb.ravel()))[keep])
    den = np.sqrt(np.bincount(shell[keep], np.abs(fa.ravel()[keep]) ** 2)
                  * np.bincount(shell[keep], np.abs(fb.ravel()[keep]) ** 2))
    np.testing.assert_allclose(fsc_curve(a, b, pixel_size_a=1.0).fsc, num / den, atol=1e-10)


@pytest.mark.parametrize("cut_shell", [6, 10])
def test_noise_beyond_cutoff_crosses_at_cutoff(cut_shell):
    box, pixel = 40, 1.5
    signal = _noise(box, 5)
    hp = (_radius(box) > cut_shell + 0.5)
    noise = np.real(np.fft.ifftn(np.fft.fftn(_noise(box, 6)) * hp)) * 20
    res = fsc_curve(signal, signal + noise, pixel_size_a=pixel)
    assert np.all(res.fsc[1:cut_shell] > 0.99)
    assert np.all(res.fsc[cut_shell + 2:] < 0.143)
    cut_res_a = box * pixel / cut_shell
    next_res_a = box * pixel / (cut_shell + 1)
    for r in (res.resolution_05_a, res.resolution_0143_a):
        assert next_res_a <= r <= cut_res_a


def test_mask_keeps_identity_and_masks_outside():
    box = 24
    vol = _noise(box, 7)
    other = vol.copy()
    mask = soft_sphere_mask(box, 6, soft_edge_px=2)
    other[mask == 0] += 100 * _noise(box, 8)[mask == 0]
    res = fsc_curve(vol, other, pixel_size_a=1.0, mask_radius_a=6.0, soft_edge_px=2)
    np.testing.assert_allclose(res.fsc[1:], 1.0, atol=1e-9)
    unmasked = fsc_curve(vol, other, pixel_size_a=1.0)
    assert unmasked.fsc[5:].max() < 0.5


def test_interpolated_crossing():
    freq = np.array([0.0, 0.1, 0.2, 0.3])
    curve = np.array([1.0, 0.9, 0.3, 0.1])
    # 0.5 is crossed 2/3 of the way from 0.1 to 0.2
    assert resolution_at_threshold(freq, curve, 0.5, pixel_size_a=1.0) == pytest.approx(
        1.0 / (0.1 + 0.1 * 0.4 / 0.6))
    # already below at shell 1: the box size
    assert resolution_at_threshold(freq, curve, 0.95, pixel_size_a=1.0) == pytest.approx(10.0)


def test_different_shapes_error_quotes_shapes():
    with pytest.raises(ValueError, match=r"\(24, 24, 24\).*\(20, 20, 20\)"):
        fsc_curve(np.zeros((24,) * 3), np.zeros((20,) * 3), pixel_size_a=1.0)


def test_bad_pixel_size():
    with pytest.raises(ValueError, match="pixel_size_a"):
        fsc_curve(np.zeros((8,) * 3), np.zeros((8,) * 3), pixel_size_a=0)


def test_non_cubic():
    with pytest.raises(ValueError, match="cubic"):
        fsc_curve(np.zeros((8, 8, 6)), np.zeros((8, 8, 6)), pixel_size_a=1.0)
