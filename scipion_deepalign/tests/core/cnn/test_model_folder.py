"""The model folder (core/cnn/model_folder.py): layout round trip, old folders, the checks
prediction makes on particles, and the light checks module. No network is trained here."""
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from scipion_deepalign.core.cnn.model_folder import ModelFolder, write_json_atomic
from scipion_deepalign.core.defaults import PIXEL_SIZE_RTOL

CENTRES = np.array([[0.0, 0.0], [90.0, 90.0], [0.0, 180.0]])


def _meta(**extra):
    meta = {"format_version": 1, "config": {"network": "regional", "pixel_size_a": 2.0},
            "symmetry": "c1", "spacing_deg": 90.0, "n_regions": 3, "box_px": 64,
            "particle_pixel_size_a": 2.0, "input_box_px": 16, "input_pixel_size_a": 8.0}
    meta.update(extra)
    return meta


def _folder(tmp_path, meta=None):
    folder = ModelFolder(tmp_path / "model")
    folder.path.mkdir()
    folder.write_config(_meta() if meta is None else meta)
    folder.write_regions(CENTRES, symmetry="c1", spacing_deg=90.0)
    write_json_atomic(folder.history_path(1), {"region": 1, "val_loss": [0.9, 0.5, 0.7],
                                               "val_accuracy": [0.5, 0.8, 0.9]})
    write_json_atomic(folder.history_path(2), {"region": 2, "n_particles": 1,
                                               "skipped": "fewer than 10 training particles"})
    write_json_atomic(folder.history_path(3), {"region": 3, "val_accuracy": [0.55]})
    folder.model_path(1).write_bytes(b"")
    folder.model_path(3).write_bytes(b"")
    return folder


def test_round_trip(tmp_path):
    folder = _folder(tmp_path)
    again = ModelFolder(str(folder.path))
    assert again.read_config() == _meta()
    centres, symmetry, spacing = again.read_regions()
    np.testing.assert_allclose(centres, CENTRES)
    assert (symmetry, spacing) == ("c1", 90.0)
    assert sorted(again.histories()) == [1, 3]
    assert again.skipped_regions() == [2]
    assert again.trained_regions() == [1, 3]
    assert [again.region_done(r) for r in (1, 2, 3)] == [True, True, True]
    assert again.best_accuracy() == {1: 0.8, 3: 0.55}  # 1: at the lowest val_loss
    assert again.n_regions() == 3
    geometry = again.geometry()
    assert (geometry.particle_box_px, geometry.particle_pixel_size_a) == (64, 2.0)
    assert (geometry.input_box_px, geometry.input_pixel_size_a) == (16, 8.0)
    assert geometry.symmetry == "c1"
    messages = again.near_chance_warnings()
    assert len(messages) == 1 and "region 3's network" in messages[0]


def test_no_config_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"holds no config\.json"):
        ModelFolder(tmp_path).read_config()


def test_wrong_pixel_size_is_refused_with_the_folder_and_both_sizes(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(ValueError) as info:
        folder.check_particles(64, 2.5)
    message = str(info.value)
    assert f"the particles have 2.5 Å/px but the model in {folder.path} was trained on 2 Å/px" \
        in message
    assert "train a model for these particles" in message
    folder.check_particles(64, 2.0 * (1 + PIXEL_SIZE_RTOL / 2))  # the same pixel size
    with pytest.raises(ValueError, match="pixel"):
        folder.check_particles(64, 2.0 * 1.009)  # one rule: 0.9 % is another pixel size


def test_wrong_box_is_refused(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(ValueError, match=r"have a 48 px box but the model in .* on 64 px"):
        folder.check_particles(48, 2.0)


def test_old_folder_without_pixel_size_loads_and_skips_the_check(tmp_path, caplog):
    meta = _meta()
    del meta["particle_pixel_size_a"]
    meta["config"]["pixel_size_a"] = None  # written before the pixel size was required
    folder = _folder(tmp_path, meta)
    geometry = folder.geometry()
    assert geometry.particle_pixel_size_a is None and geometry.input_pixel_size_a is None
    with caplog.at_level(logging.INFO):
        folder.check_particles(64, 3.0)  # not refused: unknown
    assert "pixel size not checked" in caplog.text


def test_old_folder_with_the_config_pixel_size_is_checked(tmp_path):
    meta = _meta()
    del meta["particle_pixel_size_a"]
    folder = _folder(tmp_path, meta)
    assert folder.geometry().particle_pixel_size_a == 2.0
    with pytest.raises(ValueError, match="2.5 Å/px"):
        folder.check_particles(64, 2.5)


def test_histories_on_disk_are_json(tmp_path):
    folder = _folder(tmp_path)
    assert json.loads(folder.history_path(2).read_text())["skipped"]


@pytest.mark.parametrize("module", ["scipion_deepalign.core.cnn.checks",
                                    "scipion_deepalign.core.cnn.model_folder",
                                    "scipion_deepalign.core.defaults"])
def test_light_modules_do_not_import_keras(module):
    code = (f"import sys, {module}; "
            "heavy = [m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_guard_can_fail():
    code = ("import sys, scipion_deepalign.core.cnn.data; "
            "assert 'keras' not in sys.modules")
    pytest.importorskip("keras")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0


def _fingerprint(**extra):
    fingerprint = {"map_sha1": "abc", "training_particles_sha1": None, "box_px": 64,
                   "particle_pixel_size_a": 2.0, "symmetry": "c1", "spacing_deg": 30.0,
                   "ctf": {"defocus_min_a": 10000.0, "defocus_max_a": 25000.0,
                           "voltage_kv": [300.0, 300.0], "cs_mm": [2.7, 2.7],
                           "amplitude_contrast": [0.1, 0.1]},
                   "training": {"epochs": 12, "seed": 0}}
    fingerprint.update(extra)
    return fingerprint


def test_an_old_folder_without_version_predicts_but_is_not_reused(tmp_path):
    from scipion_deepalign.core.cnn.model_folder import ModelMismatch

    meta = _meta()
    del meta["format_version"]
    folder = _folder(tmp_path, meta)
    assert folder.format_version() == 1 and folder.fingerprint() is None
    folder.check_particles(64, 2.0)  # prediction's checks still pass
    assert folder.geometry().input_box_px == 16
    with pytest.raises(ModelMismatch, match=r"format \(version 1 records no fingerprint"):
        folder.check_reuse(_fingerprint())


def test_a_recorded_fingerprint_is_checked_field_by_field(tmp_path):
    from scipion_deepalign.core.cnn.model_folder import ModelMismatch

    folder = _folder(tmp_path, _meta(format_version=2, fingerprint=_fingerprint()))
    assert folder.format_version() == 2
    folder.check_reuse(_fingerprint())
    folder.check_reuse(_fingerprint(particle_pixel_size_a=2.0 * (1 + PIXEL_SIZE_RTOL / 2)))
    ctf = dict(_fingerprint()["ctf"], defocus_min_a=9500.0, defocus_max_a=15000.0)
    folder.check_reuse(_fingerprint(ctf=ctf))  # inside the range widened by 1000 A
    with pytest.raises(ModelMismatch) as info:
        folder.check_reuse(_fingerprint(map_sha1="def", box_px=48, symmetry="d2"))
    assert [d.split(" (")[0] for d in info.value.differences] == ["map", "box", "symmetry"]


def test_a_fine_tuned_folder_is_reused_only_from_the_same_start(tmp_path):
    """deepalign classify --cnn: a network fine-tuned from another model (or trained from
    scratch) is not the one asked for, even on the same maps and options."""
    from scipion_deepalign.core.cnn.model_folder import ModelMismatch

    start = _fingerprint(map_sha1="previous")
    folder = _folder(tmp_path, _meta(format_version=3,
                                      fingerprint=_fingerprint(start_model=start)))
    folder.check_reuse(_fingerprint(start_model=start))
    for other in (_fingerprint(start_model=_fingerprint(map_sha1="other")), _fingerprint()):
        with pytest.raises(ModelMismatch, match="start model"):
            folder.check_reuse(other)


@pytest.mark.parametrize("ctf, named", [
    (None, "CTF (trained with CTF, these particles without CTF)"),
    (dict(defocus_min_a=5000.0), "defocus range (5000-25000 A outside the trained "
                                 "10000-25000 A)"),
    (dict(voltage_kv=[200.0, 200.0]), "voltage (200kV against the trained 300kV)"),
    (dict(cs_mm=[0.01, 0.01]), "Cs"),
], ids=["no-ctf", "defocus", "voltage", "cs"])
def test_another_ctf_range_is_refused_naming_it(ctf, named):
    from scipion_deepalign.core.cnn.fingerprint import fingerprint_differences

    old = _fingerprint()
    new = _fingerprint(ctf=None if ctf is None else dict(old["ctf"], **ctf))
    differences = fingerprint_differences(old, new)
    assert len(differences) == 1 and differences[0].startswith(named), differences


def test_clear_removes_the_model_files_only(tmp_path):
    folder = _folder(tmp_path)
    (folder.path / "notes.txt").write_text("mine")
    folder.clear()
    assert sorted(p.name for p in folder.path.iterdir()) == ["notes.txt"]
