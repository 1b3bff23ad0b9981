"""Geodesic grids, region centres, nearest-centre labels and per-region grids (core.regions)."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from scipion_deepalign.core import regions as rg
from scipion_deepalign.core.geometry import (
    angle_between_directions_deg,
    projection_direction,
    random_angles_deg,
)
from scipion_deepalign.core.symmetry import (
    equivalent_angles_deg,
    in_asymmetric_unit,
    symmetric_direction_distance_deg,
    symmetry_matrices,
)

RANDOM = random_angles_deg(4000, rng=5)
CASES = [("c1", 30), ("c1", 20), ("c4", 25), ("c7", 15), ("d2", 30), ("d7", 20), ("t", 20),
         ("o", 15), ("i", 10), ("i3", 12), ("c1", 90), ("o", 45), ("i1", 5)]
IDS = [f"{s}-{d}deg" for s, d in CASES]


def _nearest_neighbour_deg(dirs):
    chord, _ = cKDTree(dirs).query(dirs, k=2)
    return np.rad2deg(2 * np.arcsin(chord[:, 1] / 2))


@pytest.mark.parametrize("step,count", [(90, 12), (30, 42), (20, 92), (10, 362), (2, 10242)])
def test_sphere_grid_counts_and_spacing(step, count):
    grid = rg.sphere_grid_deg(step)
    assert grid.shape == (count, 2)
    n = max(1, round(63.435 / step))
    nn = _nearest_neighbour_deg(projection_direction(grid))
    edge = 63.435 / n
    assert nn.min() > 0.75 * edge and nn.max() < 1.25 * edge  # even, no duplicates
    # every direction of the sphere is close to a grid direction
    chord, _ = cKDTree(projection_direction(grid)).query(projection_direction(RANDOM))
    assert np.rad2deg(2 * np.arcsin(chord.max() / 2)) < 0.7 * edge


def test_sphere_grid_is_ordered_top_down_and_includes_the_poles():
    grid = rg.sphere_grid_deg(20)
    assert np.all(np.diff(grid[:, 1]) >= -1e-9)
    np.testing.assert_allclose(grid[[0, -1], 1], [0.0, 180.0], atol=1e-9)


@pytest.mark.parametrize("symmetry,spacing,count",
                         [("c1", 30, 42), ("c1", 20, 92), ("d7", 20, 9), ("D7", 20.0, 9)])
def test_region_counts_of_the_paper(symmetry, spacing, count):
    assert rg.count_regions(spacing, symmetry) == count
    first = rg.region_centres_deg(spacing, symmetry)
    np.testing.assert_array_equal(first, rg.region_centres_deg(spacing, symmetry))  # stable
    assert first.shape == (count, 2)


@pytest.mark.parametrize("symmetry,spacing", CASES, ids=IDS)
def test_centres_cover_the_sphere_within_the_spacing(symmetry, spacing):
    centres = rg.region_centres_deg(spacing, symmetry)
    _, dist = rg.assign_regions(RANDOM, centres, symmetry)
    assert dist.max() <= spacing
    # and the labels' distances agree with the symmetry module
    labels, _ = rg.assign_regions(RANDOM[:200], centres, symmetry)
    np.testing.assert_allclose(
        symmetric_direction_distance_deg(RANDOM[:200, :2], centres[labels], symmetry),
        dist[:200], atol=1e-8)


@pytest.mark.parametrize("symmetry,spacing", CASES, ids=IDS)
def test_centres_are_distinct_points_of_the_unit(symmetry, spacing):
    centres = rg.region_centres_deg(spacing, symmetry)
    dirs = projection_direction(centres)
    assert np.all(in_asymmetric_unit(dirs, symmetry, tol_deg=1e-3))
    # no two centres are equivalent (or even close) under the group
    i, j = np.triu_indices(len(centres), 1)
    if len(i):
        d = symmetric_direction_distance_deg(centres[i], centres[j], symmetry)
        assert d.min() > 0.45 * 63.435 / max(1, round(63.435 / spacing))
    # the count is about the full grid divided by the group order
    n_full = len(rg.sphere_grid_deg(spacing))
    order = len(symmetry_matrices(symmetry))
    assert n_full / order <= len(centres) <= 2.0 * n_full / order + 2


@pytest.mark.parametrize("symmetry,spacing", CASES, ids=IDS)
def test_centres_label_themselves(symmetry, spacing):
    centres = rg.region_centres_deg(spacing, symmetry)
    labels, dist = rg.assign_regions(centres, centres, symmetry)
    np.testing.assert_array_equal(labels, np.arange(len(centres)))
    np.testing.assert_allclose(dist, 0.0, atol=1e-6)


@pytest.mark.parametrize("symmetry", ["c4", "d7", "t", "o", "i"])
def test_equivalent_poses_get_the_same_label(symmetry):
    centres = rg.region_centres_deg(20, symmetry)
    equivalent = equivalent_angles_deg(RANDOM[:100], symmetry)  # (N, G, 3)
    labels, dist = rg.assign_regions(equivalent.reshape(-1, 3), centres, symmetry)
    labels, dist = labels.reshape(100, -1), dist.reshape(100, -1)
    np.testing.assert_allclose(dist, np.broadcast_to(dist[:, :1], dist.shape), atol=1e-6)
    # ties between two centres are measure-zero; random poses have none
    np.testing.assert_array_equal(labels, np.broadcast_to(labels[:, :1], labels.shape))


def test_labels_without_symmetry_are_the_plain_nearest_centre():
    centres = rg.region_centres_deg(30)
    labels, dist = rg.assign_regions(RANDOM, centres, "c1")
    plain = angle_between_directions_deg(RANDOM[:, None, :2], centres[None])
    np.testing.assert_array_equal(labels, plain.argmin(axis=1))
    np.testing.assert_allclose(dist, plain.min(axis=1), atol=1e-8)


@pytest.mark.parametrize("symmetry,spacing,step", [("c1", 30, 6), ("c4", 25, 5), ("d7", 20, 4),
                                                   ("o", 30, 5), ("i", 20, 3)])
def test_region_grids_cover_the_unit_once(symmetry, spacing, step):
    centres = rg.region_centres_deg(spacing, symmetry)
    grids = rg.region_direction_grids(centres, symmetry, step)
    assert len(grids) == len(centres)
    assert all(g.ndim == 2 and g.shape[1] == 2 and len(g) > 0 for g in grids)
    # every fine direction belongs to its region and sits at its symmetric distance (a patch)
    for r, grid in enumerate(grids):
        labels, dist = rg.assign_regions(grid, centres, symmetry)
        np.testing.assert_array_equal(labels, r)
        np.testing.assert_allclose(angle_between_directions_deg(grid, centres[r]), dist,
                                   atol=1e-6)
    union = np.vstack(grids)
    # covers the unit (hence, by symmetry, the sphere) at the fine step
    _, cover = rg.assign_regions(RANDOM, union, symmetry)
    assert cover.max() <= step
    # no duplicates, even up to symmetry
    _, nearest_other = rg.assign_regions(union, union, symmetry)
    np.testing.assert_allclose(nearest_other, 0.0, atol=1e-6)  # itself
    images = np.einsum("gij,nj->gni", symmetry_matrices(symmetry),
                       projection_direction(union)).reshape(-1, 3)
    pairs = np.array(sorted(cKDTree(images).query_pairs(np.deg2rad(0.4 * step))))
    if len(pairs):  # images of one direction on a symmetry axis coincide: that is fine
        assert np.all(pairs[:, 0] % len(union) == pairs[:, 1] % len(union))
    order = len(symmetry_matrices(symmetry))
    assert len(union) <= 1.5 * len(rg.sphere_grid_deg(step)) / order + 10


@pytest.mark.parametrize("bad", [4.9, 91, 0, -10, float("nan"), "abc", None])
def test_bad_spacing_raises(bad):
    with pytest.raises(ValueError, match="spacing_deg"):
        rg.region_centres_deg(bad, "c1")
    with pytest.raises(ValueError, match="spacing_deg"):
        rg.count_regions(bad, "c1")


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="step_deg"):
        rg.sphere_grid_deg(0)
    with pytest.raises(ValueError, match="symmetry"):
        rg.region_centres_deg(20, "x7")
    with pytest.raises(ValueError, match="angles_deg"):
        rg.assign_regions(np.zeros((5, 4)), rg.region_centres_deg(30), "c1")
    with pytest.raises(ValueError, match="centres_deg"):
        rg.assign_regions(np.zeros((5, 3)), np.zeros((0, 2)), "c1")
