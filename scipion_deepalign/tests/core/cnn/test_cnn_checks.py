"""The cheap training checks (core/cnn/checks.py): one message per broken rule."""
import pytest

from scipion_deepalign.core.cnn import checks


def test_input_geometry_default_and_given_box():
    assert checks.input_geometry(64, 2.0) == (24, pytest.approx(2.0 * 64 / 24))
    assert checks.input_geometry(64, 2.0, target_box_px=32) == (32, 4.0)
    assert checks.input_geometry(32, 4.0, target_resolution_a=12.0) == (22, pytest.approx(
        4.0 * 32 / 22))


@pytest.mark.parametrize("kwargs, message", [
    (dict(pixel_size_a=None), "pixel size in Å/px"),
    (dict(target_box_px=4), "target_box_px must be between 8 and the particle box 32"),
    (dict(target_box_px=40), "target_box_px must be between 8"),
    (dict(target_resolution_a=5.0), "target_resolution_a 5 A cannot be reached with 4 A pixels"),
    (dict(target_resolution_a=-1.0), "target_resolution_a must be a positive"),
    (dict(target_resolution_a=100.0), "leaves a 4 px input box"),
], ids=["pixel", "box-small", "box-large", "nyquist", "negative", "too-coarse"])
def test_invalid_input_geometry(kwargs, message):
    args = dict(pixel_size_a=4.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        checks.input_geometry(32, args.pop("pixel_size_a"), **args)


def test_option_words_are_used():
    with pytest.raises(ValueError, match="--target-resolution 5 A"):
        checks.input_geometry(32, 4.0, target_resolution_a=5.0,
                              resolution_name="--target-resolution")


@pytest.mark.parametrize("spacing", [0.5, 4.0, 91.0, 200.0, None])
def test_spacing_outside_the_regions_rule(spacing):
    with pytest.raises(ValueError, match="--spacing must be between 5 and 90 degrees"):
        checks.check_regions(spacing, "c1", spacing_name="--spacing")


def test_regions_out_of_range():
    n_regions, wanted = checks.check_regions(90.0, "d2")
    assert wanted == list(range(1, n_regions + 1))
    with pytest.raises(ValueError, match=rf"regions \[{n_regions + 1}\] out of range"):
        checks.check_regions(90.0, "d2", [1, n_regions + 1])


def test_reference_box():
    checks.check_reference_box((32, 32, 32), 32)
    with pytest.raises(ValueError, match=r"box 24 px differs from the particle box 32 px"):
        checks.check_reference_box((24, 24, 24), 32)
    with pytest.raises(ValueError, match=r"must be a cube \(B, B, B\), got shape \(32, 32, 24\)"):
        checks.check_reference_box((32, 32, 24), 32)
