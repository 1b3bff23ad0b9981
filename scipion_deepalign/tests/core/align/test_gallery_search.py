"""The gallery search by tile sets (batched, references from the bank) against the search by
gallery groups (the reference path): the same comparisons, hence the same best poses."""
import numpy as np
import pytest

from scipion_deepalign.core.align import gallery_search
from scipion_deepalign.core.align.gallery import GalleryCache, group_galleries
from scipion_deepalign.core.align.search import Search
from scipion_deepalign.core.align.search_plan import SearchOptions, plan_alignment
from scipion_deepalign.core.regions import nearest_regions, region_centres_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles
from scipion_deepalign.tests.helpers import numpy_twin

PIXEL_A = 4.0


@pytest.fixture(scope="module")
def block():
    volume = make_phantom(32, seed=3)
    images, parts = simulate_particles(volume, 24, pixel_size_a=PIXEL_A, snr=2.0, ctf=True,
                                       max_shift_px=2.0, seed=5)
    centres = region_centres_deg(45.0, "c1")
    near = nearest_regions(parts.angles_deg, centres, "c1", k=3)
    hints = near.copy()
    hints[::3, 1:] = -1  # a third of the particles search one region: several tile sets
    return volume, images, parts, centres, hints


def _engine_and_galleries(block, xp, *, regional=True):
    """The search of the block's particles and the galleries of their regions (or global)."""
    volume, images, parts, centres, hints = block
    engine = Search.create(32, PIXEL_A, max_shift_px=2.0, xp=xp, step_deg=12.0,
                           ctf=parts.ctf, ctf_mode="apply")
    plan = plan_alignment(len(images), symmetry="c1", step_deg=engine.step_deg,
                          centres_deg=centres, region_hints=hints if regional else None,
                          options=SearchOptions(overlap_deg=10.0, probability_mass=None))
    return engine, group_galleries(plan, volume, GalleryCache())


def _search(block, xp, *, regional=True, n_best=1):
    images = block[1]
    engine, galleries = _engine_and_galleries(block, xp, regional=regional)
    rows = np.arange(len(images))
    spectra, power = engine.particles(images, engine.ctf_half(rows))
    local = [m for m in galleries.members]
    bank = engine.reference_bank(galleries.projections, chunk=7)
    tiles = gallery_search.search_by_tile_sets(engine, galleries, bank, spectra, power,
                                               local, n_best)
    groups = gallery_search.search_by_gallery_groups(engine, galleries, spectra, power, local,
                                                     n_best)
    sliced = gallery_search.search_by_gallery_groups(engine, galleries, spectra, power, local,
                                                     n_best, bank=bank)
    np.testing.assert_array_equal(sliced[0].ref, groups[0].ref)  # the bank's slices: the same
    np.testing.assert_allclose(sliced[0].score, groups[0].score, atol=1e-6)
    return tiles, groups, len(galleries.bounds)


@pytest.mark.parametrize("xp", [np, numpy_twin()], ids=["numpy", "cupy-path-on-numpy"])
@pytest.mark.parametrize("regional,n_best", [(True, 1), (True, 3), (False, 2)],
                         ids=["regional", "regional-3-best", "global-2-best"])
def test_tile_sets_give_the_gallery_groups_answer(block, xp, regional, n_best):
    (best, count), (ref, ref_count), n_groups = _search(block, xp, regional=regional,
                                                        n_best=n_best)
    if regional:
        assert n_groups > 3  # the regional path really meets several gallery groups
    assert count == ref_count > 0
    np.testing.assert_array_equal(best.ref, ref.ref)
    np.testing.assert_array_equal(best.shift, ref.shift)
    np.testing.assert_allclose(best.score, ref.score, atol=1e-5)
    np.testing.assert_array_equal(best.count, ref.count)
    np.testing.assert_allclose(best.significance(), ref.significance(), atol=1e-6)


def test_tile_set_groups_partition_the_searching_particles():
    local = [np.array([0, 1, 2]), np.array([1, 2]), np.array([2, 4]), np.array([], int)]
    groups = gallery_search.tile_set_groups(local, 6)
    found = {tuple(who): tuple(tiles) for who, tiles in groups}
    assert found == {(0,): (0,), (1,): (0, 1), (2,): (0, 1, 2), (4,): (2,)}
    assert gallery_search.tile_set_groups([np.array([], int)], 3) == []


def test_gallery_cache_projects_each_direction_once(block):
    """A second request (other order, some new directions, as the fallback's global pass)
    projects only the new ones, and every projection is the map's at that direction."""
    from scipion_deepalign.core.projection import project

    volume = block[0]
    dirs = np.random.default_rng(7).uniform([0, 0], [360, 180], (12, 2))
    cache = GalleryCache()
    first = cache.projections(volume, dirs[:8])
    assert cache.n_projected == 8
    again = cache.projections(volume, dirs[::-1])  # 4 new, 8 met in another order
    assert cache.n_projected == 12
    np.testing.assert_array_equal(again[::-1][:8], first)
    expected = project(volume, np.concatenate([dirs, np.zeros((12, 1))], axis=1))
    np.testing.assert_allclose(again[::-1], expected, atol=1e-4 * np.abs(expected).max())


def test_align_particles_gives_the_same_poses_on_either_schedule(block, monkeypatch):
    """Whole alignments (regional windows, refinement): tile sets forced against gallery
    groups forced, the same poses, scores and counts."""
    from scipion_deepalign.core.align.align import align_particles

    volume, images, parts, centres, hints = block
    hints = np.where(hints >= 0, hints, hints[:, :1])  # one region: repeated, not -1
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=12.0, ctf=parts.ctf,
                  centres_deg=centres, region_hints=hints, device="cpu",
                  target_resolution_a=None, search=SearchOptions(probability_mass=None))
    results = []
    for least in (0, 10 ** 9):  # every block by tile sets; every block by gallery groups
        monkeypatch.setattr(gallery_search, "MIN_PARTICLES_PER_SET", least)
        results.append(align_particles(images, volume, **kwargs))
    sets, groups = results
    np.testing.assert_allclose(sets.angles_deg, groups.angles_deg, atol=1e-6)
    np.testing.assert_allclose(sets.shifts_px, groups.shifts_px, atol=1e-6)
    np.testing.assert_allclose(sets.score, groups.score, atol=1e-6)
    assert sets.n_comparisons == groups.n_comparisons
    assert sets.n_refine_comparisons == groups.n_refine_comparisons > 0


def test_a_bank_is_made_only_where_references_are_met_again():
    from types import SimpleNamespace

    one_group = SimpleNamespace(bounds=[(0, 10)], members=[np.arange(100)])
    assert not gallery_search.wants_bank(one_group, 100, block_size=8192)
    assert gallery_search.wants_bank(one_group, 100, block_size=50)  # two blocks
    crowded = SimpleNamespace(bounds=[(0, 5), (5, 9)], members=[np.arange(100), np.arange(50)])
    assert gallery_search.wants_bank(crowded, 100, block_size=8192)  # 2 sets of 50
    sparse = SimpleNamespace(bounds=[(0, 5), (5, 9)], members=[np.arange(10), np.arange(5)])
    assert not gallery_search.wants_bank(sparse, 10, block_size=8192)  # 2 sets of 5
    # the search around the kept poses meets the references again
    assert gallery_search.wants_bank(one_group, 100, block_size=8192, follows=True)


@pytest.mark.parametrize("xp", [np, numpy_twin()], ids=["numpy", "cupy-path-on-numpy"])
def test_a_subset_of_the_bank_holds_the_references_of_those_directions(block, xp):
    """The second search's bank, gathered from the first's by direction, equals the
    references prepared from those projections; directions are found by value."""
    engine, galleries = _engine_and_galleries(block, xp)
    picked = np.array([5, 2, len(galleries) - 1, 9])
    found = galleries.indices_of(galleries.directions_deg[picked] + 1e-9)  # rounding
    np.testing.assert_array_equal(found, picked)
    assert galleries.indices_of(np.array([[1.234, 56.789]])) is None
    bank = engine.reference_bank(galleries.projections, chunk=7)
    matrix, power = bank.subset(picked, xp=xp).take(0, len(picked))
    ref_matrix, ref_power = engine.references(galleries.projections[picked])
    assert matrix.shape == ref_matrix.shape == (len(picked) * engine.n_psi,
                                                2 * len(engine.band))
    np.testing.assert_allclose(matrix, ref_matrix, atol=1e-6)
    np.testing.assert_allclose(power, ref_power, rtol=1e-5, atol=1e-9)


def test_the_search_around_the_kept_poses_takes_its_references_from_the_bank(block,
                                                                             monkeypatch):
    """A regional alignment that follows its kept poses prepares every direction's
    references once (the bank) and gathers the second search's from it: the same poses,
    scores and counts as preparing them again."""
    from scipion_deepalign.core.align import align as align_module
    from scipion_deepalign.core.align import search as search_module
    from scipion_deepalign.core.align.align import align_particles

    volume, images, parts, centres, hints = block
    hints = np.where(hints >= 0, hints, hints[:, :1])
    kwargs = dict(pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=12.0, ctf=parts.ctf,
                  centres_deg=centres, region_hints=hints, device="cpu",
                  target_resolution_a=None,
                  search=SearchOptions(probability_mass=None, overlap_deg=0.0, follow_deg=30.0))
    prepared = []
    real = search_module.Search.references

    def counting(self, projections, **kw):
        prepared.append(len(projections))
        return real(self, projections, **kw)

    monkeypatch.setattr(search_module.Search, "references", counting)
    with_bank = align_particles(images, volume, **kwargs)
    banked = sum(prepared)
    prepared.clear()
    monkeypatch.setattr(align_module, "wants_bank", lambda *a, **k: False)
    again = align_particles(images, volume, **kwargs)
    assert with_bank.info["mean_tiles_followed"] > 0 and with_bank.info["reference_bank"]
    assert banked == with_bank.info["n_directions"] < sum(prepared)
    np.testing.assert_allclose(with_bank.angles_deg, again.angles_deg, atol=1e-6)
    np.testing.assert_allclose(with_bank.score, again.score, atol=1e-6)
    assert with_bank.n_comparisons == again.n_comparisons
