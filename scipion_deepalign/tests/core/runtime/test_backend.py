"""Backend choice and the FFT correlation engine against slow direct computations."""
import numpy as np
import pytest

from scipion_deepalign.core.align import matching, shift_gemm
from scipion_deepalign.core.particles import CTFParams
from scipion_deepalign.core.runtime import backend
from scipion_deepalign.tests.helpers import numpy_twin


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backend, "_GPU_PROBE", {"ok": False, "why": "ImportError: no cupy"})


def test_cpu_is_numpy():
    assert backend.get_array_module("cpu") is np


def test_auto_falls_back_to_numpy_without_gpu(no_gpu, caplog):
    with caplog.at_level("INFO", logger="scipion_deepalign.core.runtime.backend"):
        assert backend.get_array_module("auto") is np
    assert "numpy" in caplog.text and "no usable GPU" in caplog.text


def test_gpu_requested_without_gpu_says_why(no_gpu):
    with pytest.raises(RuntimeError, match="device='gpu'.*no cupy"):
        backend.get_array_module("gpu")


def test_unknown_device():
    with pytest.raises(ValueError, match="device must be one of"):
        backend.get_array_module("tpu")


def test_probe_catches_any_error(monkeypatch):
    """A cupy that imports but fails on first use (no GPU) must not be chosen."""
    import sys
    import types

    fake = types.ModuleType("cupy")

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA driver not found")

    fake.arange = broken
    fake.float32 = np.float32
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend, "_GPU_PROBE", {})
    assert backend.get_array_module("auto") is np
    assert "CUDA driver not found" in backend._GPU_PROBE["why"]


def test_to_numpy_and_oom_detection():
    x = backend.to_numpy([1.0, 2.0])
    assert isinstance(x, np.ndarray) and x.tolist() == [1.0, 2.0]

    class OutOfMemoryError(Exception):
        pass

    assert backend.is_out_of_memory(MemoryError())
    assert backend.is_out_of_memory(OutOfMemoryError("cudaErrorMemoryAllocation"))
    assert not backend.is_out_of_memory(ValueError("bad"))


def test_shift_window_is_a_disc():
    offsets = matching.shift_window(2.0)
    assert len(offsets) == 13  # integer points with dy^2 + dx^2 <= 4
    assert np.all((offsets ** 2).sum(1) <= 4)
    assert len(matching.shift_window(0.0)) == 1


def _band_limited_unit(images, mask):
    """Slow twin of the matching normalisation: mask, zero mean, keep |k| < B/2, unit norm."""
    box = images.shape[-1]
    x = images * mask
    x = (images - x.sum(axis=(1, 2), keepdims=True) / mask.sum()) * mask
    ky = np.fft.fftfreq(box)[:, None] * box
    kx = np.fft.rfftfreq(box)[None, :] * box
    x = np.fft.irfft2(np.fft.rfft2(x) * (np.hypot(ky, kx) < box / 2), s=(box, box))
    return x / np.linalg.norm(x, axis=(1, 2), keepdims=True)


def _slow_scores(particles, refs, offsets, mask, ctf_half=None):
    """Direct real-space evaluation of the scores correlate_block must give."""
    box = particles.shape[-1]
    p = _band_limited_unit(particles, mask)
    r = _band_limited_unit(refs, mask)
    out = np.empty((len(p), len(r)))
    for i in range(len(p)):
        cr = r if ctf_half is None else np.fft.irfft2(np.fft.rfft2(r) * ctf_half[i], s=(box, box))
        for j in range(len(r)):
            vals = [np.sum(np.roll(p[i], (-dy, -dx), (0, 1)) * cr[j]) for dy, dx in offsets]
            out[i, j] = max(vals) / np.linalg.norm(cr[j])
    return out


def _fast_scores(particles, refs, offsets, mask, ctf_half=None, xp=np):
    band = matching.FourierBand.of_box(particles.shape[-1])
    spectra, power = matching.prepare_particles(particles, xp=xp, mask=xp.asarray(mask),
                                                band=band, ctf_half=ctf_half)
    matrix, ref_power = matching.prepare_references(refs, xp=xp, mask=xp.asarray(mask),
                                                    band=band, with_power=power is not None)
    return matching.correlate_block(spectra, matrix, band.shift_phases(offsets, xp), xp=xp,
                                    particle_power=power, ref_power=ref_power)


def test_correlate_block_equals_direct_computation():
    rng = np.random.default_rng(0)
    box = 12
    refs = rng.normal(size=(3, box, box)).astype(np.float32)
    particles = np.roll(refs[[2, 0]], (1, -2), (1, 2)) + 0.3 * rng.normal(size=(2, box, box))
    particles = particles.astype(np.float32)
    mask = matching.soft_mask(box, 5.0)
    offsets = matching.shift_window(2.5)
    score, k = _fast_scores(particles, refs, offsets, mask)
    np.testing.assert_allclose(score, _slow_scores(particles, refs, offsets, mask), atol=2e-5)
    # The particle is the reference moved by +(1, -2): the peak is at s = (1, -2).
    assert offsets[k[0, 2]].tolist() == [1, -2]
    assert score[0, 2] > 0.7 and score[0, 2] == score[0].max()


def test_apply_ctf_scores_equal_direct_computation():
    from scipion_deepalign.core.ctf import ctf_half_images

    rng = np.random.default_rng(1)
    box, pixel = 16, 3.0
    ctf = CTFParams([12000.0, 20000.0], [14000.0, 19000.0], [30.0, 0.0])
    half = ctf_half_images(box, pixel, ctf)
    refs = rng.normal(size=(3, box, box)).astype(np.float32)
    particles = rng.normal(size=(2, box, box)).astype(np.float32)
    mask = matching.soft_mask(box, 6.0)
    offsets = matching.shift_window(1.0)
    score, _ = _fast_scores(particles, refs, offsets, mask, ctf_half=half)
    expected = _slow_scores(particles, refs, offsets, mask, ctf_half=half)
    np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-5)


def test_correlation_maps_agree_with_block_scores():
    rng = np.random.default_rng(3)
    box = 16
    refs = rng.normal(size=(2, box, box)).astype(np.float32)
    particles = np.roll(refs, (2, 1), (1, 2)).astype(np.float32)
    mask = matching.soft_mask(box, 7.0)
    band = matching.FourierBand.of_box(box)
    spectra, _ = matching.prepare_particles(particles, xp=np, mask=mask, band=band)
    matrix, _ = matching.prepare_references(refs, xp=np, mask=mask, band=band)
    maps = matching.correlation_maps(spectra, matrix, band, xp=np)
    offsets = matching.shift_window(3.0)
    score, k = matching.correlate_block(spectra, matrix, band.shift_phases(offsets), xp=np)
    for i in range(2):
        dy, dx = offsets[k[i, i]]
        assert (dy, dx) == (2, 1)
        assert maps[i, dy % box, dx % box] == pytest.approx(score[i, i], abs=1e-5)
        assert maps[i].max() == pytest.approx(score[i, i], abs=1e-5)


def test_compiled_correlation_steps_equal_the_array_module_path():
    """The numba passes of correlate_block (shift columns, best shift) give what the cupy
    path computes, including ties (the first shift wins) and a non-contiguous block."""
    rng = np.random.default_rng(4)
    n, f, k, m = 7, 23, 5, 9
    spectra = (rng.normal(size=(n + 3, f)) + 1j * rng.normal(size=(n + 3, f)))
    spectra = spectra.astype(np.complex64)[::-1][:n]  # a strided view, as spectra[rows]
    phases = (rng.normal(size=(f, k)) + 1j * rng.normal(size=(f, k))).astype(np.complex64)
    twin = numpy_twin()
    compiled = shift_gemm.shift_columns(spectra, phases, xp=np)
    generic = shift_gemm.shift_columns(spectra, phases, xp=twin)
    assert compiled.shape == (2 * f, n * k) and compiled.dtype == np.float32
    np.testing.assert_allclose(compiled, generic, rtol=1e-6, atol=1e-6)
    corr = rng.normal(size=(m, n * k)).astype(np.float32)
    corr[:, 3 * k + 1] = corr[:, 3 * k + 3] = 10.0  # particle 3: shifts 1 and 3 tie
    score, index = shift_gemm.best_over_shift_columns(corr, k, xp=np)
    twin_score, twin_index = shift_gemm.best_over_shift_columns(corr, k, xp=twin)
    np.testing.assert_array_equal(score, twin_score)
    np.testing.assert_array_equal(index, twin_index)
    assert (index[3] == 1).all() and score.shape == (n, m)


def test_shifted_references_layout_gives_the_same_correlations():
    """correlate_block with the shift on the references' side (shift_rows, the regional
    groups' layout) gives the scores and best shifts of the particles' side, on numpy
    (compiled) and on the array-module path, including ties (the first shift wins)."""
    rng = np.random.default_rng(5)
    n, f, k, m = 9, 23, 5, 4
    spectra = (rng.normal(size=(n, f)) + 1j * rng.normal(size=(n, f))).astype(np.complex64)
    phases = (rng.normal(size=(f, k)) + 1j * rng.normal(size=(f, k))).astype(np.complex64)
    refs = rng.normal(size=(m, 2 * f)).astype(np.float32)
    power = rng.random(size=(n, f)).astype(np.float32)
    ref_power = refs[:, :f] ** 2 + refs[:, f:] ** 2
    score, index = matching.correlate_block(spectra, refs, phases, xp=np,
                                            particle_power=power, ref_power=ref_power)
    twin = numpy_twin()
    for xp in (np, twin):
        rows = shift_gemm.shift_rows(refs, phases, xp=xp)
        assert rows.shape == (m * k, 2 * f) and rows.dtype == np.float32
        s2, i2 = matching.correlate_block(spectra, refs, phases, xp=xp, particle_power=power,
                                          ref_power=ref_power, shifted_refs=rows)
        np.testing.assert_allclose(s2, score, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(i2, index)
    corr = rng.normal(size=(m * k, n)).astype(np.float32)
    corr[2 * k + 1] = corr[2 * k + 3] = 10.0  # reference 2: shifts 1 and 3 tie
    s_np, i_np = shift_gemm.best_over_shift_rows(corr, k, xp=np)
    s_tw, i_tw = shift_gemm.best_over_shift_rows(corr, k, xp=twin)
    np.testing.assert_array_equal(s_np, s_tw)
    np.testing.assert_array_equal(i_np, i_tw)
    assert (i_np[:, 2] == 1).all() and s_np.shape == (n, m)


def test_cupy_matches_numpy():
    cupy = pytest.importorskip("cupy")
    if not backend.gpu_available():
        pytest.skip("cupy installed but no usable GPU")
    rng = np.random.default_rng(2)
    box = 16
    refs = rng.normal(size=(4, box, box)).astype(np.float32)
    particles = rng.normal(size=(3, box, box)).astype(np.float32)
    mask = matching.soft_mask(box, 6.0)
    offsets = matching.shift_window(2.0)
    s_np, k_np = _fast_scores(particles, refs, offsets, mask)
    s_cp, k_cp = _fast_scores(particles, refs, offsets, mask, xp=cupy)
    np.testing.assert_allclose(s_np, backend.to_numpy(s_cp), atol=1e-5)
    np.testing.assert_array_equal(k_np, backend.to_numpy(k_cp))


def test_cpu_threads_follow_omp_num_threads(monkeypatch):
    import os

    from scipion_deepalign.core.runtime.backend import cpu_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == len(os.sched_getaffinity(0))
