"""The GPU alignment gives the CPU answer on the paths a real run takes: CTF applied or
flipped, regional windows with an adaptive number of regions, the global fallback, the
subpixel shift, local refinement and the significance fallback.

Each case runs twice: on cupy when a GPU answers (skipped otherwise) and, always, on the
CPU through "numpy under another name", so that every branch written for cupy
(``xp is not np``) is exercised by the CPU test suite too.
"""
import numpy as np
import pytest

from scipion_deepalign.core.align import align as align_module
from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.regions import nearest_regions, region_centres_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg
from scipion_deepalign.tests.helpers import numpy_twin

PIXEL_A = 4.0


@pytest.fixture(params=["cpu-twin", "cupy"])
def gpu_path(request, monkeypatch):
    """``device="gpu"`` runs the cupy code path: on cupy, or on the numpy twin."""
    if request.param == "cupy":
        pytest.importorskip("cupy")
        from scipion_deepalign.core.runtime.backend import gpu_available
        if not gpu_available():
            pytest.skip("cupy installed but no usable GPU")
        return "cupy"
    twin = numpy_twin()
    monkeypatch.setattr(align_module, "get_array_module",
                        lambda device="auto": twin if device == "gpu" else np)
    return "numpy_twin"


@pytest.fixture(scope="module")
def data():
    volume = make_phantom(32, seed=3)
    images, parts = simulate_particles(volume, 16, pixel_size_a=PIXEL_A, snr=2.0, ctf=True,
                                       max_shift_px=2.5, seed=5)
    centres = region_centres_deg(45.0, "c1")
    truth = nearest_regions(parts.angles_deg, centres, "c1", k=1)[:, 0]
    hints = np.stack([truth, (truth + 1) % len(centres)], axis=1)
    probabilities = np.tile([0.7, 0.2], (len(parts), 1))
    probabilities[:3] = [0.3, 0.2]  # below the fallback threshold: searched globally
    return volume, images, parts, centres, hints, probabilities


CASES = {
    "ctf-apply-regional-fallback": dict(
        ctf_mode="apply", search=SearchOptions(overlap_deg=15.0, probability_mass=0.8,
                                               fallback_probability=0.5)),
    "ctf-flip-refine": dict(ctf_mode="flip", refine=True),
    "significance-fallback": dict(ctf_mode="apply", search=SearchOptions(
        probability_mass=None, fallback_significance=0.7)),
    "global-n-best": dict(ctf_mode="apply", n_best=3, global_search=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gpu_path_gives_the_cpu_answer(gpu_path, data, case):
    volume, images, parts, centres, hints, probabilities = data
    options = dict(CASES[case])
    regional = not options.pop("global_search", False)
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=3.0, step_deg=10.0, ctf=parts.ctf,
                  **options)
    if regional:
        kwargs.update(centres_deg=centres, region_hints=hints,
                      region_probabilities=probabilities)
    cpu = align_particles(images, volume, device="cpu", **kwargs)
    gpu = align_particles(images, volume, device="gpu", **kwargs)
    assert gpu.info["backend"] == gpu_path
    assert gpu.n_comparisons == cpu.n_comparisons
    np.testing.assert_allclose(gpu.score, cpu.score, atol=1e-4)
    same_pose = symmetric_pose_distance_deg(gpu.angles_deg, cpu.angles_deg, "c1") < 1e-3
    assert same_pose.mean() >= 0.9, same_pose
    np.testing.assert_allclose(gpu.shifts_px[same_pose], cpu.shifts_px[same_pose], atol=0.05)
    np.testing.assert_array_equal(gpu.region, cpu.region)
    np.testing.assert_array_equal(gpu.fallback, cpu.fallback)
    np.testing.assert_allclose(gpu.significance, cpu.significance, atol=1e-3)
    if case == "ctf-apply-regional-fallback":
        assert gpu.fallback[:3].all() and not gpu.fallback[3:].any()
    if case == "significance-fallback":
        assert 0 < gpu.fallback.sum() < len(gpu.fallback), gpu.significance
    # the case searched what it says: the answer is right, not only the same
    err = symmetric_pose_distance_deg(cpu.angles_deg, parts.angles_deg, "c1")
    assert np.median(err) < 10.0, err
