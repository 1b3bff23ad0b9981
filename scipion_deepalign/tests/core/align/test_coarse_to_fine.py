"""Coarse to fine: the search at the resolution the reference supports, the refinement finer,
finds the poses of the fine (full-resolution) global search."""
import numpy as np
import pytest

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.imageops import low_pass_volume
from scipion_deepalign.core.resolution import estimate_map_resolution
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

PIXEL_A = 4.0
REFERENCE_A = 12.0  # the reference handed to the alignment: the map low-passed to 12 A


@pytest.fixture(scope="module")
def data():
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 10, pixel_size_a=PIXEL_A, snr=np.inf,
                                       ctf=False, max_shift_px=2.0, seed=1)
    reference = low_pass_volume(volume, pixel_size_a=PIXEL_A, resolution_a=REFERENCE_A)
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=3.0, device="cpu")
    fine = align_particles(images, reference, target_resolution_a="full", **kwargs)
    coarse = align_particles(images, reference, **kwargs)  # the default: "auto"
    return parts, reference, fine, coarse


def test_auto_searches_at_the_reference_resolution_and_refines_finer(data):
    _, reference, fine, coarse = data
    estimate = estimate_map_resolution(reference, PIXEL_A)
    assert coarse.info["resolution_source"] == "estimated"
    assert coarse.info["estimated_resolution_a"] == pytest.approx(estimate)
    assert 10.0 <= estimate <= 13.0
    assert coarse.info["box_px"] < coarse.info["refine_box_px"] < 32
    assert fine.info["box_px"] == fine.info["refine_box_px"] == 32
    assert "estimated from the reference map" in coarse.info["resolution"]
    assert coarse.n_comparisons < fine.n_comparisons / 2


def test_coarse_to_fine_finds_the_poses_of_the_fine_search(data):
    """The same pose for every particle (within 10 deg: a 12 A reference on a 32-px phantom
    pins poses down to a few degrees, each search's within that, in its own direction), and
    as close to the truth."""
    parts, _, fine, coarse = data
    between = symmetric_pose_distance_deg(coarse.angles_deg, fine.angles_deg, "c1")
    assert np.all(between <= 10.0), between
    np.testing.assert_allclose(coarse.shifts_px, fine.shifts_px, atol=1.0)
    err_fine = symmetric_pose_distance_deg(fine.angles_deg, parts.angles_deg, "c1")
    err_coarse = symmetric_pose_distance_deg(coarse.angles_deg, parts.angles_deg, "c1")
    assert np.max(err_coarse) < 8.0, err_coarse
    assert np.median(err_coarse) <= np.median(err_fine) + 1.0, (err_coarse, err_fine)
