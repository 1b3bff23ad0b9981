"""The local refinement's cheap paths against the plain ones they replace."""
import numpy as np
import pytest
import scipy.fft

from scipion_deepalign.core.align import candidates, local_refinement, matching, shift_gemm
from scipion_deepalign.core.align.search import Search
from scipion_deepalign.core.central_slices import band_spectra
from scipion_deepalign.core.geometry import euler_to_matrix, matrix_to_euler
from scipion_deepalign.core.projection import VolumeSpectrum, project
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg


@pytest.fixture(scope="module")
def spectrum():
    return VolumeSpectrum(make_phantom(32, seed=0))


def _cosines(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(axis=-1)


def test_pairs_correlation_equals_the_shifted_particle_product():
    rng = np.random.default_rng(0)
    n, c, f, k = 5, 7, 40, 9
    spectra = (rng.normal(size=(n, f)) + 1j * rng.normal(size=(n, f))).astype(np.complex64)
    refs = rng.normal(size=(n, c, 2 * f)).astype(np.float32)
    phases = (rng.normal(size=(f, k)) + 1j * rng.normal(size=(f, k))).astype(np.complex64)
    expected = refs @ shift_gemm.shifted_particles(spectra, phases, xp=np)  # (n, c, K)
    got = matching.correlate_pairs(spectra, refs, phases, xp=np)
    assert got.shape == (n, c, k)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    from scipion_deepalign.tests.helpers import numpy_twin  # the array path (cupy's)

    twin = matching.correlate_pairs(spectra, refs, phases, xp=numpy_twin())
    np.testing.assert_allclose(twin, got, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("box", [32, 33])
def test_band_spectra_are_those_of_the_projections(box):
    spec = VolumeSpectrum(make_phantom(box, seed=0))
    band = matching.FourierBand.of_box(box)
    angles = np.random.default_rng(1).uniform(0, 180, (6, 3))
    expected = band.take(scipy.fft.rfft2(project(spec, angles)))
    got = band_spectra(spec, euler_to_matrix(angles), band.ky, band.kx)
    assert got.shape == expected.shape and got.dtype == np.complex64
    # the same projection up to the projector's interpolation (both within 3 % of the peak)
    assert np.abs(got - expected).max() < 0.03 * np.abs(expected).max()
    assert _cosines(np.abs(got), np.abs(expected)).min() > 0.9999


def test_candidate_references_equal_the_masked_projections(spectrum):
    search = Search.create(32, 4.0, max_shift_px=2.0)
    angles = np.random.default_rng(2).uniform(0, 180, (40, 3))
    expected, _ = search.references(project(spectrum, angles), rotate=False)
    got, power = candidates.candidate_references(
        spectrum, euler_to_matrix(angles), search, candidates.ReferenceMasking.of(search))
    assert got.shape == expected.shape and power is None
    assert _cosines(got, expected).min() > 0.9995


def test_refinement_recovers_poses_off_the_grid_as_the_projected_path(spectrum, monkeypatch):
    """Start 3 deg off the truth on each angle: the refinement more than halves the error, and
    its poses are those of candidates projected in full (the path it replaces)."""
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 10, pixel_size_a=4.0, snr=np.inf, ctf=False,
                                       max_shift_px=1.0, seed=3)
    search = Search.create(32, 4.0, max_shift_px=2.0, step_deg=8.0)
    start = parts.angles_deg + np.array([3.0, -3.0, 3.0])
    angles, score, peak, count = local_refinement.refine_poses(images, spectrum, start,
                                                               search=search)
    before = symmetric_pose_distance_deg(start, parts.angles_deg, "c1")
    after = symmetric_pose_distance_deg(angles, parts.angles_deg, "c1")
    assert np.median(after) < 0.5 * np.median(before), (before, after)
    assert np.all(score > 0.9)
    np.testing.assert_allclose(-peak[:, ::-1], parts.shifts_px, atol=0.3)
    assert count == 2 * 27 * len(images)

    def projected(spec, matrices, search, masking):
        return search.references(project(spec, matrix_to_euler(matrices)), rotate=False)

    monkeypatch.setattr(local_refinement, "candidate_references", projected)
    plain, plain_score, _, _ = local_refinement.refine_poses(images, spectrum, start,
                                                             search=search)
    assert np.median(symmetric_pose_distance_deg(angles, plain, "c1")) < 0.5
    np.testing.assert_allclose(score, plain_score, atol=2e-3)


def test_a_local_shift_window_around_the_gallery_peak_finds_the_disc_search_answer(spectrum):
    """Searched only around each particle's gallery peak (rounded to the pixel, as the gallery
    finds it), the refinement gives the whole disc's poses and peaks."""
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 10, pixel_size_a=4.0, snr=5.0, ctf=False,
                                       max_shift_px=2.5, seed=4)
    search = Search.create(32, 4.0, max_shift_px=3.0, step_deg=8.0)
    start = parts.angles_deg + np.array([2.0, -2.0, 2.0])
    gallery_peaks = np.round(-parts.shifts_px[:, ::-1])  # (dy, dx) = -(shift_y, shift_x)
    disc = local_refinement.refine_poses(images, spectrum, start, search=search)
    radius = local_refinement.local_shift_radius_px(1.0)
    local = local_refinement.refine_poses(images, spectrum, start, search=search,
                                          start_peaks_yx=gallery_peaks, local_shift_px=radius)
    assert radius < search.max_shift_px  # a real restriction here
    np.testing.assert_allclose(local[0], disc[0], atol=1e-6)
    np.testing.assert_allclose(local[1], disc[1], atol=1e-5)
    np.testing.assert_allclose(local[2], disc[2], atol=1e-4)
    np.testing.assert_allclose(-local[2][:, ::-1], parts.shifts_px, atol=0.5)


def test_the_device_sampling_path_equals_the_compiled_one(spectrum):
    """The array-gather sampling written for cupy ("numpy under another name" here) gives the
    compiled pass's band spectra, and the refinement's references with them."""
    from scipion_deepalign.tests.helpers import numpy_twin

    twin = numpy_twin()
    band = matching.FourierBand.of_box(32)
    matrices = euler_to_matrix(np.random.default_rng(5).uniform(0, 180, (9, 3)))
    compiled = band_spectra(spectrum, matrices, band.ky, band.kx)
    arrays = band_spectra(spectrum, matrices, band.ky, band.kx, xp=twin)
    np.testing.assert_allclose(arrays, compiled, atol=1e-4 * np.abs(compiled).max())
    search = Search.create(32, 4.0, max_shift_px=2.0)
    masking = candidates.ReferenceMasking.of(search)
    expected, _ = candidates.candidate_references(spectrum, matrices, search, masking)
    search.xp = twin
    got, _ = candidates.candidate_references(spectrum, matrices, search, masking)
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())


def test_many_candidates_are_finished_chunk_by_chunk_on_the_threads(spectrum):
    """Over several chunks and threads, the rows the sampling's threads finish (mask, norm,
    power) equal the array path's, and each chunk is finished once, by its own rows."""
    from scipion_deepalign.core import central_slices
    from scipion_deepalign.tests.helpers import numpy_twin

    n = 2 * central_slices.CHUNK + 7
    matrices = euler_to_matrix(np.random.default_rng(8).uniform(0, 180, (n, 3)))
    search = Search.create(32, 4.0, max_shift_px=2.0)
    search.ctf, search.ctf_mode = object(), "apply"  # the references' power is made too
    masking = candidates.ReferenceMasking.of(search)
    matrix, power = candidates.candidate_references(spectrum, matrices, search, masking)
    search.xp = numpy_twin()
    twin_matrix, twin_power = candidates.candidate_references(spectrum, matrices, search,
                                                              masking)
    np.testing.assert_allclose(matrix, twin_matrix, atol=1e-5 * np.abs(matrix).max())
    np.testing.assert_allclose(power, twin_power, atol=1e-5 * np.abs(power).max())
    seen = []
    band = search.band
    band_spectra(spectrum, matrices, band.ky, band.kx,
                 finish=lambda rows, sampled: seen.append((rows.start, rows.stop, len(sampled))))
    size = central_slices.CHUNK
    assert sorted(seen) == [(0, size, size), (size, 2 * size, size), (2 * size, n, 7)]


def test_points_at_and_beyond_the_padded_box_edge(spectrum):
    """Frequencies from inside the padded spectrum to past its edge: the compiled pass (no
    branch: clamped corners, zero outside) equals the array path point by point, inside
    and at the edge, and gives exactly zero where a neighbour lies outside."""
    from scipion_deepalign.tests.helpers import numpy_twin

    box = spectrum.box_px
    kx = np.linspace(0.0, 0.75 * box, 97)  # x in the padded box: P/2 + 2 kx, past P - 1
    ky = np.linspace(-0.3 * box, 0.3 * box, 97)
    matrices = euler_to_matrix(np.array([[0.0, 0.0, 0.0], [20.0, 35.0, 10.0],
                                         [90.0, 90.0, 0.0]]))
    compiled = band_spectra(spectrum, matrices, ky, kx)
    arrays = band_spectra(spectrum, matrices, ky, kx, xp=numpy_twin())
    np.testing.assert_allclose(compiled, arrays, atol=1e-5 * np.abs(compiled).max())
    q = spectrum.pad_box_px // 2 + kx * spectrum.pad_box_px / box  # x of the identity's points
    outside = q >= spectrum.pad_box_px - 1
    assert outside.any() and (~outside).any()
    assert np.all(compiled[0, outside] == 0) and np.all(compiled[0, ~outside] != 0)


def test_candidate_power_is_that_of_the_rows_on_both_paths(spectrum):
    """With the CTF on the references the candidates' power ``|R(k)|**2`` comes with their
    rows: the compiled pass and the array path agree, and it is the rows' own power."""
    from scipion_deepalign.tests.helpers import numpy_twin

    search = Search.create(32, 4.0, max_shift_px=2.0)
    search.ctf = object()  # any CTF: the "apply" mode needs the references' power
    assert search.ctf_on_references
    masking = candidates.ReferenceMasking.of(search)
    matrices = euler_to_matrix(np.random.default_rng(6).uniform(0, 180, (7, 3)))
    matrix, power = candidates.candidate_references(spectrum, matrices, search, masking)
    f = power.shape[1]
    np.testing.assert_allclose(power, matrix[:, :f] ** 2 + matrix[:, f:] ** 2, rtol=1e-5)
    search.xp = numpy_twin()
    twin_matrix, twin_power = candidates.candidate_references(spectrum, matrices,
                                                                     search, masking)
    np.testing.assert_allclose(twin_matrix, matrix, atol=1e-5 * np.abs(matrix).max())
    np.testing.assert_allclose(twin_power, power, atol=1e-5 * power.max())


def test_distinct_starts_skip_near_poses_and_unmet_ones():
    """Greedy in score order: a pose within the separation of one taken is skipped, an unmet
    pose (-inf) never taken, and the best repeated where too few are distinct."""
    angles = np.array([[[10.0, 40.0, 0.0], [12.0, 40.0, 0.0], [60.0, 40.0, 0.0],
                        [10.0, 90.0, 30.0]],
                       [[10.0, 40.0, 0.0], [11.0, 40.0, 0.0], [70.0, 90.0, 0.0],
                        [0.0, 0.0, 0.0]]])
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, -np.inf]])
    take = local_refinement.distinct_starts(angles, scores, starts=3, min_angle_deg=5.0)
    np.testing.assert_array_equal(take, [[0, 2, 3], [0, 2, 0]])
    # a pose scoring more than max_gap below the particle's best is no start
    near_best = local_refinement.distinct_starts(angles, scores, starts=3, min_angle_deg=5.0,
                                                 max_gap=0.25)
    np.testing.assert_array_equal(near_best, [[0, 2, 0], [0, 2, 0]])
    only_best = local_refinement.distinct_starts(angles, scores, starts=3, min_angle_deg=5.0,
                                                 max_gap=0.15)
    np.testing.assert_array_equal(only_best, [[0, 0, 0], [0, 0, 0]])


def test_refining_from_several_starts_keeps_the_best_refined_one(spectrum):
    """A wrong start ranked first does not hide the right one ranked second: the refinement
    from both ends at the truth, with the first start's score no higher than the kept one."""
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 8, pixel_size_a=4.0, snr=np.inf, ctf=False,
                                       max_shift_px=1.0, seed=5)
    search = Search.create(32, 4.0, max_shift_px=2.0, step_deg=8.0)
    near = parts.angles_deg + np.array([2.0, -2.0, 2.0])
    wrong = parts.angles_deg + np.array([0.0, 50.0, 90.0])
    starts = np.stack([wrong, near], axis=1)
    peaks = np.zeros((len(images), 2, 2))
    angles, score, _, count = local_refinement.refine_starts(images, spectrum, starts, peaks,
                                                              search=search)
    wrong_only = local_refinement.refine_poses(images, spectrum, wrong, search=search)
    near_only = local_refinement.refine_poses(images, spectrum, near, search=search)
    before = symmetric_pose_distance_deg(near, parts.angles_deg, "c1")
    after = symmetric_pose_distance_deg(angles, parts.angles_deg, "c1")
    assert np.all(after < 4.0) and np.median(after) < np.median(before), (before, after)
    assert np.all(symmetric_pose_distance_deg(wrong_only[0], parts.angles_deg, "c1") > 20.0)
    np.testing.assert_allclose(score, near_only[1], atol=2e-3)
    assert np.all(score > wrong_only[1])
    assert count == 27 * (2 + local_refinement.ITERATIONS - 1) * len(images)


def test_start_score_gap_is_the_noise_of_a_correlation_on_the_band(monkeypatch):
    """The gap scales as one over the root of the band's degrees of freedom: a band with four
    times the weight has half the gap; no gap when the setting is None."""
    small = Search.create(32, 4.0, max_shift_px=2.0, step_deg=8.0).band.weight
    gap = local_refinement.start_score_gap(small)
    assert gap == pytest.approx(local_refinement.START_SCORE_GAP / np.sqrt(small.sum()))
    assert local_refinement.start_score_gap(np.tile(small, 4)) == pytest.approx(gap / 2)
    monkeypatch.setattr(local_refinement, "START_SCORE_GAP", None)
    assert local_refinement.start_score_gap(small) is None
