"""Known-answer tests of the image-stack operations."""
import numpy as np
import pytest

from scipion_deepalign.core.imageops import (
    circular_mask,
    fourier_crop,
    fourier_crop_volume,
    normalise_images,
    rotate_images,
    translate_images,
)
from scipion_deepalign.tests.helpers import translate_volume


def _blob(box, centre_xy, sigma=2.0):
    """Gaussian blob centred at pixel offsets ``centre_xy`` from the box centre."""
    c = np.arange(box) - box // 2
    x, y = c[None, :], c[:, None]
    return np.exp(-((x - centre_xy[0]) ** 2 + (y - centre_xy[1]) ** 2) / (2 * sigma ** 2))


def _centroid_xy(img):
    box = img.shape[-1]
    c = np.arange(box) - box // 2
    w = img.sum()
    return np.array([(img.sum(0) * c).sum() / w, (img.sum(1) * c).sum() / w])


def test_translate_integer_offset_is_roll():
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(2, 24, 24)).astype(np.float32)
    out = translate_images(imgs, [[3, -2], [-5, 7]])
    np.testing.assert_allclose(out[0], np.roll(imgs[0], (-2, 3), axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(out[1], np.roll(imgs[1], (7, -5), axis=(0, 1)), atol=1e-5)


def test_translate_moves_content_by_plus_offset_subpixel():
    img = _blob(32, (0, 0))
    out = translate_images(img, [2.5, -1.25])[0]
    np.testing.assert_allclose(_centroid_xy(out), [2.5, -1.25], atol=1e-3)


def test_translate_round_trip():
    img = _blob(32, (1.3, -2.0), sigma=2.5)[None].astype(np.float32)
    back = translate_images(translate_images(img, [[0.7, 3.4]]), [[-0.7, -3.4]])
    np.testing.assert_allclose(back, img, atol=1e-5)


def test_translate_rejects_bad_offsets_shape():
    with pytest.raises(ValueError, match="offsets_px"):
        translate_images(np.zeros((3, 8, 8)), np.zeros((2, 2)))


def test_translate_volume_moves_content():
    vol = np.zeros((16, 16, 16), np.float32)
    vol[8, 8, 8] = 1.0
    out = translate_volume(vol, (2, -3, 1))
    assert np.unravel_index(np.argmax(out), out.shape) == (9, 5, 10)


def test_rotate_90_degrees_exact_on_grid():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(25, 25)).astype(np.float32)
    out = rotate_images(img, 90.0)[0]
    c = 12
    # out(x) = in(R x), R(90) (x, y) = (-y, x)
    for y in range(-c, c + 1):
        for x in range(-c, c + 1):
            assert out[c + y, c + x] == pytest.approx(img[c + x, c - y], abs=1e-4)


def test_rotate_zero_is_identity_and_blob_goes_clockwise():
    img = _blob(32, (6.0, 0.0))
    np.testing.assert_allclose(rotate_images(img, 0.0)[0], img, atol=1e-5)
    # x right / y up: +30 degrees turns content clockwise, from (6, 0) to 6 (cos -30, sin -30)
    out = rotate_images(img, 30.0)[0]
    expected = 6 * np.array([np.cos(np.deg2rad(-30)), np.sin(np.deg2rad(-30))])
    np.testing.assert_allclose(_centroid_xy(out), expected, atol=0.05)


def test_rotate_per_image_angles_shape_checked():
    with pytest.raises(ValueError, match="angles_deg"):
        rotate_images(np.zeros((3, 8, 8)), [1.0, 2.0])


@pytest.mark.parametrize("old,new", [(64, 32), (65, 64), (48, 40), (33, 24)])
def test_fourier_crop_keeps_mean_and_centre(old, new):
    img = (_blob(old, (0, 0), sigma=3.0) + 0.25).astype(np.float32)
    out = fourier_crop(img, new)[0]
    assert out.shape == (new, new)
    assert out.mean() == pytest.approx(img.mean(), rel=1e-4)
    np.testing.assert_allclose(_centroid_xy(out - 0.25), [0, 0], atol=1e-3)
    assert np.argmax(out) == (new // 2) * new + new // 2


def test_fourier_crop_then_pad_recovers_band_limited_image():
    img = _blob(48, (2, -3), sigma=4.0).astype(np.float32)
    back = fourier_crop(fourier_crop(img, 32), 48)
    np.testing.assert_allclose(back[0], img, atol=1e-4)


def test_fourier_crop_commutes_with_downsampling_a_blob():
    # a sigma-4 blob at 64 px is a sigma-2 blob at 32 px (pixel twice as big)
    out = fourier_crop(_blob(64, (4, -8), sigma=4.0), 32)[0]
    np.testing.assert_allclose(out, _blob(32, (2, -4), sigma=2.0), atol=1e-3)


def test_fourier_crop_volume_keeps_mean_and_is_consistent_with_projection():
    from scipion_deepalign.core.projection import project
    from scipion_deepalign.core.simulate import make_phantom

    vol = make_phantom(32)
    small = fourier_crop_volume(vol, 16)
    assert small.shape == (16, 16, 16)
    assert small.mean() == pytest.approx(vol.mean(), rel=1e-4)
    angles = np.array([[20.0, 50.0, 10.0]])
    # voxel values keep their level, so projections (sums over z) halve with half the voxels
    a = project(small, angles)[0]
    b = fourier_crop(project(vol, angles), 16)[0] / 2
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    assert a.sum() == pytest.approx(b.sum(), rel=0.03)


def test_fourier_crop_rejects_bad_box():
    with pytest.raises(ValueError, match="new_box"):
        fourier_crop(np.zeros((1, 8, 8)), 0)
    with pytest.raises(ValueError, match="cubic"):
        fourier_crop_volume(np.zeros((8, 8, 4)), 4)


def test_circular_mask_area_and_centre():
    mask = circular_mask(64, 20)
    assert mask.dtype == bool
    assert abs(mask.sum() - np.pi * 20 ** 2) < 2 * np.pi * 20
    assert mask[32, 32] and mask[32, 52] and not mask[32, 53] and not mask[0, 0]


def test_normalise_background_outside_mask():
    rng = np.random.default_rng(2)
    imgs = (rng.normal(3.0, 2.0, size=(4, 32, 32)) + 10 * _blob(32, (0, 0), 3)).astype(np.float32)
    out = normalise_images(imgs, mask_radius_px=10)
    outside = ~circular_mask(32, 10)
    np.testing.assert_allclose(out[:, outside].mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, outside].std(1), 1, atol=1e-5)
    assert (out[:, 16, 16] > 3).all()  # particle stays bright


def test_normalise_whole_image():
    rng = np.random.default_rng(3)
    out = normalise_images(rng.normal(5.0, 3.0, size=(3, 16, 16)))
    np.testing.assert_allclose(out.reshape(3, -1).mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(out.reshape(3, -1).std(1), 1, atol=1e-5)


def test_normalise_rejects_mask_covering_box():
    with pytest.raises(ValueError, match="mask_radius_px"):
        normalise_images(np.zeros((1, 8, 8)), mask_radius_px=20)


def test_fourier_crop_of_a_large_stack_goes_by_chunks_and_gives_the_same_images(monkeypatch):
    import scipion_deepalign.core.imageops as imageops

    stack = np.random.default_rng(4).normal(size=(11, 20, 20)).astype(np.float32)
    whole = fourier_crop(stack, 12)
    calls = []
    real = imageops._fourier_resize
    monkeypatch.setattr(imageops, "_fourier_resize",
                        lambda data, box, ndim: calls.append(len(data)) or real(data, box, ndim))
    monkeypatch.setattr(imageops, "_RESIZE_BYTES", 4 * 16 * 20 ** 2)  # 4 images at once
    chunked = fourier_crop(stack, 12)
    assert calls == [4, 4, 3]
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)
