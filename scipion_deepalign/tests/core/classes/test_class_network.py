"""One network of two classes (issue 25): trained from projections of two clearly different
maps, it tells the class of held-out simulated particles far above chance; the search in its
predicted (class, region) pairs classes them as well as aligning against every map, for
fewer comparisons per particle; the model folder records the class count, a model trained
on other maps is refused, and a single map trains the network it always did.

Tiny: phantom_pair (32 px, a ball of about 30 % of the mass masked away in B), 12 regions
(60 deg), a 16 px input, 8 epochs of 2 048 projections (about 15 s on two cores), particles
at SNR 0.3 with CTF. Measured: the class of 0.82-0.92 of the 60 held-out particles from the
network alone (the tiny training moves with the last bits of its images), 0.97 after the search
in its pairs at the search's defaults (mass 0.75, at most 16 pairs; with mass 0.9 and at most 6
pairs, 0.88-0.98: the true class was not searched for 7 % of the particles), at 0.65 of the
comparisons per particle of the regional search against both maps (1.0).
"""
import json

import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core.align.search_plan import SearchOptions  # noqa: E402
from scipion_deepalign.core.classes import (  # noqa: E402
    align_class_pairs,
    align_classes,
    class_references,
    simulate_mixture,
)
from scipion_deepalign.core.cnn import TrainConfig, predict_probabilities, train_regions  # noqa: E402
from scipion_deepalign.core.cnn.fingerprint import map_digest  # noqa: E402
from scipion_deepalign.core.cnn.joint import class_probabilities, region_marginal  # noqa: E402
from scipion_deepalign.core.cnn.model_folder import ModelFolder, ModelMismatch  # noqa: E402
from scipion_deepalign.core.cnn.pairs import select_pairs  # noqa: E402
from scipion_deepalign.core.cnn.predict import top_k_regions  # noqa: E402
from scipion_deepalign.tests.helpers import phantom_pair  # noqa: E402

PIXEL_A, SPACING = 4.0, 60.0
TRAIN, TEST = slice(0, 150), slice(150, 210)
SEARCH = dict(max_shift_px=3.0, step_deg=10.0, device="cpu")


def _config(**kw):
    options = dict(pixel_size_a=PIXEL_A, target_box_px=16, epochs=8, batch_size=64,
                   images_per_epoch=2048, noise_ramp_epochs=0, seed=0)
    options.update(kw)
    return TrainConfig(**options)


@pytest.fixture(scope="module")
def data():
    maps = phantom_pair()
    images, particles, classes = simulate_mixture(maps, 210, pixel_size_a=PIXEL_A, snr=0.3,
                                                  ctf=True, max_shift_px=1.0, seed=5)
    return maps, images, particles, classes


def _train(data, folder, references, **kw):
    _, images, particles, _ = data
    return train_regions(images[TRAIN], None, out_dir=folder, spacing_deg=SPACING,
                         config=_config(**kw), reference=references,
                         ctf=particles.ctf.subset(TRAIN))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_classes")
    report = _train(data, folder, class_references(data[0]))
    _, images, _, _ = data
    return folder, report, predict_probabilities(images[TEST], folder, pixel_size_a=PIXEL_A)


def test_the_network_tells_the_class_far_above_chance(data, trained):
    _, _, _, classes = data
    folder, report, probs = trained
    assert report.n_classes == 2 and probs.shape == (60, 2 * 12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    accuracy = np.mean(class_probabilities(probs, 2).argmax(axis=1) == classes[TEST])
    assert accuracy >= 0.8, accuracy  # chance 0.5; measured 0.92
    held_out = report.histories["shared"]["class_accuracy"]  # on its own projections
    assert held_out >= 0.75, held_out
    assert report.histories["shared"]["chance_accuracy"] == pytest.approx(1 / 24)


def test_the_search_in_the_pairs_classes_as_well_for_fewer_comparisons(data, trained):
    maps, images, particles, classes = data
    folder, _, probs = trained
    centres, _, _ = ModelFolder(folder).read_regions()
    ctf = particles.ctf.subset(TEST)
    # both searches at the search's defaults (probability mass, at most TOP_K pairs/regions)
    pairs = select_pairs(probs, 2, probability_mass=SearchOptions.default("probability_mass"))
    ours = align_class_pairs(images[TEST], maps, pairs, pixel_size_a=PIXEL_A,
                             centres_deg=centres, ctf=ctf, **SEARCH)
    assert np.mean(ours.classes == classes[TEST]) >= 0.9  # measured 0.97
    hints, hint_probs = top_k_regions(region_marginal(probs, 2), 12)  # all 12 regions
    every = align_classes(images[TEST], maps, pixel_size_a=PIXEL_A, ctf=ctf,
                          region_hints=hints, region_probabilities=hint_probs,
                          centres_deg=centres, **SEARCH)
    assert ours.comparisons_per_particle() < 0.75 * every.comparisons_per_particle()  # 0.65
    assert ours.alignment.n_comparisons == sum(ours.n_comparisons_per_class)
    # a particle is classed among the classes it was searched in, with that class's pose
    searched = np.isfinite(ours.scores)
    assert np.all(searched[np.arange(60), ours.classes])
    np.testing.assert_array_equal(searched, [[(row == k).any() for k in range(2)]
                                             for row in pairs.classes])
    np.testing.assert_array_equal(ours.alignment.n_regions_searched,
                                  (pairs.classes >= 0).sum(axis=1))


def test_the_folder_records_the_class_count_and_refuses_other_maps(data, trained):
    folder, _, _ = trained
    meta = json.loads((folder / "config.json").read_text())
    assert meta["n_classes"] == 2 and ModelFolder(folder).n_classes() == 2
    assert meta["fingerprint"]["map_sha1"] == map_digest(class_references(data[0]))
    again = _train(data, folder, class_references(data[0]))
    assert again.model_reused and again.n_classes == 2
    a, b = data[0]
    for other in ([b, a], [a]):  # another order, another number of maps
        with pytest.raises(ModelMismatch, match="map"):
            _train(data, folder, class_references(other) if len(other) > 1 else a)


def test_several_maps_train_from_projections_only(data, tmp_path):
    maps, images, particles, _ = data
    with pytest.raises(ValueError, match="several reference maps train the shared network "
                                         "from projections: got network 'shared', "
                                         "training source 'both'"):
        train_regions(images[TRAIN], particles.angles_deg[TRAIN], out_dir=tmp_path,
                      spacing_deg=SPACING, config=_config(training_source="both"),
                      reference=class_references(maps))


def test_one_map_trains_the_region_network_as_before(data, tmp_path):
    """(B, B, B) and (1, B, B, B) give the same folder and predictions: R outputs, 1 class."""
    a = data[0][0]
    _, images, _, _ = data
    probs = []
    for name, reference in (("plain", a), ("stacked", a[None])):
        report = _train(data, tmp_path / name, reference, epochs=1, images_per_epoch=256)
        assert report.n_classes == 1 and "class_accuracy" not in report.histories["shared"]
        folder = ModelFolder(tmp_path / name)
        assert folder.n_classes() == 1
        assert folder.fingerprint()["map_sha1"] == map_digest(a)  # as single-map folders
        probs.append(predict_probabilities(images[TEST], folder.path, pixel_size_a=PIXEL_A))
    assert probs[0].shape == (60, 12)
    np.testing.assert_array_equal(probs[0], probs[1])
