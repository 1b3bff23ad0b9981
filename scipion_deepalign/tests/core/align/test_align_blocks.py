"""align_particles reads its particles block by block: a memory map or any sliceable stack
gives the poses of the in-memory array, and no read is larger than the block."""
import numpy as np
import pytest

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.io import read_mrc_stack, write_mrc
from scipion_deepalign.core.regions import nearest_regions, region_centres_deg
from scipion_deepalign.tests.helpers import phantom_particles

PIXEL_A = 4.0
BLOCK = 5  # 12 particles: blocks of 5, 5 and 2


@pytest.fixture(scope="module")
def data():
    return phantom_particles(12, snr=1.0, seed=6, pixel_size_a=PIXEL_A)


def _kwargs(parts, **extra):
    centres = region_centres_deg(30.0, "c1")
    return dict(pixel_size_a=PIXEL_A, max_shift_px=3.0, step_deg=12.0, device="cpu",
                ctf=parts.ctf, centres_deg=centres,
                region_hints=nearest_regions(parts.angles_deg, centres, "c1", k=2), **extra)


class _CountingStack:
    """A stack known only by ``len()`` and slicing, recording the size of every read."""

    def __init__(self, images):
        self.images, self.reads = images, []

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        assert isinstance(index, slice)
        part = self.images[index]
        self.reads.append(len(part))
        return part.copy()


def _assert_same_poses(a, b):
    # refined angles go through float64 trigonometry whose SIMD path may differ in the
    # last bit with the arrays' alignment: 1e-9 degrees, as test_progress_faces
    np.testing.assert_allclose(a.angles_deg, b.angles_deg, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(a.shifts_px, b.shifts_px)
    np.testing.assert_array_equal(a.score, b.score)
    assert a.n_comparisons == b.n_comparisons


@pytest.mark.parametrize("refine", [False, True], ids=["subpixel", "refine"])
def test_memory_map_gives_the_in_memory_poses(data, tmp_path, refine):
    volume, images, parts = data
    write_mrc(tmp_path / "p.mrcs", images, pixel_size_a=PIXEL_A, stack=True)
    mapped, _ = read_mrc_stack(tmp_path / "p.mrcs", mmap=True)
    assert isinstance(mapped, np.memmap)
    kwargs = _kwargs(parts, refine=refine, block_size=BLOCK)
    _assert_same_poses(align_particles(mapped, volume, **kwargs),
                       align_particles(images, volume, **kwargs))


def test_no_read_is_larger_than_the_block(data):
    volume, images, parts = data
    stack = _CountingStack(images)
    res = align_particles(stack, volume, **_kwargs(parts, block_size=BLOCK, n_best=2))
    assert max(stack.reads) <= BLOCK
    assert sum(stack.reads) - stack.reads[0] == len(images)  # the first read: the shape
    whole = align_particles(images, volume, **_kwargs(parts, n_best=2))
    # other blocks, other matrix shapes: equal up to BLAS summation order
    np.testing.assert_allclose(res.score, whole.score, atol=1e-5)
    np.testing.assert_allclose(res.n_best_scores, whole.n_best_scores, atol=1e-5)
    assert np.mean(np.all(np.abs(res.angles_deg - whole.angles_deg) < 1e-6, axis=1)) >= 0.9


def test_a_non_finite_block_is_named(data):
    volume, images, parts = data
    bad = images.copy()
    bad[7, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(among particles 5\.\.9"):
        align_particles(bad, volume, **_kwargs(parts, block_size=BLOCK))


@pytest.mark.parametrize("ctf_mode", ["apply", "flip"])
def test_references_prepared_once_give_the_poses_of_references_prepared_per_block(
        data, monkeypatch, ctf_mode):
    """With several blocks the rotated references are prepared once (a ReferenceBank) and
    sliced per tile group: the same poses as preparing them again for every block."""
    import scipion_deepalign.core.align.search as search

    volume, images, parts = data
    calls = []
    real = search.Search.reference_bank

    def counting(self, *args, **kwargs):
        bank = real(self, *args, **kwargs)
        calls.append(bank)
        return bank

    monkeypatch.setattr(search.Search, "reference_bank", counting)
    banked = align_particles(images, volume, block_size=BLOCK, ctf_mode=ctf_mode,
                             **_kwargs(parts))
    assert len(calls) == 1 and calls[0] is not None
    monkeypatch.setattr(search, "_BANK_BYTES", 0)  # too small: prepared per block
    calls.clear()
    per_block = align_particles(images, volume, block_size=BLOCK, ctf_mode=ctf_mode,
                                **_kwargs(parts))
    assert calls == [None]
    np.testing.assert_allclose(banked.angles_deg, per_block.angles_deg, rtol=0, atol=1e-9)
    np.testing.assert_allclose(banked.score, per_block.score, rtol=1e-5, atol=1e-6)
    assert banked.n_comparisons == per_block.n_comparisons
