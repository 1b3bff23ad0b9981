"""The resolution a map supports (known answers on low-passed maps) and the search schedule."""
import numpy as np
import pytest

from scipion_deepalign.core import defaults
from scipion_deepalign.core.imageops import low_pass_volume
from scipion_deepalign.core.judge.fsc import fsc_curve
from scipion_deepalign.core.judge.reconstruct import reconstruct
from scipion_deepalign.core.resolution import (
    REFINE_MARGIN,
    SearchResolution,
    estimate_map_resolution,
    parse_target_resolution,
    search_resolution,
    solvent_contrast,
)
from scipion_deepalign.core.simulate import (
    make_phantom,
    signal_mask_radius_px,
    simulate_particles,
)
from scipion_deepalign.tests.shared_data import shared_file

PIXEL_A = 2.0


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(48, seed=0)


@pytest.fixture(scope="module")
def map_8zpm():
    from scipion_deepalign.core.io import read_volume

    volume, pixel = read_volume(str(shared_file("8zpm_64_2A.mrc")))
    return volume, pixel or 2.0


def _low_pass(volume, resolution_a, pixel_size_a=PIXEL_A):
    return low_pass_volume(volume, pixel_size_a=pixel_size_a, resolution_a=resolution_a)


# --- the estimate ------------------------------------------------------------------------
@pytest.mark.parametrize("resolution_a", [8.0, 12.0, 20.0])
def test_a_low_passed_phantom_gives_its_cut_off(phantom, resolution_a):
    estimate = estimate_map_resolution(_low_pass(phantom, resolution_a), PIXEL_A)
    # the cosine edge reaches 10 % beyond the cut-off; one shell is 96/k A wide
    assert 0.85 * resolution_a <= estimate <= 1.1 * resolution_a


def test_an_unfiltered_phantom_reaches_nyquist(phantom):
    assert estimate_map_resolution(phantom, PIXEL_A) <= 1.1 * 2 * PIXEL_A


def test_noise_above_the_cut_off_is_not_signal(phantom):
    filtered = _low_pass(phantom, 10.0)
    noisy = filtered + np.random.default_rng(0).normal(0, 0.05 * filtered.std(), phantom.shape)
    assert 8.5 <= estimate_map_resolution(noisy, PIXEL_A) <= 12.0
    # while noise fainter than the signal at Nyquist leaves an unfiltered map at Nyquist
    faint = phantom + np.random.default_rng(1).normal(0, 1e-4 * phantom.std(), phantom.shape)
    assert estimate_map_resolution(faint, PIXEL_A) <= 1.1 * 2 * PIXEL_A


def test_8zpm_unfiltered_and_low_passed(map_8zpm):
    volume, pixel = map_8zpm
    assert estimate_map_resolution(volume, pixel) <= 1.1 * 2 * pixel  # blurred to ~5 A
    assert 7.0 <= estimate_map_resolution(_low_pass(volume, 8.0, pixel), pixel) <= 8.5
    assert 11.0 <= estimate_map_resolution(_low_pass(volume, 12.0, pixel), pixel) <= 13.0


@pytest.mark.parametrize("box", [32, 64])
@pytest.mark.parametrize("snr", [0.05, 0.2])
def test_an_unfiltered_reconstruction_is_taken_where_its_noise_begins(snr, box):
    """Its noise is flat to Nyquist and fills the box: the estimate lies between its FSC 0.5
    and 0.143 against the truth inside the particle, not at Nyquist (where the power alone
    would put it), and a box twice the particle's does not move it (the solvent around the
    particle does not dilute its signal)."""
    particle = make_phantom(32, seed=0)
    truth = np.zeros((box,) * 3, np.float32)
    start = box // 2 - 16
    truth[start:start + 32, start:start + 32, start:start + 32] = particle
    images, parts = simulate_particles(truth, 600, pixel_size_a=PIXEL_A, snr=snr, seed=3,
                                       defocus_range_a=(5000.0, 15000.0))
    rec = reconstruct(images, parts.angles_deg, shifts_px=parts.shifts_px, ctf=parts.ctf,
                      pixel_size_a=PIXEL_A)
    radius_a = (signal_mask_radius_px(truth) + 2) * PIXEL_A
    against_truth = fsc_curve(rec, truth, pixel_size_a=PIXEL_A, mask_radius_a=radius_a)
    estimate = estimate_map_resolution(rec, PIXEL_A)
    assert against_truth.resolution_0143_a <= estimate <= against_truth.resolution_05_a
    assert estimate >= 1.25 * 2 * PIXEL_A


def test_solvent_contrast_tells_a_particle_from_noise(phantom):
    noise = np.random.default_rng(0).normal(size=phantom.shape)
    # the same everywhere, beyond the frequencies the envelope is drawn from (the map blurred)
    assert np.all(np.abs(solvent_contrast(noise)[8:24] - 1.0) < 0.2)
    assert np.all(solvent_contrast(phantom)[1:24] > 100.0)  # nothing in its corners


@pytest.mark.parametrize("volume, message", [
    (np.zeros((8, 8)), "must be a cube"),
    (np.zeros((8, 8, 9)), "must be a cube"),
    (np.zeros((4, 4, 4)), "at least 8"),
    (np.full((8, 8, 8), np.nan), "NaN or infinite"),
    (np.ones((8, 8, 8)), "is constant"),
    (np.random.default_rng(0).normal(size=(32, 32, 32)), "noise floor"),
], ids=["2d", "not-cubic", "tiny", "nan", "constant", "pure-noise"])
def test_bad_maps_are_named(volume, message):
    with pytest.raises(ValueError, match=message) as info:
        estimate_map_resolution(volume, PIXEL_A, name="--volume ref.mrc")
    assert "--volume ref.mrc" in str(info.value)


def test_a_bad_pixel_size_is_named(phantom):
    with pytest.raises(ValueError, match="pixel size of the map must be > 0"):
        estimate_map_resolution(phantom, 0.0)


# --- the option ----------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"), ("AUTO", "auto"), ("full", "full"), (None, "full"), (0, "full"),
    ("0", "full"), ("8", 8.0), (7.5, 7.5)])
def test_the_option_takes_auto_full_or_angstrom(value, expected):
    assert parse_target_resolution(value) == expected


@pytest.mark.parametrize("value", ["fine", -3, "nan", "inf", [8]])
def test_a_bad_option_names_target_resolution(value):
    with pytest.raises(ValueError, match="--target-resolution must be auto, full"):
        parse_target_resolution(value)


def test_auto_is_the_one_default():
    assert defaults.TARGET_RESOLUTION == "auto"
    assert parse_target_resolution(defaults.TARGET_RESOLUTION) == "auto"


# --- the schedule --------------------------------------------------------------------------
def test_auto_searches_at_the_estimate_and_refines_finer(phantom):
    reference = _low_pass(phantom, 12.0)
    estimate = estimate_map_resolution(reference, PIXEL_A)
    plan = search_resolution("auto", volume=reference, pixel_size_a=PIXEL_A)
    assert plan.source == "estimated" and plan.estimate_a == estimate
    assert plan.search_a == estimate
    assert plan.refine_a == pytest.approx(estimate / REFINE_MARGIN)
    assert "estimated from the reference map" in plan.describe()


def test_never_finer_than_nyquist(phantom):
    plan = search_resolution("auto", volume=phantom, pixel_size_a=PIXEL_A)
    assert plan.search_a is None and plan.refine_a is None  # the full box, twice
    with pytest.raises(ValueError, match="--target-resolution 3 A is finer than the data"):
        search_resolution(3.0, volume=phantom, pixel_size_a=PIXEL_A)


def test_a_given_resolution_is_searched_and_full_is_full(phantom):
    reference = _low_pass(phantom, 6.0)
    given = search_resolution(10.0, volume=reference, pixel_size_a=PIXEL_A)
    assert given.search_a == 10.0 and given.source == "given"
    assert given.refine_a < given.search_a  # the refinement goes finer, up to the map's
    coarse_map = search_resolution(5.0, volume=_low_pass(phantom, 16.0), pixel_size_a=PIXEL_A)
    assert coarse_map.refine_a == 5.0  # never coarser than the search
    assert search_resolution("full", volume=reference, pixel_size_a=PIXEL_A) == \
        SearchResolution(None, None, "full")
