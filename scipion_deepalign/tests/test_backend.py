"""Backend choice and the FFT correlation engine against slow direct computations."""
import numpy as np
import pytest

from scipion_deepalign.core import backend, matching
from scipion_deepalign.core.particles import CTFParams


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backend, "_GPU_PROBE", {"ok": False, "why": "ImportError: no cupy"})


def test_cpu_is_numpy():
    assert backend.get_array_module("cpu") is np


def test_auto_falls_back_to_numpy_without_gpu(no_gpu, caplog):
    with caplog.at_level("INFO", logger="scipion_deepalign.core.backend"):
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
    offsets, flat = matching.shift_window(16, 2.0)
    assert len(offsets) == 13  # integer points with dy^2 + dx^2 <= 4
    assert np.all((offsets ** 2).sum(1) <= 4)
    assert flat[np.flatnonzero((offsets == [-1, 1]).all(1))[0]] == 15 * 16 + 1
    assert len(matching.shift_window(16, 0.0)[0]) == 1


def _slow_scores(particles, refs, offsets, mask, ctf_half=None):
    """Direct real-space evaluation of the scores correlate_block must give."""
    box = particles.shape[-1]
    p = matching.normalise_masked(particles, mask)
    r = matching.normalise_masked(refs, mask)
    if ctf_half is not None:  # CTF applied to the references, exact norm
        out = np.empty((len(p), len(r)))
        for i in range(len(p)):
            cr = np.fft.irfft2(np.fft.rfft2(r) * ctf_half[i], s=(box, box))
            for j in range(len(r)):
                vals = [np.sum(np.roll(p[i], (-dy, -dx), (0, 1)) * cr[j]) for dy, dx in offsets]
                out[i, j] = max(vals) / np.linalg.norm(cr[j])
        return out
    return np.array([[max(np.sum(np.roll(pi, (-dy, -dx), (0, 1)) * rj) for dy, dx in offsets)
                      for rj in r] for pi in p])


def test_correlate_block_equals_direct_computation():
    rng = np.random.default_rng(0)
    box = 12
    refs = rng.normal(size=(3, box, box)).astype(np.float32)
    particles = np.roll(refs[[2, 0]], (1, -2), (1, 2)) + 0.3 * rng.normal(size=(2, box, box))
    mask = matching.soft_mask(box, 5.0)
    offsets, flat = matching.shift_window(box, 2.5)
    spectra, _ = matching.prepare_particles(particles, xp=np, mask=mask)
    conj, _ = matching.prepare_references(refs, xp=np, mask=mask)
    score, k = matching.correlate_block(spectra, conj, flat, xp=np, box_px=box)
    expected = _slow_scores(particles.astype(np.float32), refs, offsets, mask)
    np.testing.assert_allclose(score, expected, atol=2e-5)
    # The particle is the reference moved by +(1, -2): the peak is at s = (1, -2).
    assert offsets[k[0, 2]].tolist() == [1, -2]
    assert score[0, 2] > 0.7 and score[0, 2] == score[0].max()


def test_apply_ctf_scores_equal_direct_computation():
    from scipion_deepalign.core.ctf import ctf_images

    rng = np.random.default_rng(1)
    box, pixel = 16, 3.0
    ctf = CTFParams([12000.0, 20000.0], [14000.0, 19000.0], [30.0, 0.0])
    half = matching.ctf_half_plane(ctf_images(box, pixel, ctf))
    refs = rng.normal(size=(3, box, box)).astype(np.float32)
    particles = rng.normal(size=(2, box, box)).astype(np.float32)
    mask = matching.soft_mask(box, 6.0)
    offsets, flat = matching.shift_window(box, 1.0)
    spectra, power = matching.prepare_particles(particles, xp=np, mask=mask, ctf_half=half)
    conj, ref_power = matching.prepare_references(refs, xp=np, mask=mask, with_power=True)
    score, _ = matching.correlate_block(spectra, conj, flat, xp=np, box_px=box,
                                        particle_power=power, ref_power=ref_power)
    expected = _slow_scores(particles, refs, offsets, mask, ctf_half=half)
    np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-5)


def test_cupy_matches_numpy():
    cupy = pytest.importorskip("cupy")
    if not backend.gpu_available():
        pytest.skip("cupy installed but no usable GPU")
    rng = np.random.default_rng(2)
    box = 16
    refs = rng.normal(size=(4, box, box)).astype(np.float32)
    particles = rng.normal(size=(3, box, box)).astype(np.float32)
    mask = matching.soft_mask(box, 6.0)
    _, flat = matching.shift_window(box, 2.0)
    out = []
    for xp in (np, cupy):
        spectra, _ = matching.prepare_particles(particles, xp=xp, mask=xp.asarray(mask))
        conj, _ = matching.prepare_references(refs, xp=xp, mask=xp.asarray(mask))
        score, k = matching.correlate_block(spectra, conj, flat, xp=xp, box_px=box)
        out.append((backend.to_numpy(score), backend.to_numpy(k)))
    np.testing.assert_allclose(out[0][0], out[1][0], atol=1e-5)
    np.testing.assert_array_equal(out[0][1], out[1][1])
