"""AlignmentResult.replace_rows: the rows given take the other alignment's poses and the
columns that go with them (region, significance, n best), the other rows keep theirs, and the
other's comparisons are added."""
import numpy as np

from scipion_deepalign.core.align.poses import AlignmentResult


def _result(n, angle, *, n_best=True):
    return AlignmentResult(
        angles_deg=np.full((n, 3), float(angle)), shifts_px=np.full((n, 2), float(angle)),
        score=np.full(n, angle / 10.0), region=np.full(n, int(angle)), n_comparisons=10 * n,
        n_best_angles_deg=np.full((n, 2, 3), float(angle)) if n_best else None,
        significance=np.full(n, float(angle)), n_refine_comparisons=n)


def test_replace_rows_takes_the_rows_given_and_their_columns_only():
    mine, other = _result(5, 1), _result(2, 7)
    mine.replace_rows(np.array([4, 2]), other)
    np.testing.assert_array_equal(mine.angles_deg[:, 0], [1, 1, 7, 1, 7])
    np.testing.assert_array_equal(mine.region, [1, 1, 7, 1, 7])
    np.testing.assert_array_equal(mine.significance, [1, 1, 7, 1, 7])
    np.testing.assert_array_equal(mine.n_best_angles_deg[:, 0, 0], [1, 1, 7, 1, 7])
    np.testing.assert_allclose(mine.score, [0.1, 0.1, 0.7, 0.1, 0.7])
    assert (mine.n_comparisons, mine.n_refine_comparisons) == (50 + 20, 5 + 2)


def test_replace_rows_keeps_columns_the_other_lacks():
    mine, other = _result(4, 1), _result(2, 3, n_best=False)  # the other has no n best
    mine.replace_rows(np.array([1, 3]), other)
    np.testing.assert_array_equal(mine.shifts_px[:, 1], [1, 3, 1, 3])
    np.testing.assert_array_equal(mine.n_best_angles_deg[:, 0, 0], [1, 1, 1, 1])  # kept
    assert (mine.n_comparisons, mine.n_refine_comparisons) == (40 + 20, 4 + 2)
