"""Angular consensus: scrambled poses rejected, perturbed and symmetric-equivalent kept."""
import numpy as np
import pytest

from scipion_deepalign.core.geometry import euler_to_matrix, matrix_to_euler, random_angles_deg
from scipion_deepalign.core.judge.consensus import (
    angular_consensus,
    match_particles,
    pair_differences,
)


def _small_rotations(n, max_deg, rng):
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.deg2rad(rng.uniform(0, max_deg, n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k -= np.transpose(k, (0, 2, 1))
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * k @ k


def _perturb(angles, max_deg, rng):
    return matrix_to_euler(euler_to_matrix(angles) @ _small_rotations(len(angles), max_deg, rng))


@pytest.mark.parametrize("symmetry", ["c1", "c4", "d2"])
def test_scrambled_poses_rejected_unchanged_kept(symmetry):
    from scipion_deepalign.core.symmetry import symmetry_matrices
    rng = np.random.default_rng(0)
    n = 400
    truth = random_angles_deg(n, rng)
    other = _perturb(truth, 3.0, rng)
    # the other method reports symmetric-equivalent poses: A @ S is the same image
    ops = symmetry_matrices(symmetry)
    pick = ops[rng.integers(0, len(ops), n)]
    other = matrix_to_euler(euler_to_matrix(other) @ pick)
    scrambled = rng.random(n) < 0.3
    other[scrambled] = random_angles_deg(scrambled.sum(), rng)
    res = angular_consensus([truth, other], symmetry=symmetry, max_angle_deg=10)
    assert res.direction_diff_deg.shape == (n, 1) and res.pairs == [(0, 1)]
    assert res.agree[~scrambled].mean() >= 0.95
    assert (~res.agree[scrambled]).mean() >= 0.95
    assert np.all(res.direction_diff_deg[~scrambled, 0] <= 3.0 + 1e-6)
    assert np.all(res.inplane_diff_deg[~scrambled, 0] <= 6.0 + 1e-6)
    assert np.array_equal(res.source, np.where(res.agree, 0, -1))


def test_symmetric_equivalent_is_zero_distance():
    from scipion_deepalign.core.symmetry import symmetry_matrices
    a = random_angles_deg(50, 1)
    for op in symmetry_matrices("d2")[1:]:
        b = matrix_to_euler(euler_to_matrix(a) @ op)
        direction, inplane = pair_differences(a, b, symmetry="d2")
        np.testing.assert_allclose(direction, 0, atol=1e-4)
        np.testing.assert_allclose(inplane, 0, atol=1e-4)
        # without symmetry the same poses differ
        assert np.median(pair_differences(a, b, symmetry="c1")[0]) > 20


def test_inplane_difference_is_checked():
    a = random_angles_deg(20, 2)
    b = a.copy()
    b[:, 2] += 30.0
    res = angular_consensus([a, b], max_angle_deg=10)
    np.testing.assert_allclose(res.direction_diff_deg, 0, atol=1e-6)
    np.testing.assert_allclose(res.inplane_diff_deg, 30, atol=1e-6)
    assert not res.agree.any()
    assert angular_consensus([a, b], max_angle_deg=10, max_inplane_deg=np.inf).agree.all()


def test_shift_threshold():
    a = random_angles_deg(10, 3)
    sa = np.zeros((10, 2))
    sb = np.zeros((10, 2))
    sb[:5] = [3.0, 4.0]
    res = angular_consensus([a, a], shift_sets=[sa, sb], max_shift_px=2.0)
    np.testing.assert_allclose(res.shift_diff_px[:, 0], [5] * 5 + [0] * 5)
    np.testing.assert_array_equal(res.agree, [False] * 5 + [True] * 5)


def test_min_agree_groups():
    rng = np.random.default_rng(4)
    n = 60
    truth = random_angles_deg(n, rng)
    m0, m1, m2 = truth.copy(), truth.copy(), random_angles_deg(n, rng)  # method 2 is wrong
    m0[:20] = random_angles_deg(20, rng)  # method 0 wrong on the first 20
    sets = [m0, m1, m2]
    res_all = angular_consensus(sets, max_angle_deg=10)
    assert res_all.pairs == [(0, 1), (0, 2), (1, 2)]
    assert res_all.agree.sum() <= 2
    res2 = angular_consensus(sets, max_angle_deg=10, min_agree=2)
    assert res2.agree[20:].all()
    np.testing.assert_array_equal(res2.source[20:], 0)
    # on the first 20, only methods 1 and 2 could agree, and they are unrelated
    assert res2.agree[:20].sum() <= 2
    assert res2.fraction_below()[10.0][0] == pytest.approx(np.mean(res2.direction_diff_deg[:, 0]
                                                                   < 10))


def test_sorted_angular_difference_curve_hand_computed():
    """Tilts moved by known angles: the curve the plot draws is those angles, sorted."""
    from scipion_deepalign.core.plots import plot_sorted_angular_differences

    moved_deg = np.array([7.0, 0.0, 12.0, 3.0, 1.5])
    a = np.stack([[10.0, 40.0, 0.0], [120.0, 50.0, 30.0], [-60.0, 60.0, -90.0],
                  [170.0, 45.0, 10.0], [0.0, 55.0, 5.0]])
    b = a.copy()
    b[:, 1] += moved_deg  # same rot and psi: only the direction moves, by exactly that much
    res = angular_consensus([a, b], max_angle_deg=5.0)
    np.testing.assert_allclose(res.sorted_direction_diff_deg(0), [0.0, 1.5, 3.0, 7.0, 12.0],
                               atol=1e-9)
    np.testing.assert_array_equal(res.agree, moved_deg < 5.0)
    fig = plot_sorted_angular_differences([res.direction_diff_deg[:, 0]], ["a vs b"])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), res.sorted_direction_diff_deg(0))


def test_bad_inputs():
    a = random_angles_deg(5, 5)
    with pytest.raises(ValueError, match="at least two"):
        angular_consensus([a])
    with pytest.raises(ValueError, match=r"angle_sets\[1\] has 4 particles"):
        angular_consensus([a, a[:4]])
    with pytest.raises(ValueError, match="min_agree"):
        angular_consensus([a, a], min_agree=3)
    with pytest.raises(ValueError, match=r"angle_sets\[0\] must have shape \(N, 3\)"):
        angular_consensus([a[:, :2], a])
    with pytest.raises(ValueError, match="max_shift_px needs shift_sets"):
        angular_consensus([a, a], max_shift_px=1.0)


def test_match_particles_by_name():
    a = [f"{i:06d}@job1/particles.mrcs" for i in range(1, 8)]
    b = [f"{i}@/data/particles.mrcs" for i in (7, 3, 1, 9)]
    common, (ia, ib) = match_particles(a, b)
    assert common == [a[0], a[2], a[6]]
    assert [a[i] for i in ia] == ["000001@job1/particles.mrcs", "000003@job1/particles.mrcs",
                                  "000007@job1/particles.mrcs"]
    assert [b[i] for i in ib] == ["1@/data/particles.mrcs", "3@/data/particles.mrcs",
                                  "7@/data/particles.mrcs"]
    with pytest.raises(ValueError, match="no particles in common"):
        match_particles(a, b, key="exact")
    with pytest.raises(ValueError, match="no particles in common"):
        match_particles(a, ["1@other.mrcs"])
    with pytest.raises(ValueError, match="repeats"):
        match_particles(a, b + b[:1])


def test_match_particles_ids_as_one_list():
    common, idx = match_particles([np.array([5, 2, 9]), np.array([9, 5, 7]), np.array([5, 9])])
    assert [int(c) for c in common] == [5, 9]
    np.testing.assert_array_equal(idx[1], [1, 0])
    np.testing.assert_array_equal(idx[2], [0, 1])
