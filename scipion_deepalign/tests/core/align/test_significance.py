"""Peak significance of the best pose and the fallback that searches low-significance
particles again globally (SearchOptions.fallback_significance)."""
import numpy as np
import pytest

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.align.search import BestPoses, peak_significance
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.regions import region_centres_deg, region_distances_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg
from scipion_deepalign.tests.shared_data import shared_file


def test_the_best_of_noise_scores_has_significance_about_one():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.3, 0.05, size=(200, 20000))
    total, total_sq = noise.sum(1), (noise ** 2).sum(1)
    count = np.full(200, noise.shape[1])
    sig = peak_significance(noise.max(1), total, total_sq, count)
    assert 0.85 < np.median(sig) < 1.05, np.median(sig)
    peak = peak_significance(0.3 + 10 * 0.05, total, total_sq, count)  # a 10-sigma peak
    assert np.all(peak > 2.0)
    assert peak_significance([1.0], [1.0], [1.0], [1])[0] == 0.0  # one score: no spread


def test_best_poses_accumulate_the_statistics_of_every_score_met():
    rng = np.random.default_rng(1)
    best = BestPoses(5, 2)
    seen = [[] for _ in range(5)]
    for ref_base in (0, 7, 19):
        sel = np.sort(rng.choice(5, size=3, replace=False))
        score = rng.normal(size=(3, 7)).astype(np.float32)
        best.merge(score, np.zeros((3, 7), np.int64), sel, ref_base)
        for row, s in zip(sel, score):
            seen[row].extend(s.tolist())
    for row, scores in enumerate(seen):
        if len(scores) < 2:
            continue
        scores = np.asarray(scores, np.float64)
        expected = ((scores.max() - scores.mean()) / scores.std()
                    / np.sqrt(2 * np.log(len(scores))))
        np.testing.assert_allclose(best.significance()[row], expected, rtol=1e-5)


def test_a_second_search_absorbed_is_as_if_met_in_the_first():
    """BestPoses.absorb (the search around the kept poses): the N best of both searches, the
    second's references offset, the statistics of every score met."""
    rng = np.random.default_rng(2)
    score_a, score_b = (rng.normal(size=(4, n)).astype(np.float32) for n in (9, 5))
    shifts_a, shifts_b = rng.integers(0, 13, (4, 9)), rng.integers(0, 13, (4, 5))
    rows = np.arange(4)
    one = BestPoses(4, 3)
    one.merge(score_a, shifts_a, rows, 0)
    one.merge(score_b, shifts_b, rows, 100)
    first, second = BestPoses(4, 3), BestPoses(4, 3)
    first.merge(score_a, shifts_a, rows, 0)
    second.merge(score_b, shifts_b, rows, 0)
    first.absorb(second, ref_base=100)
    for name in ("score", "ref", "shift", "total", "total_sq", "count"):
        np.testing.assert_allclose(getattr(first, name), getattr(one, name), rtol=1e-12)
    np.testing.assert_allclose(first.significance(), one.significance())


@pytest.fixture(scope="module")
def phantom_case():
    volume = make_phantom(32, seed=3)
    images, parts = simulate_particles(volume, 16, pixel_size_a=4.0, snr=1.0, ctf=True,
                                       max_shift_px=2.0, seed=5)
    centres = region_centres_deg(45.0, "c1")
    truth = np.argmin(region_distances_deg(parts.angles_deg, centres, "c1"), axis=1)
    kwargs = dict(pixel_size_a=4.0, max_shift_px=3.0, step_deg=10.0, ctf=parts.ctf,
                  centres_deg=centres)
    return volume, images, truth, kwargs


def _regional(phantom_case, threshold):
    volume, images, truth, kwargs = phantom_case
    return align_particles(images, volume, region_hints=truth[:, None],
                           search=SearchOptions(probability_mass=None,
                                                fallback_significance=threshold), **kwargs)


def test_fallback_searches_again_exactly_the_particles_below_the_threshold(phantom_case,
                                                                          monkeypatch):
    from scipion_deepalign.core.align import fallback as fallback_module

    monkeypatch.setattr(fallback_module, "SIGNIFICANCE_SEPARATION", 0.0)  # the mechanics only
    volume, images, _, kwargs = phantom_case
    off = _regional(phantom_case, 0.0)
    assert not off.fallback.any() and off.info["significance_fallback_fraction"] == 0
    threshold = float(np.median(off.significance))
    low = off.significance < threshold
    gated = _regional(phantom_case, threshold)
    glob = align_particles(images, volume, **kwargs)  # the global search, the same grid
    np.testing.assert_array_equal(gated.fallback, low)
    np.testing.assert_allclose(gated.angles_deg[low], glob.angles_deg[low])
    np.testing.assert_allclose(gated.score[low], glob.score[low], atol=1e-6)  # other blocks
    np.testing.assert_allclose(gated.angles_deg[~low], off.angles_deg[~low])
    assert gated.n_comparisons == off.n_comparisons + glob.n_comparisons * low.sum() // 16
    # the second pass reuses the first one's projections: each direction projected once
    assert gated.info["n_projected"] == glob.info["n_directions"]
    assert off.info["n_projected"] < glob.info["n_directions"]
    assert gated.info["fallback_fraction"] == pytest.approx(low.mean())
    assert (gated.n_regions_searched[low] == len(kwargs["centres_deg"])).all()


def test_low_significance_finds_the_particles_searched_in_the_wrong_region():
    """70S ribosome at SNR 0.1: a quarter of the particles are given a region 90 deg from theirs;
    their best poses there have low significance, they are searched again, and found."""
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import read_volume

    volume, pixel = read_volume(str(shared_file("clean70SRibosome_vol_65p.mrc")))
    volume, pixel = volume[:64, :64, :64], pixel or 5.0
    images, parts = simulate_particles(volume, 24, pixel_size_a=pixel, snr=0.1, ctf=True,
                                       max_shift_px=2.0, seed=5,
                                       defocus_range_a=(10000.0, 25000.0))
    reference = low_pass_volume(volume, pixel_size_a=pixel, resolution_a=15.0)
    centres = region_centres_deg(30.0, "c1")
    distance = region_distances_deg(parts.angles_deg, centres, "c1")
    wrong = np.arange(24) % 4 == 0
    hints = np.where(wrong, np.argmin(np.abs(distance - 90.0), axis=1), distance.argmin(1))
    res = align_particles(images, reference, pixel_size_a=pixel, max_shift_px=3.0,
                          ctf=parts.ctf, centres_deg=centres, region_hints=hints[:, None],
                          target_resolution_a=20.0,
                          search=SearchOptions(probability_mass=None, fallback_significance=1.2))
    assert res.info["significance_separates"] is True
    assert res.fallback[wrong].all() and not res.fallback[~wrong].any(), res.significance
    err = symmetric_pose_distance_deg(res.angles_deg, parts.angles_deg, "c1")
    assert np.mean(err < 10) >= 0.95, err


def test_not_used_where_the_significance_does_not_separate(phantom_case, caplog):
    """A small smooth phantom searched on a 16 px box: right and wrong poses alike have
    significances below 1, so the fallback would search (nearly) everything again."""
    off = _regional(phantom_case, 0.0)
    assert np.percentile(off.significance, 75) < 1.0
    with caplog.at_level("INFO", logger="scipion_deepalign.core.align.fallback"):
        res = _regional(phantom_case, 1.2)
    assert not res.fallback.any() and res.info["significance_separates"] is False
    assert res.n_comparisons == off.n_comparisons
    assert "significance fallback not used" in caplog.text


def test_a_threshold_most_particles_miss_is_warned_about(phantom_case, caplog, monkeypatch):
    from scipion_deepalign.core.align import fallback as fallback_module

    monkeypatch.setattr(fallback_module, "SIGNIFICANCE_SEPARATION", 0.0)
    with caplog.at_level("WARNING", logger="scipion_deepalign.core.align.fallback"):
        res = _regional(phantom_case, 5.0)
    assert res.fallback.all()
    assert "the significance fallback sends 100 % of the particles" in caplog.text
    assert "lower --fallback-significance or set it to 0" in caplog.text


def test_the_second_pass_shows_its_own_progress(phantom_case, caplog, monkeypatch):
    from scipion_deepalign.core.align import fallback as fallback_module
    from scipion_deepalign.core.runtime.progress import Progress

    monkeypatch.setattr(fallback_module, "SIGNIFICANCE_SEPARATION", 0.0)
    volume, images, truth, kwargs = phantom_case
    with caplog.at_level("INFO"), Progress(len(images), "align") as progress:
        res = align_particles(images, volume, region_hints=truth[:, None], progress=progress,
                              search=SearchOptions(probability_mass=None,
                                                   fallback_significance=5.0), **kwargs)
    assert res.fallback.all()
    assert "align (global fallback): 100% (16 of 16 particles)" in caplog.text
