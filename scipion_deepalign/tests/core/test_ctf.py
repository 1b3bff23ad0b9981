"""CTF values against the analytic formula: DC, zeros, astigmatism, corrections."""
import numpy as np
import pytest

from scipion_deepalign.core.ctf import (
    apply_ctf,
    ctf_half_images,
    ctf_images,
    electron_wavelength_a,
)
from scipion_deepalign.core.particles import CTFParams
from scipion_deepalign.tests.helpers import phase_flip


def _ctf(u, v=None, angle=0.0, **kw):
    return CTFParams(defocus_u_a=[u], defocus_v_a=[u if v is None else v],
                     defocus_angle_deg=[angle], **kw)


def _delta(box):
    img = np.zeros((1, box, box), np.float32)
    img[0, box // 2, box // 2] = 1.0
    return img


@pytest.mark.parametrize("kv,lam", [(300, 0.019687), (200, 0.025079), (100, 0.037014)])
def test_relativistic_wavelength(kv, lam):
    assert electron_wavelength_a(kv) == pytest.approx(lam, rel=1e-4)


def test_value_at_dc_is_amplitude_contrast_and_positive():
    c = ctf_images(32, 2.0, _ctf(15000.0, amplitude_contrast=0.07))
    assert c.shape == (1, 32, 32) and c.dtype == np.float32
    assert c[0, 0, 0] == pytest.approx(0.07, abs=1e-6)
    assert c[0, 0, 1] > 0  # still positive at the first frequency (RELION sign)


def test_phase_shift_at_dc():
    params = _ctf(15000.0, amplitude_contrast=0.1)
    params.phase_shift_deg = np.array([90.0])
    c = ctf_images(16, 2.0, params)
    assert c[0, 0, 0] == pytest.approx(np.sqrt(1 - 0.01), abs=1e-6)


def test_zeros_at_analytic_frequencies():
    box, pixel, df, cs_mm, q = 512, 1.0, 20000.0, 2.7, 0.1
    c = ctf_images(box, pixel, _ctf(df, cs_mm=cs_mm, amplitude_contrast=q))[0, 0, :box // 2]
    freq = np.fft.fftfreq(box, d=pixel)[:box // 2]
    lam = electron_wavelength_a(300.0)
    cs_a = cs_mm * 1e7
    # zeros: pi lam df s^2 - pi/2 Cs lam^3 s^4 + atan(q / sqrt(1 - q^2)) = n pi
    k3 = np.arctan(q / np.sqrt(1 - q * q))
    a, b = 0.5 * np.pi * cs_a * lam ** 3, np.pi * lam * df
    expected = []
    for n in range(1, 12):
        s2 = (b - np.sqrt(b * b - 4 * a * (n * np.pi - k3))) / (2 * a)
        expected.append(np.sqrt(s2))
    crossings = np.nonzero(np.sign(c[1:]) != np.sign(c[:-1]))[0]
    # linear interpolation of each sign change
    found = freq[crossings] - c[crossings] * (freq[1] - freq[0]) / (c[crossings + 1] - c[crossings])
    np.testing.assert_allclose(found[:11], expected, atol=0.05 * (freq[1] - freq[0]))


@pytest.mark.parametrize("angle", [0.0, 45.0, 90.0])
def test_astigmatism_follows_the_angle(angle):
    box, pixel, u, v = 64, 2.0, 25000.0, 15000.0
    astig = ctf_images(box, pixel, _ctf(u, v, angle))[0]
    iso_u = ctf_images(box, pixel, _ctf(u))[0]
    iso_v = ctf_images(box, pixel, _ctf(v))[0]
    k = np.arange(1, 20)
    if angle == 45.0:
        along_u, along_v = (k, k), (k, -k)  # (y, x) indices along 45 and 135 degrees
    elif angle == 90.0:
        along_u, along_v = (k, 0 * k), (0 * k, k)
    else:
        along_u, along_v = (0 * k, k), (k, 0 * k)
    np.testing.assert_allclose(astig[along_u], iso_u[along_u], atol=1e-5)
    np.testing.assert_allclose(astig[along_v], iso_v[along_v], atol=1e-5)
    assert np.abs(iso_u[along_u] - iso_v[along_u]).max() > 0.5  # the test can tell U from V


def test_ctf_is_even_in_frequency():
    c = ctf_images(33, 1.5, _ctf(20000.0, 17000.0, 33.0))[0]
    np.testing.assert_allclose(c, np.roll(c[::-1, ::-1], 1, axis=(0, 1)), atol=1e-6)


@pytest.mark.parametrize("box", [32, 33])
def test_half_plane_ctf_is_the_full_grid_s_rfft2_columns(box):
    params = CTFParams([12000.0, 21000.0], [10000.0, 20500.0], [20.0, 75.0])
    half = ctf_half_images(box, 1.7, params)
    assert half.shape == (2, box, box // 2 + 1) and half.dtype == np.float32
    np.testing.assert_array_equal(half, ctf_images(box, 1.7, params)[..., :box // 2 + 1])
    with pytest.raises(ValueError, match="box_px"):
        ctf_half_images(0, 1.7, params)


def test_apply_ctf_multiplies_the_spectrum():
    # odd box: no Nyquist row, where an astigmatic CTF cannot be Hermitian-consistent
    c = ctf_images(33, 2.0, _ctf(12000.0, 10000.0, 20.0))
    out = apply_ctf(_delta(33), c)
    spec = np.fft.fft2(np.fft.ifftshift(out[0]))
    np.testing.assert_allclose(spec.real, c[0], atol=1e-5)
    np.testing.assert_allclose(spec.imag, 0, atol=1e-5)


def test_phase_flip_makes_effective_ctf_non_negative():
    c = ctf_images(33, 2.0, _ctf(12000.0, 10000.0, 20.0))
    assert (c < -0.5).any()
    out = phase_flip(apply_ctf(_delta(33), c), c)
    spec = np.fft.fft2(np.fft.ifftshift(out[0])).real
    assert spec.min() > -1e-5
    np.testing.assert_allclose(spec, np.abs(c[0]), atol=1e-5)


def test_mismatched_shapes_are_refused():
    c = ctf_images(16, 2.0, _ctf(12000.0))
    with pytest.raises(ValueError, match="ctf_imgs"):
        apply_ctf(np.zeros((1, 32, 32)), c)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="pixel_size_a"):
        ctf_images(16, 0.0, _ctf(12000.0))
    with pytest.raises(ValueError, match="amplitude_contrast"):
        ctf_images(16, 1.0, _ctf(12000.0, amplitude_contrast=1.0))


def test_each_particle_gets_its_own_voltage_cs_and_amplitude_contrast():
    """Two optics groups (300 and 200 kV): group 2's CTFs are those of a 200 kV run."""
    du = np.array([12000.0, 15000.0, 18000.0, 21000.0])
    mixed = CTFParams(defocus_u_a=du, defocus_v_a=du - 300, defocus_angle_deg=np.full(4, 30.0),
                      voltage_kv=[300, 300, 200, 200], cs_mm=[2.7, 2.7, 2.0, 2.0],
                      amplitude_contrast=[0.1, 0.1, 0.07, 0.07])
    single = CTFParams(defocus_u_a=du[2:], defocus_v_a=du[2:] - 300,
                       defocus_angle_deg=np.full(2, 30.0), voltage_kv=200.0, cs_mm=2.0,
                       amplitude_contrast=0.07)
    at_300 = CTFParams(defocus_u_a=du[2:], defocus_v_a=du[2:] - 300,
                       defocus_angle_deg=np.full(2, 30.0), voltage_kv=300.0, cs_mm=2.7,
                       amplitude_contrast=0.1)
    got = ctf_images(48, 1.5, mixed)
    np.testing.assert_array_equal(got[2:], ctf_images(48, 1.5, single))
    assert np.abs(got[2:] - ctf_images(48, 1.5, at_300)).max() > 0.5
    np.testing.assert_array_equal(got[:2], ctf_images(48, 1.5, at_300.__class__(
        defocus_u_a=du[:2], defocus_v_a=du[:2] - 300, defocus_angle_deg=np.full(2, 30.0))))
    np.testing.assert_array_equal(ctf_images(48, 1.5, mixed.subset(slice(2, 4))), got[2:])


def test_per_particle_optics_of_the_wrong_length_refused():
    with pytest.raises(ValueError, match=r"voltage_kv must be a number or an array of shape "
                                         r"\(2,\)"):
        CTFParams(defocus_u_a=[1e4, 2e4], defocus_v_a=[1e4, 2e4], defocus_angle_deg=[0, 0],
                  voltage_kv=[300, 200, 100])
