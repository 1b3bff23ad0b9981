"""The result files the commands write and the protocols read back (core/io/results.py)."""
import numpy as np
import pytest

from scipion_deepalign.core.io import (
    half_map_paths,
    read_differences_csv,
    read_json,
    summary_path,
    write_differences_csv,
    write_fsc_json,
)
from scipion_deepalign.core.judge.consensus import angular_consensus
from scipion_deepalign.core.judge.fsc import fsc_curve


def test_differences_csv_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.uniform([-180, 0, -180], [180, 180, 180], (5, 3))
    b = a + [0, 20, 0]  # the third input 20 deg off in tilt
    result = angular_consensus([a, a + 0.5, b], shift_sets=[np.zeros((5, 2))] * 3,
                               max_shift_px=1.0, min_agree=2)
    write_differences_csv(tmp_path / "d.csv", [f"{i}@items" for i in range(5)], result)
    back = read_differences_csv(tmp_path / "d.csv")
    assert back["image_name"] == [f"{i}@items" for i in range(5)]
    np.testing.assert_array_equal(back["agree"], result.agree)
    np.testing.assert_array_equal(back["pairs"], result.pairs)
    for key in ("direction_diff_deg", "inplane_diff_deg", "shift_diff_px"):
        np.testing.assert_allclose(back[key], getattr(result, key), atol=1e-4)


def test_differences_csv_reader_names_a_foreign_file(tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv: not a differences.csv"):
        read_differences_csv(tmp_path / "other.csv")


def test_fsc_json_says_when_the_sampling_limits_the_resolution(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(16, 16, 16))
    write_fsc_json(tmp_path / "same.json", fsc_curve(volume, volume, pixel_size_a=2.0), 10)
    noise = fsc_curve(volume, rng.normal(size=(16, 16, 16)), pixel_size_a=2.0)
    write_fsc_json(tmp_path / "noise.json", noise, 10)
    same = read_json(tmp_path / "same.json")
    assert same["limited_by_sampling"] and same["resolution_0143_a"] == pytest.approx(4.0)
    assert same["n_particles"] == 10 and len(same["fsc"]) == len(same["frequency_inv_a"])
    assert read_json(tmp_path / "noise.json")["limited_by_sampling"] is False


def test_read_json_names_a_file_that_is_not_json(tmp_path):
    (tmp_path / "x.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match="x.json: not a JSON file"):
        read_json(tmp_path / "x.json")


def test_names_beside_the_output():
    assert half_map_paths("/r/volume.mrc") == ("/r/volume_half1.mrc", "/r/volume_half2.mrc")
    assert summary_path("out/aligned.star") == "out/aligned.summary.json"
