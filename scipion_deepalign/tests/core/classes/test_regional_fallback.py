"""The significance fallback of the search in predicted (class, region) pairs searches the
particles it catches globally over every class (core/classes/regional.py, issue 25): a
particle of class B given only a wrong class-A pair, caught, ends up in class B; the particles
it does not catch are not searched again, and each class's comparisons grow by exactly one
global search per particle caught.

Tiny: phantom_pair (32 px), 24 particles at SNR 1, pairs given by hand (the true class and
region, or for two class-B particles a class-A pair in their farthest region), 12 regions.
The threshold is set from a first pass without the fallback (just above the significance of
the wrongly paired) and the separation rule is switched off (the mechanics only, as in
tests/core/align/test_significance.py: on this small phantom right and wrong poses alike have
significances below 1)."""
import numpy as np
import pytest

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.classes import align_class_pairs, simulate_mixture
from scipion_deepalign.core.cnn.pairs import ClassPairs
from scipion_deepalign.core.regions import region_centres_deg, region_distances_deg
from scipion_deepalign.tests.helpers import phantom_pair

PIXEL_A, N = 4.0, 24
SEARCH = dict(pixel_size_a=PIXEL_A, max_shift_px=3.0, step_deg=10.0, device="cpu")


@pytest.fixture(scope="module")
def mixture():
    maps = phantom_pair()
    images, particles, classes = simulate_mixture(maps, N, pixel_size_a=PIXEL_A, snr=1.0,
                                                  ctf=True, max_shift_px=1.0, seed=3)
    centres = region_centres_deg(60.0, "c1")
    distance = region_distances_deg(particles.angles_deg, centres, "c1")
    wrong = np.flatnonzero(classes == 1)[:2]
    paired, regions = classes.copy(), distance.argmin(axis=1)
    paired[wrong], regions[wrong] = 0, distance.argmax(axis=1)[wrong]
    pairs = ClassPairs(classes=paired[:, None], regions=regions[:, None],
                       probabilities=np.ones((N, 1)), class_probabilities=np.eye(2)[paired])
    return maps, images, particles, classes, centres, pairs, wrong


def _search(mixture, threshold):
    maps, images, particles, _, centres, pairs, _ = mixture
    return align_class_pairs(images, maps, pairs, centres_deg=centres, ctf=particles.ctf,
                             search=SearchOptions(probability_mass=None,
                                                  fallback_significance=threshold), **SEARCH)


def test_the_fallback_searches_the_caught_over_every_class(mixture, monkeypatch):
    from scipion_deepalign.core.align import fallback as fallback_module

    maps, images, particles, classes, centres, pairs, wrong = mixture
    off = _search(mixture, 0.0)
    assert np.all(off.classes[wrong] == 0)  # searched in class A only: classed A
    assert not off.alignment.fallback.any()
    monkeypatch.setattr(fallback_module, "SIGNIFICANCE_SEPARATION", 0.0)
    threshold = float(off.alignment.significance[wrong].max()) + 1e-3
    caught = off.alignment.significance < threshold
    assert 2 <= caught.sum() < N  # the wrongly paired and a few others, not all
    on = _search(mixture, threshold)
    assert np.all(on.classes[wrong] == 1)  # found in class B
    np.testing.assert_array_equal(on.alignment.fallback, caught)
    assert on.alignment.info["class_fallback_fraction"] == pytest.approx(caught.mean())
    assert np.all(np.isfinite(on.scores[caught]))  # every class searched
    assert np.all(on.alignment.n_regions_searched[caught] == len(centres))
    assert np.mean(on.classes == classes) >= np.mean(off.classes == classes) + 2 / N
    # the others are not searched again: one class, the same scores, class and pose
    np.testing.assert_array_equal(on.scores[~caught], off.scores[~caught])
    np.testing.assert_array_equal(on.classes[~caught], off.classes[~caught])
    np.testing.assert_allclose(on.alignment.angles_deg[~caught],
                               off.alignment.angles_deg[~caught])
    # each class compared each caught particle once more, with the global grid (whether its
    # own fallback or the pass over every class searched it)
    one = align_particles(images[:1], maps[0], centres_deg=centres, ctf=particles.ctf.subset(
        np.arange(1)), **SEARCH).n_comparisons
    np.testing.assert_array_equal(
        on.n_comparisons_per_class,
        np.asarray(off.n_comparisons_per_class) + one * int(caught.sum()))
    assert on.alignment.n_comparisons == sum(on.n_comparisons_per_class)


def test_nothing_caught_searches_nothing_again(mixture):
    """A threshold no particle falls below (the separation rule as it is): the result of the
    search without the fallback, comparisons included."""
    off = _search(mixture, 0.0)
    low = _search(mixture, 1e-6)
    assert not low.alignment.fallback.any()
    assert low.n_comparisons_per_class == off.n_comparisons_per_class
    np.testing.assert_array_equal(low.classes, off.classes)
    np.testing.assert_array_equal(low.scores, off.scores)
