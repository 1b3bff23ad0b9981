"""One definition of a comparison: the cost preview counts what the alignment counts."""
import numpy as np

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.align.cost import search_cost
from scipion_deepalign.core.simulate import make_phantom, simulate_particles


def test_preview_counts_the_alignments_comparisons_per_particle():
    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, 3, pixel_size_a=4.0, snr=np.inf, ctf=False,
                                       max_shift_px=1.0, seed=1)
    kwargs = dict(pixel_size_a=4.0, max_shift_px=2.0, step_deg=15.0, target_resolution_a=None)
    result = align_particles(images, volume, device="cpu", refine=True, **kwargs)
    cost = search_cost(32, symmetry="c1", refine=True, **kwargs)
    assert cost.n_directions == result.info["n_directions"]
    assert cost.n_inplane == result.info["n_psi"] and cost.n_shifts == result.info["n_shifts"]
    assert result.n_comparisons == len(images) * cost.comparisons
    # the preview counts every start; the alignment skips repeated starts and those far
    # below the best
    assert 0 < result.n_refine_comparisons <= len(images) * cost.refine_comparisons
    assert search_cost(32, refine=False, **kwargs).refine_comparisons == 0
    assert f"{cost.comparisons:,} comparisons per particle" in cost.message()
    assert f"then up to {cost.refine_comparisons} refinement candidates" in cost.message()
