"""One search for every class (core/classes/mean_map.py): on two maps that share most of their
structure (the phantom with a small ball removed: correlation 0.93), the poses found against
the classes' mean map, the class decided at each particle's pose and the pose searched again
in its class's map in that region tell the maps apart and find the poses as K searches do, at
about half their comparisons for K = 2; a class-B particle given only class-A pairs in its
region is classed B; "auto" takes the mean map only for maps that correlate enough (not for
the phantom pair of a third of the mass removed, 0.79, where it classes worse); a bad choice
is refused by name; the default is read when called."""
import re

import numpy as np
import pytest

from scipion_deepalign.core import defaults
from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.classes import align_class_pairs, align_classes, simulate_mixture
from scipion_deepalign.core.classes.mean_map import mean_map
from scipion_deepalign.core.classes.references import class_references
from scipion_deepalign.core.cnn.pairs import ClassPairs
from scipion_deepalign.core.regions import region_centres_deg, region_distances_deg
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg
from scipion_deepalign.tests.helpers import phantom_pair

PIXEL_A = 4.0
SEARCH = dict(max_shift_px=3.0, step_deg=10.0, device="cpu")


@pytest.fixture(scope="module")
def maps():
    return phantom_pair(radius_px=2.0)  # correlation 0.93


@pytest.fixture(scope="module")
def mixture(maps):
    images, particles, classes = simulate_mixture(maps, 40, pixel_size_a=PIXEL_A, snr=0.3,
                                                  ctf=True, max_shift_px=2.0, seed=3)
    return images, particles, classes


def test_one_search_tells_two_maps_apart_at_the_cost_of_one(maps, mixture):
    images, particles, classes = mixture
    result = align_classes(images, maps, pixel_size_a=PIXEL_A, ctf=particles.ctf,
                           class_search="mean", **SEARCH)
    assert result.mean_map_search
    each = align_classes(images, maps, pixel_size_a=PIXEL_A, ctf=particles.ctf,
                         class_search="each", **SEARCH)
    assert not each.mean_map_search
    assert np.mean(result.classes == classes) >= 0.95  # chance 0.5
    assert np.mean(result.classes == classes) >= np.mean(each.classes == classes) - 0.025
    err = symmetric_pose_distance_deg(result.alignment.angles_deg, particles.angles_deg, "c1")
    err_each = symmetric_pose_distance_deg(each.alignment.angles_deg, particles.angles_deg,
                                           "c1")
    assert np.median(err) < 10.0
    assert np.median(err) <= np.median(err_each) + 1.0
    np.testing.assert_array_equal(result.common_pose_cc.argmax(axis=1), result.classes)
    assert np.all((result.probability >= 0.5) & (result.probability <= 1.0))
    # one search over the sphere and one region's in the class's map: more than one map's
    # search, little more than half of the two maps' searches
    one = align_particles(images, maps[0], pixel_size_a=PIXEL_A, ctf=particles.ctf, **SEARCH)
    assert each.alignment.n_comparisons == 2 * one.n_comparisons
    assert one.n_comparisons < result.alignment.n_comparisons < 0.6 * each.alignment.n_comparisons
    # the scores hold the second searches' scores, in both classes (the two best of two)
    assert defaults.CLASS_MEAN_SECOND_CLASSES == 2
    assert np.all(np.isfinite(result.scores).sum(axis=1) == 2)


def test_progress_counts_every_particle_once(maps, mixture):
    """The one search and the second searches (two classes a particle) report the particles
    once in all: a progress bar ends at 100 %, not beyond."""
    images, particles, _ = mixture
    done = []
    align_classes(images[:8], maps, pixel_size_a=PIXEL_A, ctf=particles.ctf.subset(np.arange(8)),
                  class_search="mean", progress=lambda n, **info: done.append(n), **SEARCH)
    assert sum(done) == pytest.approx(8.0)


def test_the_second_search_in_the_best_class_only(maps, mixture, monkeypatch):
    """With one class searched again (the mean map's best at its pose), each particle holds one
    score, that of its class, and the classes are still told apart, for fewer comparisons."""
    images, particles, classes = mixture
    two = align_classes(images, maps, pixel_size_a=PIXEL_A, ctf=particles.ctf,
                        class_search="mean", **SEARCH)
    monkeypatch.setattr(defaults, "CLASS_MEAN_SECOND_CLASSES", 1)
    one = align_classes(images, maps, pixel_size_a=PIXEL_A, ctf=particles.ctf,
                        class_search="mean", **SEARCH)
    assert np.all(np.isfinite(one.scores).sum(axis=1) == 1)
    assert np.all(np.isfinite(one.scores[np.arange(len(classes)), one.classes]))
    assert np.mean(one.classes == classes) >= 0.9
    assert one.alignment.n_comparisons < two.alignment.n_comparisons


def test_mean_map_is_the_mean_of_the_references_scaled_alike(maps):
    a, b = maps
    refs = class_references([a, 4.0 * b + 2.0])
    np.testing.assert_allclose(mean_map(refs), (refs[0] + refs[1]) / 2, atol=1e-6)


def _pairs(classes_per_particle, regions):
    """Pairs ``(class k, region r)`` for each region of ``regions`` (N, r) and each k of
    ``classes_per_particle``."""
    regions = np.asarray(regions).reshape(len(regions), -1)
    n, m = len(regions), len(classes_per_particle) * regions.shape[1]
    cls = np.tile(np.asarray(classes_per_particle, dtype=np.int64), (n, regions.shape[1]))
    return ClassPairs(classes=cls, regions=np.repeat(regions, len(classes_per_particle), axis=1),
                      probabilities=np.full((n, m), 1.0 / m),
                      class_probabilities=np.full((n, 2), 0.5))


@pytest.fixture(scope="module")
def clean_pair_mixture(maps):
    images, particles, classes = simulate_mixture(maps, 12, pixel_size_a=PIXEL_A, snr=3.0,
                                                  ctf=False, seed=5)
    centres = region_centres_deg(45.0, "c1")
    regions = np.argsort(region_distances_deg(particles.angles_deg, centres, "c1"),
                         axis=1)[:, :3]  # the three nearest, the true region first
    return images, classes, centres, regions


def test_a_class_b_particle_in_class_a_pairs_takes_b(maps, clean_pair_mixture):
    """The one search takes every pair's region against the mean map and decides over all the
    maps: a class-B particle given only class-A pairs (in its own region) is classed B."""
    images, classes, centres, regions = clean_pair_mixture
    assert (classes == 1).sum() >= 3
    result = align_class_pairs(images, maps, _pairs([0], regions[:, 0]), pixel_size_a=PIXEL_A,
                               centres_deg=centres, class_search="mean", **SEARCH)
    np.testing.assert_array_equal(result.classes, classes)
    assert result.alignment.info["mode"] == "class pairs, one search (mean map)"


def test_pairs_of_both_classes_cost_one_search_and_two_regions(maps, clean_pair_mixture):
    """Both classes' pairs in three regions: the classes' own searches make two searches of
    three regions, the mean map's one of three and, for its two best classes, two of a single
    region (its windows overlap the three regions' much: 45-degree regions)."""
    images, classes, centres, regions = clean_pair_mixture
    pairs = _pairs([0, 1], regions)
    plain = SearchOptions(probability_mass=None, fallback_significance=0.0)  # no fallback
    mean = align_class_pairs(images, maps, pairs, pixel_size_a=PIXEL_A, centres_deg=centres,
                             class_search="mean", search=plain, **SEARCH)
    each = align_class_pairs(images, maps, pairs, pixel_size_a=PIXEL_A, centres_deg=centres,
                             class_search="each", search=plain, **SEARCH)
    assert mean.alignment.n_comparisons < 0.9 * each.alignment.n_comparisons
    np.testing.assert_array_equal(mean.classes, classes)


def test_auto_takes_the_mean_map_only_for_maps_alike(maps, mixture):
    images, particles, _ = mixture
    few = dict(pixel_size_a=PIXEL_A, ctf=particles.ctf.subset(np.arange(4)), **SEARCH)
    alike = align_classes(images[:4], maps, class_search="auto", **few)
    assert alike.mean_map_search
    said = re.fullmatch(r"mean \(auto: every two maps correlate at least (0\.\d+) >= 0\.9\)",
                        alike.class_search)
    assert said and 0.92 <= float(said.group(1)) <= 0.94  # the pair's 0.93, and the gate
    apart = phantom_pair()  # a third of the mass removed: correlation 0.79
    apart = align_classes(images[:4], apart, class_search="auto", **few)
    assert not apart.mean_map_search
    said = re.fullmatch(r"each \(auto: two maps correlate only (0\.\d+) < 0\.9\)",
                        apart.class_search)
    assert said and 0.77 <= float(said.group(1)) <= 0.81


def test_a_bad_class_search_is_refused_by_name(maps, mixture):
    images, particles, _ = mixture
    with pytest.raises(ValueError, match="class search must be one of each, mean, auto, got 'all'"):
        align_classes(images[:2], maps, pixel_size_a=PIXEL_A, class_search="all", **SEARCH)


def test_the_default_is_read_when_called(maps, mixture, monkeypatch):
    images, particles, classes = mixture
    monkeypatch.setattr(defaults, "CLASS_SEARCH", "mean")
    result = align_classes(images[:6], maps, pixel_size_a=PIXEL_A, ctf=particles.ctf.subset(
        np.arange(6)), **SEARCH)
    assert result.mean_map_search
