"""Known-answer tests of align_particles on noiseless simulated particles (no CTF)."""
import numpy as np
import pytest

from scipion_deepalign.core.align import local_refinement
from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.defaults import REFINE_STARTS
from scipion_deepalign.core.imageops import translate_images
from scipion_deepalign.core.projection import project
from scipion_deepalign.core.regions import nearest_regions, region_centres_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import (
    symmetric_direction_distance_deg,
    symmetric_pose_distance_deg,
)

PIXEL_A = 4.0
STEP_DEG = 8.0


@pytest.fixture(scope="module")
def volume():
    return make_phantom(32, seed=0)


@pytest.fixture(scope="module")
def noiseless(volume):
    images, parts = simulate_particles(volume, 12, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       max_shift_px=3.0, seed=1)
    return images, parts


@pytest.fixture(scope="module")
def global_result(volume, noiseless):
    images, _ = noiseless
    return align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=4.0,
                           step_deg=STEP_DEG, device="cpu", refine=False)  # the gallery's poses


def test_global_recovers_poses_and_shifts(noiseless, global_result):
    _, parts = noiseless
    res = global_result
    direction_err = symmetric_direction_distance_deg(res.angles_deg, parts.angles_deg, "c1")
    pose_err = symmetric_pose_distance_deg(res.angles_deg, parts.angles_deg, "c1")
    # Off-grid poses: the nearest grid pose is ~0.6 step away, and this smooth 32-px phantom
    # lets direction, in-plane angle and shift trade off a little.
    assert np.mean(direction_err <= 1.25 * STEP_DEG) >= 0.9, direction_err
    assert np.median(pose_err) < STEP_DEG, pose_err
    assert np.max(pose_err) < 3 * STEP_DEG, pose_err
    assert np.max(np.abs(res.shifts_px - parts.shifts_px)) < 0.6
    assert np.all(res.score > 0.95) and np.all(res.score <= 1.0 + 1e-5)
    assert np.all(res.region == -1)
    info = res.info
    assert res.n_comparisons == len(parts) * info["n_directions"] * info["n_psi"]


def test_grid_poses_are_recovered_exactly(volume):
    """Particles made at gallery poses with integer shifts: the exact pose must win."""
    from scipion_deepalign.core.align.gallery import global_directions_deg, psi_grid_deg
    from scipion_deepalign.core.particles import Particles
    from scipion_deepalign.core.simulate import clean_particle_images

    rng = np.random.default_rng(7)
    dirs = global_directions_deg("c1", STEP_DEG)
    psi = psi_grid_deg(STEP_DEG)
    angles = np.c_[dirs[rng.choice(len(dirs), 6)], psi[rng.choice(len(psi), 6)]]
    shifts = rng.integers(-3, 4, size=(6, 2)).astype(float)
    parts = Particles([f"{i + 1}@x.mrcs" for i in range(6)], PIXEL_A, 32, angles, shifts)
    images = clean_particle_images(volume, parts)
    res = align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=4.5,
                          step_deg=STEP_DEG, device="cpu")
    np.testing.assert_allclose(symmetric_pose_distance_deg(res.angles_deg, angles, "c1"), 0,
                               atol=1e-3)
    assert np.max(np.abs(res.shifts_px - shifts)) < 0.15


def test_result_follows_geometry_convention(volume, noiseless, global_result):
    """particle ~ translate_images(project(volume, angles), -shifts)."""
    images, _ = noiseless
    res = global_result
    model = translate_images(project(volume, res.angles_deg), -res.shifts_px)
    wrong_sign = translate_images(project(volume, res.angles_deg), res.shifts_px)
    for img, good in zip(images, model):
        assert np.corrcoef(img.ravel(), good.ravel())[0, 1] > 0.95
    ncc_bad = [np.corrcoef(i.ravel(), b.ravel())[0, 1] for i, b in zip(images, wrong_sign)]
    assert np.median(ncc_bad) < 0.9


def test_regional_with_true_hints_matches_global(volume, noiseless, global_result):
    images, parts = noiseless
    centres = region_centres_deg(30.0, "c1")
    hints = nearest_regions(parts.angles_deg, centres, "c1", k=2)
    res = align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=4.0,
                          step_deg=STEP_DEG, device="cpu", region_hints=hints,
                          centres_deg=centres)
    glob = align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=4.0,
                           step_deg=STEP_DEG, device="cpu", centres_deg=centres)
    # Same gallery directions in both modes: where the global optimum lies in a hinted region,
    # the regional answer is the same pose.
    same = symmetric_pose_distance_deg(res.angles_deg, glob.angles_deg, "c1") < 1e-3
    assert np.mean(same) >= 0.9
    np.testing.assert_allclose(res.score[same], glob.score[same], atol=1e-5)
    assert np.all(res.score <= glob.score + 1e-5)
    assert np.all((res.region == hints[:, 0]) | (res.region == hints[:, 1]))
    assert res.n_comparisons * 10 < glob.n_comparisons
    # The union-of-regions global gallery is the same size as the plain asymmetric-unit one.
    assert glob.info["n_directions"] == global_result.info["n_directions"]


def test_wrong_hints_give_low_scores(volume, noiseless):
    images, parts = noiseless
    centres = region_centres_deg(30.0, "c1")
    right = nearest_regions(parts.angles_deg, centres, "c1", k=1)
    far = nearest_regions(-np.asarray(parts.angles_deg)[:, :2] + [0.0, 180.0], centres, "c1",
                          k=1)  # the antipodal region
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=4.0, step_deg=STEP_DEG, device="cpu",
                  centres_deg=centres, refine=False)
    good = align_particles(images, volume, region_hints=right, **kwargs)
    bad = align_particles(images, volume, region_hints=far, **kwargs)
    # The antipodal view is the mirror image, the hardest wrong region for a blob phantom.
    assert np.all(bad.score < good.score)
    assert np.mean(good.score - bad.score) > 0.02
    err = symmetric_direction_distance_deg(bad.angles_deg, parts.angles_deg, "c1")
    assert np.median(err) > 60


def test_downsampled_search_returns_original_pixels():
    volume = make_phantom(48, seed=2)
    images, parts = simulate_particles(volume, 6, pixel_size_a=2.0, snr=np.inf, ctf=False,
                                       max_shift_px=5.0, seed=3)
    res = align_particles(images, volume, pixel_size_a=2.0, max_shift_px=6.0,
                          target_resolution_a=8.0, step_deg=10.0, device="cpu")
    assert res.info["box_px"] == 24 and res.info["scale"] == 2.0
    assert np.max(np.abs(res.shifts_px - parts.shifts_px)) < 1.0  # one search pixel = 2 px
    err = symmetric_pose_distance_deg(res.angles_deg, parts.angles_deg, "c1")
    assert np.median(err) < 10.0


def test_symmetric_map_searches_the_asymmetric_unit_only():
    volume = make_phantom(32, symmetry="c4", seed=4)
    images, parts = simulate_particles(volume, 8, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       seed=5)
    res = align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=2.0,
                          step_deg=STEP_DEG, symmetry="C4", device="cpu")
    err = symmetric_pose_distance_deg(res.angles_deg, parts.angles_deg, "c4")
    assert np.median(err) < STEP_DEG
    n_c1 = len(region_centres_deg(STEP_DEG, "c1"))  # about the whole-sphere grid size
    assert res.info["n_directions"] < 0.4 * n_c1


def test_n_best_poses_and_weights(volume, noiseless):
    images, _ = noiseless
    res = align_particles(images[:3], volume, pixel_size_a=PIXEL_A, max_shift_px=4.0,
                          step_deg=STEP_DEG, device="cpu", n_best=4)
    assert res.n_best_angles_deg.shape == (3, 4, 3) and res.n_best_shifts_px.shape == (3, 4, 2)
    np.testing.assert_allclose(res.n_best_weights.sum(axis=1), 1.0)
    assert np.all(np.diff(res.n_best_scores, axis=1) <= 0)
    np.testing.assert_allclose(res.n_best_scores[:, 0], res.score)
    np.testing.assert_allclose(res.n_best_angles_deg[:, 0], res.angles_deg)
    assert np.all(res.n_best_weights[:, 0] >= res.n_best_weights[:, -1])


def test_gallery_cache_on_disk(volume, noiseless, tmp_path):
    images, _ = noiseless
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=12.0, device="cpu",
                  cache_dir=str(tmp_path))
    first = align_particles(images[:2], volume, **kwargs)
    files = list(tmp_path.glob("gallery_*.npy"))
    assert len(files) == 1
    second = align_particles(images[:2], volume, **kwargs)
    np.testing.assert_array_equal(first.angles_deg, second.angles_deg)


@pytest.mark.parametrize("kwargs, message", [
    (dict(volume_box=24), "volume: box 24 px differs from the particle box 32 px"),
    (dict(volume_pixel_size_a=5.0), "volume: pixel size 5 A differs from the particles' 4 A"),
    (dict(max_shift_px=17.0), r"max_shift_px must be in \[0, 16.0\]"),
    (dict(symmetry="x7"), "symmetry"),
    (dict(region_hints=np.array([[0], [42]])), r"region_hints must be in \[0, 42\)"),
    (dict(region_hints=np.array([[0]])), r"region_hints must have shape \(N, k\) with N = 2"),
    (dict(region_hints=np.array([[0], [1]]), no_centres=True), "region_hints needs centres_deg"),
    (dict(device="tpu"), "device must be one of"),
    (dict(ctf_mode="wiener"), "ctf_mode must be one of"),
    (dict(target_resolution_a=3.0), "finer than Nyquist"),
    (dict(step_deg=0.0), "step_deg must be a positive number"),
    (dict(n_best=0), "n_best must be a positive integer"),
], ids=["box", "pixel", "shift", "symmetry", "hint-range", "hint-shape", "hint-centres",
        "device", "ctf-mode", "resolution", "step", "n-best"])
def test_bad_inputs_are_named(volume, noiseless, kwargs, message):
    images = noiseless[0][:2]
    kwargs = dict(kwargs)
    vol = volume if "volume_box" not in kwargs else np.zeros((kwargs.pop("volume_box"),) * 3)
    args = dict(pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=STEP_DEG, device="cpu",
                centres_deg=None if kwargs.pop("no_centres", False)
                else region_centres_deg(30.0, "c1"))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        align_particles(images, vol, **args)


def test_out_of_memory_halves_the_batch(volume, noiseless, monkeypatch, caplog):
    """A block too big for the device is retried with half the particles, same answer."""
    from scipion_deepalign.core.align import matching

    images = noiseless[0][:6]
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=12.0, device="cpu")
    reference = align_particles(images, volume, **kwargs)
    real = matching.correlate_block
    sizes = []

    def limited(spectra, *args, **kw):
        sizes.append(len(spectra))
        if len(spectra) > 2:
            raise MemoryError("simulated out of memory")
        return real(spectra, *args, **kw)

    monkeypatch.setattr(matching, "correlate_block", limited)
    with caplog.at_level("WARNING"):
        res = align_particles(images, volume, batch_size=8, **kwargs)
    assert sizes[:3] == [6, 4, 2] and max(sizes[2:]) <= 2  # batch 8 -> 4 -> 2
    assert "out of memory" in caplog.text
    np.testing.assert_array_equal(res.angles_deg, reference.angles_deg)
    assert res.n_comparisons == reference.n_comparisons


def test_out_of_memory_halves_the_block_of_shifted_references(monkeypatch, caplog):
    """With fewer references than particles the shift goes on the references' side, and a
    block is bounded by the correlations held at once: an out-of-memory error halves that
    bound (40 -> 20 -> 10 particles), with the same best poses."""
    from scipion_deepalign.core.align import matching
    from scipion_deepalign.core.align.search import BestPoses, Search

    rng = np.random.default_rng(0)
    images = rng.normal(size=(40, 16, 16)).astype(np.float32)
    gallery = rng.normal(size=(1, 16, 16)).astype(np.float32)

    def search(engine):
        spectra, power = engine.particles(images)
        refs = engine.references(gallery)  # one direction: P in-plane copies
        best = BestPoses(len(images), 2)
        engine.keep_best(spectra, power, np.arange(len(images)), refs, best, ref_base=0)
        return best, refs[0].shape[0] * len(engine.offsets)

    def engine():
        return Search.create(16, PIXEL_A, max_shift_px=2.0, xp=np, step_deg=15.0)

    reference, mk = search(engine())
    assert mk // len(engine().offsets) < 40  # fewer references than particles
    real, sizes = matching.correlate_block, []

    def limited(spectra, *args, **kw):
        sizes.append(len(spectra))
        assert kw.get("shifted_refs") is not None  # the references' layout
        if len(spectra) > 10:
            raise MemoryError("simulated out of memory")
        return real(spectra, *args, **kw)

    monkeypatch.setattr(matching, "correlate_block", limited)
    small = engine()
    small.block_elements = 40 * mk  # one block of all 40 particles at first
    with caplog.at_level("WARNING"):
        found, _ = search(small)
    assert sizes[:3] == [40, 20, 10] and max(sizes[2:]) <= 10
    assert "out of memory" in caplog.text
    np.testing.assert_array_equal(found.ref, reference.ref)
    np.testing.assert_array_equal(found.shift, reference.shift)
    np.testing.assert_allclose(found.score, reference.score, rtol=1e-5)


def test_gallery_rotation_matches_projection_at_psi(volume):
    """rotate_to_psi(project at psi 0) == project at psi, and == imageops.rotate_images."""
    from scipion_deepalign.core.align.gallery import default_step_deg, rotate_to_psi
    from scipion_deepalign.core.imageops import rotate_images

    dirs = np.array([[30.0, 60.0], [100.0, 20.0]])
    psi = np.array([0.0, 37.0, -120.0])
    fast = rotate_to_psi(project(volume, np.c_[dirs, np.zeros(2)]), psi)
    for j, p in enumerate(psi):
        direct = project(volume, np.c_[dirs, np.full(2, p)])
        spline = rotate_images(project(volume, np.c_[dirs, np.zeros(2)]), np.full(2, p))
        for i in range(2):
            assert np.corrcoef(fast[i, j].ravel(), direct[i].ravel())[0, 1] > 0.999
            assert np.corrcoef(fast[i, j].ravel(), spline[i].ravel())[0, 1] > 0.9995
    assert default_step_deg(16.0) == pytest.approx(np.rad2deg(1 / 16))


def test_step_too_coarse_for_the_regions(volume, noiseless):
    images = noiseless[0][:3]
    centres = region_centres_deg(10.0, "c1")  # 400+ small regions, a 30 degree grid misses most
    exact = SearchOptions(overlap_deg=0.0, probability_mass=None)  # windows = the regions
    with pytest.raises(ValueError, match="step_deg 30 is too coarse for the regions"):
        align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=30.0,
                        device="cpu", centres_deg=centres, search=exact,
                        region_hints=np.arange(3)[:, None] + 100)
    # windows reaching into the neighbours find directions for them
    res = align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=2.0,
                          step_deg=30.0, device="cpu", centres_deg=centres,
                          search=SearchOptions(overlap_deg=40.0, probability_mass=None),
                          region_hints=np.arange(3)[:, None] + 100)
    assert res.n_comparisons > 0


def test_gpu_gives_the_cpu_answer(volume, noiseless):
    pytest.importorskip("cupy")
    from scipion_deepalign.core.runtime.backend import gpu_available

    if not gpu_available():
        pytest.skip("cupy installed but no usable GPU")
    images, parts = noiseless
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=4.0, step_deg=STEP_DEG, ctf=None)
    cpu = align_particles(images, volume, device="cpu", **kwargs)
    gpu = align_particles(images, volume, device="gpu", **kwargs)
    assert gpu.info["backend"] == "cupy"
    np.testing.assert_allclose(gpu.score, cpu.score, atol=1e-4)
    assert np.mean(symmetric_pose_distance_deg(gpu.angles_deg, cpu.angles_deg, "c1") < 1e-3) > 0.9
    np.testing.assert_allclose(gpu.shifts_px, cpu.shifts_px, atol=0.05)


def test_refinement_is_the_default_after_a_coarser_automatic_gallery(volume, noiseless):
    """By default the gallery step is two pixels at the particle radius and the poses are
    refined: fewer comparisons than the one-pixel gallery alone, and more accurate poses."""
    from scipion_deepalign.core.align.gallery import default_step_deg
    from scipion_deepalign.core.defaults import REFINE

    images, parts = noiseless
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=4.0, device="cpu")
    default = align_particles(images, volume, **kwargs)
    fine = align_particles(images, volume, refine=False, **kwargs)
    assert REFINE and default.info["refined"] and not fine.info["refined"]
    radius = 0.45 * volume.shape[0]
    assert fine.info["step_deg"] == pytest.approx(default_step_deg(radius))
    assert default.info["step_deg"] == pytest.approx(2.0 * fine.info["step_deg"])
    assert default.n_comparisons * 4 < fine.n_comparisons
    err_default = symmetric_pose_distance_deg(default.angles_deg, parts.angles_deg, "c1")
    err_fine = symmetric_pose_distance_deg(fine.angles_deg, parts.angles_deg, "c1")
    assert np.median(err_default) < np.median(err_fine), (err_default, err_fine)
    assert np.mean(err_default <= 5.0) >= np.mean(err_fine <= 5.0), (err_default, err_fine)


def test_local_refinement_goes_below_the_grid_step(volume, noiseless, global_result):
    images, parts = noiseless
    refined = align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=4.0,
                              step_deg=STEP_DEG, device="cpu", refine=True)
    before = symmetric_pose_distance_deg(global_result.angles_deg, parts.angles_deg, "c1")
    after = symmetric_pose_distance_deg(refined.angles_deg, parts.angles_deg, "c1")
    assert np.median(after) < 0.75 * np.median(before)
    assert np.median(after) < STEP_DEG / 2
    assert np.all(refined.score >= global_result.score - 2e-3)  # the start pose is a candidate
    # the gallery's comparisons as before; the refinement's candidates counted apart
    assert refined.n_comparisons == global_result.n_comparisons
    # 27 candidates around each of the distinct starts (a repeated start is searched once),
    # then 27 per further search
    starts, searches = REFINE_STARTS, local_refinement.ITERATIONS
    count = refined.n_refine_comparisons
    assert count % 27 == 0
    assert 27 * searches * len(images) <= count <= 27 * (starts + searches - 1) * len(images)
    assert refined.info["n_refine_comparisons"] == refined.n_refine_comparisons
    assert global_result.n_refine_comparisons == 0
    assert np.max(np.abs(refined.shifts_px - parts.shifts_px)) < 0.6
