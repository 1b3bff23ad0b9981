"""Classes against several maps: two different maps told apart on a simulated mixture, a
class-B particle takes B, the maps' checks fire before any search, the merge is exact."""
import numpy as np
import pytest

from scipion_deepalign.core.align.poses import AlignmentResult
from scipion_deepalign.core.classes import (
    align_classes,
    class_references,
    pick_classes,
    simulate_mixture,
)
from scipion_deepalign.tests.helpers import phantom_pair

PIXEL_A = 4.0
SEARCH = dict(max_shift_px=3.0, step_deg=10.0, device="cpu")


@pytest.fixture(scope="module")
def maps():
    return phantom_pair()


@pytest.fixture(scope="module")
def mixture(maps):
    images, particles, classes = simulate_mixture(maps, 40, pixel_size_a=PIXEL_A, snr=0.3,
                                                  ctf=True, max_shift_px=2.0, seed=3)
    result = align_classes(images, maps, pixel_size_a=PIXEL_A, ctf=particles.ctf, **SEARCH)
    return particles, classes, result


def test_two_maps_told_apart_far_above_chance(mixture):
    particles, classes, result = mixture
    assert 10 <= np.bincount(classes, minlength=2).min()  # both classes present
    accuracy = np.mean(result.classes == classes)
    assert accuracy >= 0.9, accuracy  # chance is 0.5
    # the poses are those of the class kept, and they are right
    from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

    err = symmetric_pose_distance_deg(result.alignment.angles_deg, particles.angles_deg, "c1")
    assert np.median(err) < 10.0
    np.testing.assert_array_equal(result.class_sizes(), np.bincount(result.classes, minlength=2))


def test_probability_and_comparisons_per_class(mixture):
    _, _, result = mixture
    assert np.all((result.probability >= 0.5) & (result.probability <= 1.0))
    # the class is decided by both maps at one pose (the best search score's)
    np.testing.assert_array_equal(result.common_pose_cc.argmax(axis=1), result.classes)
    assert len(result.n_comparisons_per_class) == 2
    assert min(result.n_comparisons_per_class) > 0
    assert result.alignment.n_comparisons == sum(result.n_comparisons_per_class)


def test_a_class_b_particle_takes_b(maps):
    a, b = maps
    # SNR 3: at SNR 1 one of these particles correlates better with A at another pose (0.699
    # against 0.693 for B near its own): the noise, not the search, decides there
    images, particles, classes = simulate_mixture([b], 3, pixel_size_a=PIXEL_A, snr=3.0,
                                                  ctf=False, seed=5)
    result = align_classes(images, [a, b], pixel_size_a=PIXEL_A, **SEARCH)
    np.testing.assert_array_equal(result.classes, [1, 1, 1])
    assert np.all(result.scores[:, 1] > result.scores[:, 0])
    # and the other way round: listed first, B is still B
    result = align_classes(images, [b, a], pixel_size_a=PIXEL_A, **SEARCH)
    np.testing.assert_array_equal(result.classes, [0, 0, 0])


def test_scale_and_offset_of_a_map_do_not_change_its_score(maps):
    a, b = maps
    images, _, _ = simulate_mixture([a], 3, pixel_size_a=PIXEL_A, snr=1.0, ctf=False, seed=2)
    plain = align_classes(images, [a, b], pixel_size_a=PIXEL_A, **SEARCH)
    scaled = align_classes(images, [7.0 * a + 3.0, 0.2 * b], pixel_size_a=PIXEL_A, **SEARCH)
    np.testing.assert_allclose(scaled.scores, plain.scores, atol=1e-4)


def test_references_are_scaled_alike(maps):
    refs = class_references([maps[0], 5.0 * maps[1] + 1.0])
    np.testing.assert_allclose(refs.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(refs.std(axis=(1, 2, 3)), 1.0, atol=1e-4)


def test_invalid_box_names_the_map(maps):
    images = np.zeros((2, 32, 32), np.float32)
    with pytest.raises(ValueError, match="B.mrc: box 24 px differs from A.mrc's 32 px"):
        align_classes(images, [maps[0], np.ones((24, 24, 24))], names=["A.mrc", "B.mrc"],
                      pixel_size_a=PIXEL_A, **SEARCH)


def test_invalid_pixel_size_names_the_map(maps):
    with pytest.raises(ValueError, match="B.mrc: pixel size 5 A differs from A.mrc's 4 A"):
        class_references(maps, pixel_sizes_a=[4.0, 5.0], names=["A.mrc", "B.mrc"])
    with pytest.raises(ValueError, match="B.mrc: pixel size 5 A differs from the particles'"):
        class_references(maps, pixel_sizes_a=[None, 5.0], names=["A.mrc", "B.mrc"],
                         pixel_size_a=4.0)


def test_invalid_constant_map(maps):
    with pytest.raises(ValueError, match="map 2 is constant"):
        class_references([maps[0], np.zeros_like(maps[0])])


def test_invalid_no_map():
    with pytest.raises(ValueError, match="at least one reference map"):
        class_references([])


def _result(score, angle):
    n = len(score)
    return AlignmentResult(angles_deg=np.full((n, 3), angle), shifts_px=np.zeros((n, 2)),
                           score=np.asarray(score, float), region=np.full(n, -1),
                           n_comparisons=10 * n, significance=np.ones(n))


def test_pick_classes_takes_each_particle_from_its_class():
    picked = pick_classes([_result([0.3, 0.1, 0.2], 1.0), _result([0.2, 0.4, 0.2005], 2.0)])
    np.testing.assert_array_equal(picked.classes, [0, 1, 1])
    np.testing.assert_array_equal(picked.alignment.angles_deg[:, 0], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(picked.alignment.score, [0.3, 0.4, 0.2005])
    # pose_weights' temperature: a lead of 0.1 is certain, one of 0.0005 near a coin toss
    np.testing.assert_allclose(picked.probability[:2], 1.0, atol=1e-4)
    assert 0.5 < picked.probability[2] < 0.52
    assert picked.alignment.n_comparisons == 60
    assert picked.n_comparisons_per_class == [30, 30]


def test_decided_classes_take_their_own_search_or_the_best_one():
    results = [_result([0.3, 0.1, -np.inf], 1.0), _result([0.2, 0.4, 0.25], 2.0)]
    picked = pick_classes(results, classes=np.array([1, 0, 0]),
                          probability=np.array([0.6, 0.7, 0.8]))
    np.testing.assert_array_equal(picked.classes, [1, 0, 0])
    # particle 3 was not searched in class 1 (score -inf): it keeps its best search's pose
    np.testing.assert_array_equal(picked.alignment.angles_deg[:, 0], [2.0, 1.0, 2.0])
    np.testing.assert_allclose(picked.probability, [0.6, 0.7, 0.8])
    with pytest.raises(ValueError, match="need their probability"):
        pick_classes(results, classes=np.array([1, 0, 0]))


def test_regional_windows_take_each_class_too(maps):
    """With region hints every class is searched in the same windows; the class still wins."""
    from scipion_deepalign.core.regions import nearest_regions, region_centres_deg

    images, particles, classes = simulate_mixture(maps, 20, pixel_size_a=PIXEL_A, snr=0.5,
                                                  ctf=True, seed=9)
    centres = region_centres_deg(30.0, "c1")
    hints = nearest_regions(particles.angles_deg, centres, "c1", k=2)
    result = align_classes(images, maps, pixel_size_a=PIXEL_A, region_hints=hints,
                           centres_deg=centres, ctf=particles.ctf, **SEARCH)
    assert np.mean(result.classes == classes) >= 0.9
    assert np.all(result.alignment.region >= 0)
    assert result.alignment.n_regions_searched is not None
    assert "mean_regions_searched" in result.alignment.info
