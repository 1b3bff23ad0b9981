"""The class head beside the region head (issue 25, ``class_output="head"``): a network of two
clearly different maps with a softmax over the classes beside the softmax over the regions
tells the class of held-out particles far above chance; its ``K * R`` output is the product
``p(k) p(r)`` (so select_pairs and everything downstream read it as the joint output); the
folder records the kind and the saved model reloads with it; a kind this version does not
know is refused with a clear error; its loss is the class plus the region cross-entropy.

Tiny (training about 6 s on two idle cores): phantom_pair (32 px, a ball of about 30 % of the
mass masked away in B), 12 regions (60 deg), a 16 px input, 4 epochs of 1 024 projections,
particles at SNR 1 with CTF. Measured: class accuracy 0.83 on the 150 held-out particles
(chance 0.5), 0.86 on the held-out projections.
"""
import json

import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core.classes import class_references, simulate_mixture  # noqa: E402
from scipion_deepalign.core.cnn import TrainConfig, predict_probabilities, train_regions  # noqa: E402
from scipion_deepalign.core.cnn.fingerprint import (  # noqa: E402
    fingerprint_differences,
    training_fingerprint,
)
from scipion_deepalign.core.cnn.joint import class_probabilities, split_joint  # noqa: E402
from scipion_deepalign.core.cnn.model import ClassRegionLoss, build_shared_model  # noqa: E402
from scipion_deepalign.core.cnn.model_folder import ModelFolder, ModelMismatch  # noqa: E402
from scipion_deepalign.core.cnn.pairs import select_pairs  # noqa: E402
from scipion_deepalign.core.cnn.predict import load_models  # noqa: E402
from scipion_deepalign.tests.helpers import phantom_pair  # noqa: E402

PIXEL_A, SPACING = 4.0, 60.0
TRAIN, TEST = slice(0, 150), slice(150, 300)


def _config(**kw):
    options = dict(pixel_size_a=PIXEL_A, target_box_px=16, epochs=4, batch_size=64,
                   images_per_epoch=1024, noise_ramp_epochs=0, seed=0, class_output="head")
    options.update(kw)
    return TrainConfig(**options)


@pytest.fixture(scope="module")
def data():
    maps = phantom_pair()
    images, particles, classes = simulate_mixture(maps, 300, pixel_size_a=PIXEL_A, snr=1.0,
                                                  ctf=True, max_shift_px=1.0, seed=5)
    return class_references(maps), images, particles, classes


def _train(data, folder, **kw):
    references, images, particles, _ = data
    return train_regions(images[TRAIN], None, out_dir=folder, spacing_deg=SPACING,
                         config=_config(**kw), reference=references,
                         ctf=particles.ctf.subset(TRAIN))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("class_head")
    report = _train(data, folder)
    return folder, report, predict_probabilities(data[1][TEST], folder, pixel_size_a=PIXEL_A)


def test_the_class_head_tells_the_classes_apart_far_above_chance(data, trained):
    classes = data[3]
    _, report, probs = trained
    assert report.n_classes == 2 and probs.shape == (150, 2 * 12)
    accuracy = np.mean(class_probabilities(probs, 2).argmax(axis=1) == classes[TEST])
    assert accuracy >= 0.7, accuracy  # chance 0.5 (sd 0.04 for 150); measured 0.83
    history = report.histories["shared"]
    assert history["class_output"] == "head" and history["class_accuracy"] >= 0.7  # 0.86


def test_its_pair_output_is_the_product_of_the_two_heads(trained):
    """p(k, r) = p(k) p(r): each class block is the same region distribution scaled by the
    class's probability, and the pairs are selected from it as from a joint softmax."""
    _, _, probs = trained
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    blocks = split_joint(probs, 2)
    p_class, p_region = blocks.sum(axis=2), blocks.sum(axis=1)
    np.testing.assert_allclose(blocks, p_class[:, :, None] * p_region[:, None, :], atol=1e-6)
    pairs = select_pairs(probs, 2, probability_mass=0.9)
    assert np.all(pairs.probabilities[:, 0] == probs.max(axis=1))


def test_the_folder_records_the_kind_and_reloads_with_it(data, trained):
    folder, _, probs = trained
    meta = json.loads((folder / "config.json").read_text())
    assert meta["class_output"] == "head" == ModelFolder(folder).class_output()
    assert meta["fingerprint"]["training"]["class_output"] == "head"
    _, model = load_models(folder)  # a fresh load: the class head's layers come back
    assert {"class_probabilities", "region_probabilities"} <= {layer.name for layer in model.layers}
    np.testing.assert_allclose(predict_probabilities(data[1][TEST], folder,
                                                     pixel_size_a=PIXEL_A), probs, atol=1e-6)
    with pytest.raises(ModelMismatch, match="class_output 'joint' against 'head'"):
        _train(data, folder, class_output="joint")


def test_an_unknown_kind_is_refused_clearly(data, trained, tmp_path):
    folder, _, _ = trained
    copy = tmp_path / "model"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    meta = json.loads((copy / "config.json").read_text())
    meta["class_output"] = "mixture"
    (copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"records the class output 'mixture', which this "
                                         r"DeepAlign does not know \(it knows joint, head\)"):
        predict_probabilities(data[1][TEST], copy, pixel_size_a=PIXEL_A)
    with pytest.raises(ValueError, match="class_output must be one of"):
        TrainConfig(class_output="mixture")


def test_a_class_head_needs_softmax_regions(data, tmp_path):
    with pytest.raises(ValueError, match="needs head 'softmax', got 'sigmoid'"):
        _train(data, tmp_path, head="sigmoid")
    assert not (tmp_path / "config.json").exists()  # refused before anything was written
    build_shared_model(16, 12, head="sigmoid", n_classes=1, class_output="head")  # one map


def test_the_loss_is_the_class_plus_the_region_cross_entropy():
    rng = np.random.default_rng(0)
    p_class, p_region = rng.dirichlet(np.ones(2), 5), rng.dirichlet(np.ones(4), 5)
    probs = (p_class[:, :, None] * p_region[:, None, :]).reshape(5, 8).astype(np.float32)
    region_targets = rng.dirichlet(np.ones(4), 5)
    truth = rng.integers(0, 2, 5)
    targets = np.zeros((5, 2, 4), np.float32)
    targets[np.arange(5), truth] = region_targets
    loss = np.asarray(ClassRegionLoss(2, reduction=None)(targets.reshape(5, 8), probs))
    expected = (-np.log(p_class[np.arange(5), truth])
                - (region_targets * np.log(p_region)).sum(axis=1))
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_the_fingerprint_leaves_the_kind_out_for_one_map_and_reads_older_folders_as_joint():
    volume = np.random.default_rng(1).random((8, 8, 8), np.float32)
    common = dict(box_px=8, symmetry="c1", spacing_deg=SPACING)
    one = training_fingerprint(config=TrainConfig(class_output="head"), reference=volume,
                               **common)
    assert "class_output" not in one["training"]
    two = training_fingerprint(config=TrainConfig(class_output="joint"),
                               reference=np.stack([volume, volume[::-1]]), **common)
    older = json.loads(json.dumps(two))
    del older["training"]["class_output"]  # a folder written before format 3: joint
    assert fingerprint_differences(older, two) == []
    head = json.loads(json.dumps(two))
    head["training"]["class_output"] = "head"
    assert fingerprint_differences(older, head) == [
        "training options (class_output 'head' against 'joint')"]
