"""The class fractions in ``run_deepalign``'s prediction (core/pipeline.py, issue 25): with
several maps the classes' fractions are estimated from the network's outputs
(:func:`~scipion_deepalign.core.cnn.joint.estimate_class_fractions`) and returned; with the
class prior "estimated" the (class, region) pairs are chosen from the outputs reweighted by
them, with "uniform" (the default) from the raw outputs. The network is replaced by fixed
outputs (no training: fast)."""
import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core import cnn, pipeline  # noqa: E402
from scipion_deepalign.core.align.search_plan import SearchOptions  # noqa: E402
from scipion_deepalign.core.cnn.joint import class_probabilities  # noqa: E402


def _outputs(n=2000, seed=0):
    """An 80/20 mixture of 2 classes x 3 regions seen by a weak but calibrated classifier
    trained with uniform classes: a particle leans to its own class with probability 0.7, and
    its class probabilities are then 0.7 / 0.3 for the class it leans to."""
    rng = np.random.default_rng(seed)
    classes = (rng.random(n) < 0.2).astype(int)
    leans_to = np.where(rng.random(n) < 0.7, classes, 1 - classes)
    lean = np.where(leans_to[:, None] == np.arange(2)[None, :], 0.7, 0.3)
    regions = rng.dirichlet(np.ones(3), size=(n, 2))
    return classes, (lean[:, :, None] * regions).reshape(n, 6)


def _predict(monkeypatch, joint, class_prior):
    monkeypatch.setattr(cnn, "predict_probabilities", lambda images, *a, **k: joint)
    return pipeline._predict(np.zeros((len(joint), 4, 4)), "unused", pixel_size_a=1.0,
                             top_k=3, n_classes=2, search=SearchOptions(probability_mass=None),
                             class_prior=class_prior)


def test_the_pairs_follow_the_estimated_fractions(monkeypatch):
    classes, joint = _outputs()
    _, _, pairs, _, fractions = _predict(monkeypatch, joint, "estimated")
    truth = np.bincount(classes, minlength=2) / len(classes)
    assert abs(fractions[0] - truth[0]) < 0.04, (fractions, truth)  # raw mean: 0.62
    np.testing.assert_allclose(pairs.class_probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(pairs.class_probabilities.mean(axis=0), fractions, atol=1e-5)
    # under an 80 % prior a 0.7 / 0.3 lean to the rare class is outweighed (0.7 x 0.2 <
    # 0.3 x 0.8): every particle's most probable class is the common one, and fewer of the
    # first pairs searched are of the rare class than the raw outputs give
    assert np.all(pairs.class_probabilities.argmax(axis=1) == 0)
    rare_first = np.mean(pairs.classes[:, 0] == 1)
    raw_first = np.mean(joint.argmax(axis=1) // 3 == 1)
    assert rare_first < 0.6 * raw_first, (rare_first, raw_first)


def test_under_the_uniform_prior_the_pairs_are_the_raw_outputs(monkeypatch):
    classes, joint = _outputs()
    _, _, pairs, _, fractions = _predict(monkeypatch, joint, "uniform")
    assert abs(fractions[0] - np.mean(classes == 0)) < 0.04  # estimated all the same
    raw = class_probabilities(joint, 2)
    np.testing.assert_allclose(pairs.class_probabilities, raw)
    np.testing.assert_array_equal(pairs.classes[:, 0], joint.argmax(axis=1) // 3)
    assert np.mean(raw.argmax(axis=1) == 1) == pytest.approx(0.38, abs=0.03)  # 0.7x0.2+0.3x0.8


def test_an_unknown_class_prior_is_refused():
    from scipion_deepalign.core.pipeline import run_deepalign

    with pytest.raises(ValueError, match="class_prior must be one of uniform, estimated, got "
                                         "'data'"):
        run_deepalign(None, None, np.zeros((1, 4, 4)), np.zeros((4, 4, 4)), model_dir="unused",
                      pixel_size_a=1.0, max_shift_px=1.0, class_prior="data")
