"""The joint class x region output (core/cnn/joint.py): targets in their class's block, the
marginals, the pairs taken until the probability mass, each class's members and hints, one
signal scale for the K maps' projections, the class fractions estimated from the outputs.
No training (fast)."""
import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core.cnn.joint import (  # noqa: E402
    ClassProjectionSource,
    class_probabilities,
    estimate_class_fractions,
    joint_targets,
    region_marginal,
    split_joint,
)
from scipion_deepalign.core.cnn.pairs import (  # noqa: E402
    search_pairs,
    search_top_pairs,
    select_pairs,
    top_pairs,
)


def test_targets_sit_in_the_block_of_their_class():
    targets = np.array([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]], np.float32)
    joint = joint_targets(targets, [1, 0], 2)
    assert joint.shape == (2, 6)
    np.testing.assert_allclose(joint[0], [0, 0, 0, 0.7, 0.3, 0], rtol=1e-6)
    np.testing.assert_array_equal(joint[1], [0, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(class_probabilities(joint, 2), [[0, 1], [1, 0]])
    np.testing.assert_allclose(region_marginal(joint, 2), targets)


def test_one_class_is_the_region_output_itself():
    targets = np.random.default_rng(0).dirichlet(np.ones(5), 4).astype(np.float32)
    np.testing.assert_array_equal(joint_targets(targets, np.zeros(4, int), 1), targets)
    np.testing.assert_allclose(class_probabilities(targets, 1), 1.0, rtol=1e-6)


def test_a_width_that_is_not_k_blocks_is_refused():
    with pytest.raises(ValueError, match="5 outputs cannot be 2 classes"):
        split_joint(np.zeros((1, 5)), 2)


def test_pairs_are_taken_best_first_until_the_mass():
    # 2 classes x 3 regions; particle 0 sure of (class 1, region 2), particle 1 split
    probs = np.array([[0.02, 0.02, 0.01, 0.0, 0.0, 0.95],
                      [0.40, 0.05, 0.0, 0.35, 0.0, 0.20]])
    pairs = select_pairs(probs, 2, probability_mass=0.9, max_pairs=4)
    np.testing.assert_array_equal(pairs.classes, [[1, -1, -1, -1], [0, 1, 1, -1]])
    np.testing.assert_array_equal(pairs.regions, [[2, -1, -1, -1], [0, 0, 2, -1]])
    np.testing.assert_allclose(pairs.probabilities[1], [0.40, 0.35, 0.20, 0.0])
    np.testing.assert_allclose(pairs.class_probabilities, [[0.05, 0.95], [0.45, 0.55]])
    rows, hints, p = pairs.members(1)
    np.testing.assert_array_equal(rows, [0, 1])
    np.testing.assert_array_equal(hints, [[2, 2], [0, 2]])  # row 0 padded with its first
    np.testing.assert_allclose(p, [[0.95, 0.0], [0.35, 0.20]])
    rows, hints, _ = pairs.members(0)
    np.testing.assert_array_equal(rows, [1])
    np.testing.assert_array_equal(hints, [[0]])


def _uniform_prior_outputs(fractions, n, *, separation, n_regions=4, seed=0):
    """``(classes, joint)``: ``n`` particles drawn from a mixture of ``fractions`` and the
    (N, K * R) output of a classifier trained with uniform classes: a Gaussian score of mean
    ``separation * class`` and unit spread, turned into class posteriors under a uniform
    prior (noisy but informative), spread over regions by a random Dirichlet row."""
    rng = np.random.default_rng(seed)
    k = len(fractions)
    classes = rng.choice(k, size=n, p=fractions)
    score = separation * classes + rng.normal(size=n)
    loglik = -0.5 * (score[:, None] - separation * np.arange(k)[None, :]) ** 2
    posterior = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    posterior /= posterior.sum(axis=1, keepdims=True)
    regions = rng.dirichlet(np.ones(n_regions), size=(n, k))
    return classes, (posterior[:, :, None] * regions).reshape(n, k * n_regions)


def test_class_fractions_of_an_80_20_mixture_are_recovered():
    classes, joint = _uniform_prior_outputs([0.8, 0.2], 4000, separation=2.0)
    truth = np.bincount(classes, minlength=2) / len(classes)  # 0.80 / 0.20 as drawn
    naive = class_probabilities(joint, 2).mean(axis=0)  # pulled towards 1/2
    fractions, adjusted = estimate_class_fractions(joint, 2)
    assert abs(naive[0] - truth[0]) > 0.08, naive  # measured 0.66 for 0.80 (estimate 0.799)
    assert abs(fractions[0] - truth[0]) < 0.02, (fractions, truth)
    assert abs(fractions[0] - truth[0]) < 0.2 * abs(naive[0] - truth[0])
    assert fractions.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0, rtol=1e-12)
    # the fixed point: the fractions are the mean class probability of the adjusted outputs
    np.testing.assert_allclose(class_probabilities(adjusted, 2).mean(axis=0), fractions,
                               atol=1e-5)
    # the regions within a class keep their proportions; the rare class is less probable
    split = adjusted.reshape(-1, 2, 4) / adjusted.reshape(-1, 2, 4).sum(axis=2, keepdims=True)
    before = joint.reshape(-1, 2, 4) / joint.reshape(-1, 2, 4).sum(axis=2, keepdims=True)
    np.testing.assert_allclose(split, before, rtol=1e-9)
    assert np.all(class_probabilities(adjusted, 2)[:, 1] <= class_probabilities(joint, 2)[:, 1])


def test_class_fractions_of_uniform_data_stay_uniform():
    classes, joint = _uniform_prior_outputs([1 / 3] * 3, 6000, separation=1.5, seed=1)
    truth = np.bincount(classes, minlength=3) / len(classes)
    fractions, adjusted = estimate_class_fractions(joint, 3)
    np.testing.assert_allclose(fractions, truth, atol=0.03)
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(adjusted, joint, atol=0.05)  # barely moved


def test_sure_outputs_give_the_class_counts():
    joint = np.zeros((5, 2 * 3))
    joint[[0, 1, 2], [0, 1, 2]] = 1.0  # class 0, regions 0, 1, 2
    joint[[3, 4], [4, 5]] = 1.0  # class 1
    fractions, adjusted = estimate_class_fractions(joint, 2)
    np.testing.assert_allclose(fractions, [0.6, 0.4])
    np.testing.assert_allclose(adjusted, joint)


@pytest.mark.parametrize("bad, message", [
    (np.array([[0.5, -0.1, 0.3, 0.3]]), "finite and non-negative"),
    (np.array([[0.5, np.nan, 0.3, 0.2]]), "finite and non-negative"),
    (np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]), "1 particle.s. sum to 0"),
    (np.ones((2, 5)) / 5, "5 outputs cannot be 2 classes"),
], ids=["negative", "nan", "empty-row", "width"])
def test_invalid_probabilities_for_the_class_fractions(bad, message):
    with pytest.raises(ValueError, match=message):
        estimate_class_fractions(bad, 2)


class _Source:
    def __init__(self, scale, value):
        self.scale, self.value, self.box, self.noise = scale, value, 4, None

    def draw(self, rng, n, *, noise_scale=1.0):
        return np.full((n, 4, 4), self.value * self.scale, np.float32), np.zeros((n, 3))


def test_class_source_draws_classes_uniformly_on_one_scale():
    source = ClassProjectionSource([_Source(1.0, 1.0), _Source(3.0, 2.0)])
    # one common scale for both maps: 1 / sqrt(mean(1 / s**2))
    expected = 1.0 / np.sqrt(np.mean([1.0, 1.0 / 9.0]))
    assert all(s.scale == pytest.approx(expected) for s in source.sources)
    images, _, classes = source.draw(np.random.default_rng(1), 2000)
    assert abs(np.mean(classes) - 0.5) < 0.04
    np.testing.assert_allclose(images[:, 0, 0], np.where(classes == 1, 2.0, 1.0) * expected,
                               rtol=1e-6)


@pytest.mark.parametrize("mass, max_regions, top_k", [(0.5, 3, 3), (0.9, 6, 6), (None, 6, 4)],
                         ids=["mass_0.5", "mass_0.9", "no_mass"])
def test_pairs_from_the_written_top_pairs_are_the_searched_pairs(mass, max_regions, top_k):
    """deepalign align --model (the top pairs written to STAR) takes the pairs deepalign run
    takes from the whole output."""
    from scipion_deepalign.core.align.search_plan import SearchOptions

    joint = np.random.default_rng(3).dirichlet(np.full(2 * 5, 0.3), size=40)
    search = SearchOptions(probability_mass=mass, max_regions=max_regions)
    whole = search_pairs(joint, 2, search, top_k=top_k)
    width = max(top_k, max_regions)  # what deepalign run writes
    top = top_pairs(joint, 2, width)
    assert top[0].shape == (40, width)
    np.testing.assert_array_equal(top[0] * 5 + top[1], np.argsort(-joint, axis=1)[:, :width])
    written = search_top_pairs(*top, 2, search, top_k=top_k)
    np.testing.assert_array_equal(written.classes, whole.classes)
    np.testing.assert_array_equal(written.regions, whole.regions)
    np.testing.assert_allclose(written.probabilities, whole.probabilities)
    assert written.n_classes == 2
    assert np.all(written.class_probabilities <= whole.class_probabilities + 1e-12)


def test_invalid_top_pairs_are_refused():
    with pytest.raises(ValueError, match="pair classes must be in 0..1"):
        search_top_pairs(np.array([[2]]), np.array([[0]]), np.array([[1.0]]), 2)
    with pytest.raises(ValueError, match="three"):
        search_top_pairs(np.array([[0, 1]]), np.array([[0]]), np.array([[1.0]]), 2)
