"""Training of the regional CNNs: folder layout, resuming, seeds, small regions, bad input.

Tiny and fast: a D2 phantom (4 regions at 90 deg spacing), 32 px particles downsampled to
24 px, one epoch of a few batches per region.
"""
import json
import logging
import os

import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core.cnn import TrainConfig, predict_probabilities, train_regions  # noqa: E402
from scipion_deepalign.core.cnn.model_folder import history_path, model_path  # noqa: E402
from scipion_deepalign.core.io import read_regions_star  # noqa: E402
from scipion_deepalign.core.regions import assign_regions, region_centres_deg  # noqa: E402
from scipion_deepalign.core.simulate import make_phantom, simulate_particles  # noqa: E402

SYM, SPACING = "d2", 90.0


@pytest.fixture(scope="module")
def particles():
    volume = make_phantom(32, symmetry=SYM, seed=0)
    images, parts = simulate_particles(volume, 240, pixel_size_a=4.0, snr=1.0, ctf=True,
                                       max_shift_px=1.0, seed=3)
    return images, parts


def _config(**kw):
    base = dict(pixel_size_a=4.0, target_box_px=24, epochs=1, batch_size=32,
                positives_per_region=64, seed=0, min_particles_per_region=5,
                network="regional", training_source="particles", images_per_epoch=256)
    base.update(kw)
    return TrainConfig(**base)


def _train(particles, out_dir, **kw):
    images, parts = particles
    regions = kw.pop("regions", None)
    progress = kw.pop("progress", None)
    return train_regions(images, parts.angles_deg, out_dir=out_dir, symmetry=SYM,
                         spacing_deg=SPACING, config=_config(**kw), shifts_px=parts.shifts_px,
                         regions=regions, progress=progress)


def test_model_folder_layout(particles, tmp_path):
    report = _train(particles, tmp_path, regions=[2])
    assert report.trained == [2] and report.n_regions == 4
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["input_box_px"] == 24 and meta["box_px"] == 32 and meta["n_regions"] == 4
    assert meta["config"]["target_box_px"] == 24
    centres, symmetry, spacing = read_regions_star(tmp_path / "regions.star")
    np.testing.assert_allclose(centres, region_centres_deg(SPACING, SYM), atol=1e-6)
    assert (symmetry, spacing) == (SYM, SPACING)
    history = json.loads(history_path(tmp_path, 2).read_text())
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "region", "n_particles",
            "seconds"} <= set(history)
    assert history["region"] == 2 and len(history["loss"]) == 1
    assert report.validation_accuracy() == {2: history["val_accuracy"][0]}
    assert model_path(tmp_path, 2).name == "region_0002.keras" and model_path(tmp_path, 2).exists()
    assert not model_path(tmp_path, 1).exists()
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]  # no temporary leftovers


def test_kill_and_continue_trains_only_missing_regions(particles, tmp_path):
    first = _train(particles, tmp_path, regions=[1, 3])
    assert first.trained == [1, 3]
    mtimes = {r: model_path(tmp_path, r).stat().st_mtime_ns for r in (1, 3)}
    # A run killed after writing region 4's history but before its model: 4 is not done.
    history_path(tmp_path, 4).write_text(json.dumps({"region": 4, "loss": [1.0]}))
    events = []
    second = _train(particles, tmp_path, progress=events.append)
    assert second.trained == [2, 4] and second.reused == [1, 3]
    assert {e["model"] for e in events} == {"region 2", "region 4"}
    assert {r: model_path(tmp_path, r).stat().st_mtime_ns for r in (1, 3)} == mtimes
    events.clear()
    third = _train(particles, tmp_path, progress=events.append)
    assert third.trained == [] and third.reused == [1, 2, 3, 4] and events == []


def test_other_configuration_in_same_folder_is_refused(particles, tmp_path):
    assert _train(particles, tmp_path, regions=[]).trained == []  # writes config.json only
    assert (tmp_path / "config.json").exists()
    with pytest.raises(ValueError, match="learning_rate"):
        _train(particles, tmp_path, regions=[2], learning_rate=0.003)


def test_same_seed_same_network_different_seed_different(particles, tmp_path):
    import keras

    weights = []
    # "b" also trains region 1 first: a region's network does not depend on the others.
    for name, seed, regions in (("a", 7, [3]), ("b", 7, [1, 3]), ("c", 8, [3])):
        _train(particles, tmp_path / name, regions=regions, seed=seed)
        weights.append(keras.models.load_model(model_path(tmp_path / name, 3)).get_weights())
    assert len(weights[0]) == len(weights[1]) == len(weights[2])
    for w_a, w_b in zip(weights[0], weights[1]):
        np.testing.assert_allclose(w_a, w_b, atol=1e-5)
    assert max(np.abs(w_a - w_c).max() for w_a, w_c in zip(weights[0], weights[2])) > 1e-3


def test_regions_with_too_few_particles_are_skipped(particles, tmp_path, caplog):
    labels, _ = assign_regions(particles[1].angles_deg, region_centres_deg(SPACING, SYM), SYM)
    counts = np.bincount(labels, minlength=4)
    threshold = int(0.9 * np.median(counts))  # about half the regions fall below
    with caplog.at_level(logging.WARNING):
        report = _train(particles, tmp_path, min_particles_per_region=threshold)
    small = report.too_few
    assert 1 <= len(small) <= 3
    assert np.argmin(counts) + 1 in small and np.argmax(counts) + 1 not in small
    assert sorted(report.trained) == sorted(set(range(1, 5)) - set(small))
    assert any("skipped" in rec.message for rec in caplog.records)
    for region in small:
        assert not model_path(tmp_path, region).exists()
        assert json.loads(history_path(tmp_path, region).read_text())["skipped"]
    probs = predict_probabilities(particles[0][:30], tmp_path)
    assert np.all(probs[:, np.array(small) - 1] == 0)
    assert np.all(probs[:, np.array(report.trained) - 1] > 0)
    again = _train(particles, tmp_path, min_particles_per_region=threshold)
    assert again.trained == [] and again.too_few == []


def test_no_poses_is_an_error(particles, tmp_path):
    with pytest.raises(ValueError, match="no poses"):
        train_regions(particles[0], None, out_dir=tmp_path, symmetry=SYM, spacing_deg=SPACING,
                      config=_config())
    with pytest.raises(ValueError, match="angles_deg"):
        train_regions(particles[0], particles[1].angles_deg[:10], out_dir=tmp_path,
                      symmetry=SYM, spacing_deg=SPACING, config=_config())


def test_unreachable_resolution_is_an_error(particles, tmp_path):
    config = TrainConfig(pixel_size_a=4.0, target_resolution_a=5.0, training_source="particles")
    with pytest.raises(ValueError, match="target_resolution_a"):
        train_regions(particles[0], particles[1].angles_deg, out_dir=tmp_path, symmetry=SYM,
                      spacing_deg=SPACING, config=config)
    assert not (tmp_path / "config.json").exists()


def test_regions_out_of_range_is_an_error(particles, tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        _train(particles, tmp_path, regions=[5])


@pytest.mark.parametrize("option, value", [("network", "cnn"), ("loss", "hinge"),
                                           ("epochs", 0), ("learning_rate", -1.0),
                                           ("validation_fraction", 1.0)])
def test_invalid_config_option(option, value):
    with pytest.raises(ValueError, match=option):
        _config(**{option: value})


def test_target_resolution_sets_the_input_box(particles, tmp_path):
    # 32 px at 4 A; 12 A needs Nyquist 6 A/px -> the even box >= 32 * 8 / 12 = 21.3 is 22.
    config = TrainConfig(pixel_size_a=4.0, target_resolution_a=12.0,
                         training_source="particles", epochs=1, images_per_epoch=256)
    train_regions(particles[0], particles[1].angles_deg, out_dir=tmp_path, symmetry=SYM,
                  spacing_deg=SPACING, config=config, regions=[])
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["input_box_px"] == 22
    assert meta["input_pixel_size_a"] == pytest.approx(4.0 * 32 / 22)


def test_model_folder_files_are_0644_under_umask_022(particles, tmp_path):
    old = os.umask(0o022)
    try:
        _train(particles, tmp_path, regions=[2])
    finally:
        os.umask(old)
    for path in (tmp_path / "config.json", history_path(tmp_path, 2), model_path(tmp_path, 2),
                 tmp_path / "regions.star"):
        assert os.stat(path).st_mode & 0o777 == 0o644, path.name
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]
