"""Train once, align many: a model folder records what it was trained for (format 2,
core/cnn/fingerprint.py); a later call with matching data reuses it without training, one
with other data is refused naming what differs, ``retrain`` trains over it.

Tiny: a 32 px phantom, 12 regions (60 deg), a 16 px input, two epochs of 256 projections.
"""
import json

import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core.cnn import TrainConfig, predict_probabilities, train_regions  # noqa: E402
from scipion_deepalign.core.cnn.fingerprint import FORMAT_VERSION  # noqa: E402
from scipion_deepalign.core.cnn.model_folder import ModelFolder, ModelMismatch  # noqa: E402
from scipion_deepalign.core.simulate import make_phantom, simulate_particles  # noqa: E402

BOX, PIXEL, SPACING = 32, 4.0, 60.0


@pytest.fixture(scope="module")
def data():
    volume = make_phantom(BOX, seed=2)
    images, parts = simulate_particles(volume, 300, pixel_size_a=PIXEL, snr=1.0,
                                       max_shift_px=1.0, seed=5)
    return volume, images, parts


def _config(**kw):
    options = dict(pixel_size_a=PIXEL, target_box_px=16, epochs=2, batch_size=64,
                   images_per_epoch=256, noise_ramp_epochs=0, seed=0)
    options.update(kw)
    return TrainConfig(**options)


def _train(data, folder, *, rows=slice(0, 150), volume=None, symmetry="c1", spacing=SPACING,
           retrain=False, **kw):
    reference, images, parts = data
    return train_regions(images[rows], None, out_dir=folder, symmetry=symmetry,
                         spacing_deg=spacing, config=_config(**kw),
                         reference=reference if volume is None else volume,
                         ctf=parts.ctf.subset(rows), retrain=retrain)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    report = _train(data, folder)
    return folder, report


def test_the_folder_records_its_format_and_fingerprint(trained):
    folder, report = trained
    assert report.trained and not report.model_reused
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 3
    assert ModelFolder(folder).format_version() == 3
    assert meta["class_output"] == "joint"  # one map: its region output
    assert "class_output" not in meta["fingerprint"]["training"]  # shapes nothing for one map
    fingerprint = meta["fingerprint"]
    assert fingerprint["box_px"] == BOX and fingerprint["particle_pixel_size_a"] == PIXEL
    assert (fingerprint["symmetry"], fingerprint["spacing_deg"]) == ("c1", SPACING)
    assert fingerprint["map_sha1"] and fingerprint["training_particles_sha1"] is None
    assert fingerprint["ctf"]["defocus_min_a"] < fingerprint["ctf"]["defocus_max_a"]
    assert fingerprint["training"]["epochs"] == 2


def test_a_matching_data_set_reuses_the_model_without_training(data, trained):
    folder, _ = trained
    _, images, _ = data
    model = ModelFolder(folder)
    before = predict_probabilities(images[150:], folder)
    stamps = (model.shared_model_path.stat().st_mtime_ns,
              model.shared_history_path.stat().st_mtime_ns)
    # the other half of the particles: another data set of the same map, geometry and CTFs
    again = _train(data, folder, rows=slice(150, 300))
    assert again.model_reused and again.trained == [] and again.histories == {}
    assert (model.shared_model_path.stat().st_mtime_ns,
            model.shared_history_path.stat().st_mtime_ns) == stamps
    np.testing.assert_array_equal(predict_probabilities(images[150:], folder), before)


@pytest.mark.parametrize("change, named", [
    (dict(volume="other map"), "map"),
    (dict(pixel_size_a=4.4), "pixel size"),
    (dict(symmetry="c2"), "symmetry"),
    (dict(spacing=90.0), "region spacing"),
    (dict(epochs=3), "training options (epochs 3 against 2)"),
], ids=["map", "pixel-size", "symmetry", "spacing", "options"])
def test_a_mismatched_data_set_is_refused_naming_what_differs(data, trained, change, named):
    folder, _ = trained
    if change.get("volume") == "other map":
        change = dict(volume=make_phantom(BOX, seed=9))
    stamp = ModelFolder(folder).shared_model_path.stat().st_mtime_ns
    with pytest.raises(ModelMismatch) as info:
        _train(data, folder, **change)
    assert named in str(info.value) and str(folder) in str(info.value)
    assert len(info.value.differences) == 1, info.value.differences
    assert ModelFolder(folder).shared_model_path.stat().st_mtime_ns == stamp


def test_retrain_trains_over_a_mismatched_model(data, tmp_path):
    _train(data, tmp_path)
    report = _train(data, tmp_path, spacing=90.0, retrain=True)
    assert report.trained and not report.model_reused
    assert ModelFolder(tmp_path).read_config()["fingerprint"]["spacing_deg"] == 90.0
    assert ModelFolder(tmp_path).n_regions() == report.n_regions


def test_history_records_the_region_hit_rate_and_the_kept_epoch(trained):
    _, report = trained
    history = report.histories["shared"]
    assert len(history["val_region_hit"]) == len(history["loss"]) == 2
    assert 0 <= history["best_epoch"] < 2 and history["stopped_epoch"] is None
    assert history["early_stopping"]["monitor"] == "val_region_hit"
    rate = report.region_hit_rate()["shared"]
    assert rate == history["val_region_hit"][history["best_epoch"]]
    assert 0 < rate <= 1
