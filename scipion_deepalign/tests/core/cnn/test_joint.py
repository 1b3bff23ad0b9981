"""The joint class x region output (core/cnn/joint.py): targets in their class's block, the
marginals, the pairs taken until the probability mass, each class's members and hints, one
signal scale for the K maps' projections. No training (fast)."""
import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core.cnn.joint import (  # noqa: E402
    ClassProjectionSource,
    class_probabilities,
    joint_targets,
    region_marginal,
    select_pairs,
    split_joint,
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
