"""Search windows, adaptive number of regions and the global fallback (core.search_plan)."""
import numpy as np
import pytest

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.align.search_plan import (
    SearchOptions,
    build_tiles,
    plan_search,
    select_regions,
)
from scipion_deepalign.core.regions import nearest_regions, region_centres_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.core.symmetry import symmetric_direction_distance_deg

PIXEL = 4.0


@pytest.mark.parametrize("symmetry,spacing", [("c1", 30.0), ("d7", 20.0)], ids=["c1", "d7"])
def test_windows_cover_their_region_and_overlap_their_neighbours(symmetry, spacing):
    centres = region_centres_deg(spacing, symmetry)
    cells = build_tiles(centres, symmetry, 4.0, overlap_deg=0.0)
    wide = build_tiles(centres, symmetry, 4.0, overlap_deg=10.0)
    n_tiles = len(cells)
    owners = np.zeros(n_tiles, int)
    for window in cells.windows:
        owners[window] += 1
    assert np.all(owners >= 1)  # every tile is in some region
    # without overlap the windows are a partition, but for tiles exactly equidistant from two
    # or three centres (the geodesic grids share their symmetry), which go to all of them
    assert np.mean(owners == 1) > 0.9
    for narrow, broad in zip(cells.windows, wide.windows):
        assert set(narrow) <= set(broad) and len(broad) > len(narrow)
    shared = sum(len(set(a) & set(b)) for i, a in enumerate(wide.windows)
                 for b in wide.windows[i + 1:])
    assert shared > n_tiles * 0.3  # neighbouring windows share their border tiles
    # the tiles hold every gallery direction once
    dirs = np.concatenate(cells.directions_deg)
    assert len(np.unique(np.round(dirs, 6), axis=0)) == len(dirs)


def test_adaptive_regions_keep_the_probability_mass():
    regions = np.array([[3, 1, 4, 0], [2, 0, 1, 3]])
    probs = np.array([[0.5, 0.3, 0.15, 0.05], [0.95, 0.03, 0.01, 0.01]])
    picked = select_regions(regions, probs, probability_mass=0.8)
    assert picked.tolist() == [[3, 1, -1, -1], [2, -1, -1, -1]]
    picked = select_regions(regions, probs, probability_mass=0.81)
    assert picked.tolist() == [[3, 1, 4, -1], [2, -1, -1, -1]]
    assert select_regions(regions, probs, probability_mass=0.99, max_regions=2).tolist() == \
        [[3, 1, -1, -1], [2, 0, -1, -1]]
    assert select_regions(regions, top_k=1).tolist() == [[3, -1, -1, -1], [2, -1, -1, -1]]


def test_fallback_and_comparisons_are_counted_once():
    centres = region_centres_deg(30.0, "c1")
    tiles = build_tiles(centres, "c1", 6.0, overlap_deg=10.0)
    sizes = np.array([len(d) for d in tiles.directions_deg])
    lists = np.array([[0, 1], [5, -1], [7, 8]])
    plan = plan_search(tiles, 3, region_lists=lists, top_probability=np.array([0.6, 0.9, 0.1]),
                       fallback_probability=0.3)
    assert plan.fallback.tolist() == [False, False, True]
    per_particle = np.zeros(3)
    for t, members in enumerate(plan.members):
        per_particle[members] += sizes[t]
    union = np.union1d(tiles.windows[0], tiles.windows[1])
    assert per_particle[0] == sizes[union].sum()  # shared border tiles once
    assert per_particle[1] == sizes[tiles.windows[5]].sum()
    assert per_particle[2] == sizes.sum()  # the fallback particle searches everything


@pytest.fixture(scope="module")
def data():
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 12, pixel_size_a=PIXEL, snr=np.inf, ctf=False,
                                       seed=4)
    return volume, images, parts


def test_fallback_rescues_a_particle_given_a_wrong_region(data):
    volume, images, parts = data
    centres = region_centres_deg(30.0, "c1")
    wrong = nearest_regions(parts.angles_deg, centres, "c1", k=42)[:, -1:]  # the farthest
    probs = np.full((len(images), 1), 0.9)
    probs[0] = 0.05  # the network is unsure of particle 0 only
    kwargs = dict(pixel_size_a=PIXEL, max_shift_px=2.0, symmetry="c1", region_hints=wrong,
                  centres_deg=centres, step_deg=8.0, region_probabilities=probs)
    plain = align_particles(images, volume,
                            search=SearchOptions(overlap_deg=0.0, probability_mass=None), **kwargs)
    gated = align_particles(images, volume, search=SearchOptions(
        overlap_deg=0.0, probability_mass=None, fallback_probability=0.3), **kwargs)
    err_plain = symmetric_direction_distance_deg(plain.angles_deg, parts.angles_deg, "c1")
    err_gated = symmetric_direction_distance_deg(gated.angles_deg, parts.angles_deg, "c1")
    assert err_plain[0] > 60 and err_gated[0] < 10  # searched globally, found
    assert gated.fallback.tolist() == [True] + [False] * (len(images) - 1)
    assert gated.info["fallback_fraction"] == pytest.approx(1 / len(images))
    assert gated.n_comparisons > plain.n_comparisons
    assert np.allclose(err_gated[1:], err_plain[1:])  # the others are searched as before


def test_adaptive_search_needs_probabilities(data):
    volume, images, parts = data
    centres = region_centres_deg(30.0, "c1")
    hints = nearest_regions(parts.angles_deg, centres, "c1", k=2)
    with pytest.raises(ValueError, match="probabilities"):
        align_particles(images, volume, pixel_size_a=PIXEL, max_shift_px=2.0, region_hints=hints,
                        centres_deg=centres, step_deg=8.0,
                        search=SearchOptions(probability_mass=0.9))


def test_search_options_are_checked():
    for bad in (dict(overlap_deg=-1), dict(probability_mass=1.5), dict(max_regions=0),
                dict(fallback_probability=1.0), dict(fallback_significance=-0.5),
                dict(follow_deg=-1), dict(follow_deg=200)):
        with pytest.raises(ValueError):
            SearchOptions(**bad)


def _across_the_border(centres, fraction, n=6, seed=1):
    """Views a ``fraction`` of the way from a region's centre to a neighbour's (0.5: on
    the border), with the region each starts from."""
    from scipion_deepalign.core.geometry import direction_to_euler, projection_direction
    from scipion_deepalign.core.regions import region_distances_deg

    rng = np.random.default_rng(seed)
    dist = region_distances_deg(centres, centres, "c1")
    np.fill_diagonal(dist, np.inf)
    start = rng.choice(len(centres), n, replace=False)
    towards = np.argmin(dist[start], axis=1)
    a = projection_direction(np.c_[centres[start], np.zeros(n)])
    b = projection_direction(np.c_[centres[towards], np.zeros(n)])
    view = (1 - fraction) * a + fraction * b
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    angles = np.c_[direction_to_euler(view)[:, :2], rng.uniform(0, 360, n)]
    return angles, start


def test_following_the_kept_poses_finds_a_view_across_the_border(data):
    """Particles searched in the region next to their own, their views nine tenths of the way
    to their own region's centre: the searched region's cell ends at the border, following
    the poses kept there crosses it."""
    volume = data[0]
    centres = region_centres_deg(30.0, "c1")
    angles, hinted = _across_the_border(centres, 0.9)
    images, parts = simulate_particles(volume, len(angles), pixel_size_a=PIXEL, snr=np.inf,
                                       ctf=False, angles_deg=angles, seed=2)
    kwargs = dict(pixel_size_a=PIXEL, max_shift_px=2.0, region_hints=hinted[:, None],
                  centres_deg=centres, step_deg=6.0, device="cpu")
    cells = align_particles(images, volume, search=SearchOptions(
        overlap_deg=0.0, follow_deg=0.0, probability_mass=None), **kwargs)
    followed = align_particles(images, volume, search=SearchOptions(
        overlap_deg=0.0, probability_mass=None), **kwargs)
    err_cells = symmetric_direction_distance_deg(cells.angles_deg, parts.angles_deg, "c1")
    err_followed = symmetric_direction_distance_deg(followed.angles_deg, parts.angles_deg, "c1")
    assert np.all(err_cells > 6) and np.all(err_followed < 2.5)
    assert followed.n_comparisons > cells.n_comparisons
    assert followed.info["mean_tiles_followed"] > 1


def test_follow_adds_the_tiles_near_the_kept_poses_not_yet_searched():
    from scipion_deepalign.core.regions import region_distances_deg

    centres = region_centres_deg(30.0, "c1")
    tiles = build_tiles(centres, "c1", 6.0)
    lists = np.array([[0], [5], [9]])
    plan = plan_search(tiles, 3, region_lists=lists, follow_deg=15.0)
    # particle 0 kept poses at the centre of region 0 only, 1 and 2 near other regions
    kept = np.stack([np.repeat(centres[[0]], 2, 0), centres[[7, 7]], centres[[9, 20]]])
    more = plan.follow(np.arange(3), kept)
    added = np.zeros((3, len(tiles)), bool)
    for t, members in enumerate(more.members):
        added[members, t] = True
    searched = np.zeros((3, len(tiles)), bool)
    for t, members in enumerate(plan.members):
        searched[members, t] = True
    reach = region_distances_deg(kept.reshape(-1, 2), tiles.centres_deg, "c1").reshape(3, 2, -1)
    expected = (reach <= 15.0).any(axis=1) & ~searched
    np.testing.assert_array_equal(added, expected)
    assert not added[0].any() and added[1].any() and added[2].any()
    assert not (added & searched).any()  # never a tile twice
    assert plan_search(tiles, 3, region_lists=lists).follow(np.arange(3), kept) is None
    assert plan_search(tiles, 3).follow(np.arange(3), kept) is None  # a global search
