"""Point groups, symmetry-aware distances and the asymmetric unit (core.symmetry)."""
import numpy as np
import pytest

from scipion_deepalign.core import symmetry as sym
from scipion_deepalign.core.geometry import (
    angle_between_directions_deg,
    euler_to_matrix,
    projection_direction,
    random_angles_deg,
    rotation_angle_deg,
)

GROUPS = {"c1": 1, "c4": 4, "c7": 7, "d2": 4, "d7": 14, "t": 12, "o": 24, "i": 60,
          "i1": 60, "i3": 60, "i4": 60}
MAIN = ["c1", "c4", "c7", "d2", "d7", "t", "o", "i"]
POSES = random_angles_deg(300, rng=11)


def _as_set(mats):
    return sorted(tuple(np.round(m, 5).ravel() + 0.0) for m in mats)


@pytest.mark.parametrize("name", list(GROUPS), ids=list(GROUPS))
def test_order_identity_first_and_rotations(name):
    mats = sym.symmetry_matrices(name)
    assert mats.shape == (GROUPS[name], 3, 3)
    assert sym.symmetry_order(name) == GROUPS[name]
    np.testing.assert_array_equal(mats[0], np.eye(3))
    np.testing.assert_allclose(mats @ np.swapaxes(mats, 1, 2),
                               np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-12)
    assert len(_as_set(mats)) == len(mats), "operators are not distinct"


@pytest.mark.parametrize("name", MAIN, ids=MAIN)
def test_group_closure(name):
    mats = sym.symmetry_matrices(name)
    elements = set(_as_set(mats))
    products = np.einsum("aij,bjk->abik", mats, mats).reshape(-1, 3, 3)
    assert set(_as_set(products)) == elements
    assert set(_as_set(np.swapaxes(mats, 1, 2))) == elements  # closed under inverse


def test_axes_follow_xmipp():
    c4 = sym.symmetry_matrices("c4")
    np.testing.assert_allclose(c4 @ [0, 0, 1.0], np.tile([0, 0, 1.0], (4, 1)), atol=1e-12)
    # dN: the 2-fold axis lies along x
    d7 = sym.symmetry_matrices("d7")
    assert any(np.allclose(m, np.diag([1.0, -1.0, -1.0])) for m in d7)
    # bare "i" is Xmipp's default, i2
    np.testing.assert_array_equal(sym.symmetry_matrices("I"), sym.symmetry_matrices("i2"))


# pwem's chimera-derived matrices: same group as a set (the transpose convention does not matter
# for a group: it contains the inverse, i.e. the transpose, of each of its operators).
PWEM_NAMES = {"c1": ("SYM_CYCLIC", 1), "c4": ("SYM_CYCLIC", 4), "c7": ("SYM_CYCLIC", 7),
              "d2": ("SYM_DIHEDRAL_X", 2), "d7": ("SYM_DIHEDRAL_X", 7),
              "t": ("SYM_TETRAHEDRAL_Z3", 1), "o": ("SYM_OCTAHEDRAL", 1),
              "i1": ("SYM_I222", 1), "i2": ("SYM_I222r", 1), "i": ("SYM_I222r", 1),
              "i3": ("SYM_In25", 1), "i4": ("SYM_In25r", 1)}


@pytest.mark.parametrize("name", list(PWEM_NAMES), ids=list(PWEM_NAMES))
def test_same_group_as_pwem(name):
    constants = pytest.importorskip("pwem.constants")
    pwem_sym = pytest.importorskip("pwem.convert.symmetry")
    const, order = PWEM_NAMES[name]
    expected = pwem_sym.getSymmetryMatrices(getattr(constants, const), n=order)[:, :3, :3]
    assert _as_set(sym.symmetry_matrices(name)) == _as_set(expected)


@pytest.mark.parametrize("name", ["c4", "d7", "o", "i1", "i2", "i3", "i4"])
def test_same_group_as_xmipp(name):
    emlib = pytest.importorskip("pwem.emlib")
    symlist = emlib.SymList()
    symlist.readSymmetryFile(name)
    expected = np.array(symlist.getSymmetryMatrices(name))
    assert _as_set(sym.symmetry_matrices(name)) == _as_set(expected)


def _symmetric_points(name, n=8, seed=0):
    points = np.random.default_rng(seed).normal(size=(n, 3))
    return np.einsum("gij,nj->gni", sym.symmetry_matrices(name), points).reshape(-1, 3)


@pytest.mark.parametrize("name", MAIN, ids=MAIN)
def test_equivalent_poses_give_the_same_image(name):
    # A map invariant under S (V(S r) = V(r)) is a union of orbits; its image under pose A is
    # the point set A r. Poses A and A @ S must give the same set.
    points = _symmetric_points(name)
    mats = sym.symmetry_matrices(name)
    pose = euler_to_matrix(POSES[0])
    reference = _as_set((pose @ points.T).T[:, None, :])
    for s_mat in mats:
        assert _as_set(((pose @ s_mat) @ points.T).T[:, None, :]) == reference


@pytest.mark.parametrize("name", MAIN, ids=MAIN)
def test_equivalent_angles_are_at_symmetric_distance_zero(name):
    eq = sym.equivalent_angles_deg(POSES[:40], name)
    assert eq.shape == (40, GROUPS[name], 3)
    np.testing.assert_allclose(euler_to_matrix(eq[:, 0]), euler_to_matrix(POSES[:40]),
                               atol=1e-10)
    for g in range(eq.shape[1]):
        np.testing.assert_allclose(
            sym.symmetric_pose_distance_deg(POSES[:40], eq[:, g], name), 0.0, atol=1e-5)
        np.testing.assert_allclose(
            sym.symmetric_direction_distance_deg(POSES[:40], eq[:, g], name), 0.0, atol=1e-5)
    # all G equivalents are different poses unless the group is trivial
    if GROUPS[name] > 1:
        plain = rotation_angle_deg(euler_to_matrix(eq[:, :1]), euler_to_matrix(eq[:, 1:]))
        assert plain.min() > 1.0


@pytest.mark.parametrize("name", MAIN, ids=MAIN)
def test_symmetric_distances_bounded_by_plain_ones(name):
    a, b = POSES[:150], POSES[150:]
    d_dir = sym.symmetric_direction_distance_deg(a, b, name)
    d_pose = sym.symmetric_pose_distance_deg(a, b, name)
    plain_dir = angle_between_directions_deg(a, b)
    plain_pose = rotation_angle_deg(euler_to_matrix(a), euler_to_matrix(b))
    assert np.all(d_dir <= plain_dir + 1e-9) and np.all(d_pose <= plain_pose + 1e-6)
    assert np.all(d_dir >= 0) and np.all(d_pose >= 0) and np.all(d_pose <= 180)
    np.testing.assert_allclose(d_dir, sym.symmetric_direction_distance_deg(b, a, name),
                               atol=1e-8)
    np.testing.assert_allclose(d_pose, sym.symmetric_pose_distance_deg(b, a, name), atol=1e-6)
    if name == "c1":
        np.testing.assert_allclose(d_dir, plain_dir, atol=1e-9)
        np.testing.assert_allclose(d_pose, plain_pose, atol=1e-6)
    else:
        assert np.mean(d_pose < plain_pose - 1e-6) > 0.3


def test_known_symmetric_distances():
    # c4: rot 0 and rot 85 at the same tilt are 5 degrees of rot apart in c4
    a = np.array([[0.0, 90.0, 0.0]])
    b = np.array([[85.0, 90.0, 0.0]])
    np.testing.assert_allclose(sym.symmetric_direction_distance_deg(a, b, "c4"), 5.0)
    np.testing.assert_allclose(sym.symmetric_direction_distance_deg(a, b, "c1"), 85.0)
    # d2: tilt t and 180 - t with rot -> -rot are the same direction
    np.testing.assert_allclose(
        sym.symmetric_direction_distance_deg([[30.0, 20.0]], [[-30.0, 160.0]], "d2"), 0.0,
        atol=1e-9)
    # a pure in-plane change of 30 degrees is not reduced by a c4 symmetry
    np.testing.assert_allclose(
        sym.symmetric_pose_distance_deg([[10.0, 40.0, 0.0]], [[10.0, 40.0, 30.0]], "c4"), 30.0,
        atol=1e-6)


@pytest.mark.parametrize("name", MAIN, ids=MAIN)
def test_to_asymmetric_unit(name):
    moved = sym.to_asymmetric_unit(POSES, name)
    assert np.all(sym.in_asymmetric_unit(projection_direction(moved), name))
    np.testing.assert_allclose(sym.symmetric_pose_distance_deg(POSES, moved, name), 0.0,
                               atol=1e-5)
    # idempotent: a pose already in the unit stays (as a matrix)
    again = sym.to_asymmetric_unit(moved, name)
    np.testing.assert_allclose(euler_to_matrix(again), euler_to_matrix(moved), atol=1e-9)


@pytest.mark.parametrize("name", MAIN, ids=MAIN)
def test_asymmetric_unit_is_a_fundamental_domain(name):
    # exactly one of the G equivalent directions of a generic direction is in the unit
    dirs = projection_direction(POSES)
    images = np.einsum("gij,nj->ngi", sym.symmetry_matrices(name), dirs)
    inside = sym.in_asymmetric_unit(images.reshape(-1, 3), name).reshape(len(dirs), -1)
    np.testing.assert_array_equal(inside.sum(axis=1), 1)


@pytest.mark.parametrize("name,n", [("c1", 1), ("c4", 4), ("c7", 7)])
def test_cyclic_unit_is_a_rot_wedge(name, n):
    moved = sym.to_asymmetric_unit(POSES, name)
    rot = np.mod(moved[:, 0], 360.0)
    assert np.all(rot <= 360.0 / n + 1e-9)
    np.testing.assert_allclose(moved[:, 1], POSES[:, 1], atol=1e-9)  # tilt unchanged


def test_dihedral_unit_is_a_wedge_of_the_upper_hemisphere():
    moved = sym.to_asymmetric_unit(POSES, "d7")
    assert np.all(np.mod(moved[:, 0], 360.0) <= 360.0 / 7 + 1e-9)
    assert np.all(moved[:, 1] <= 90.0 + 1e-9)


def test_large_inputs_are_chunked(monkeypatch):
    a, b = random_angles_deg(2000, rng=1), random_angles_deg(2000, rng=2)
    whole = sym.symmetric_pose_distance_deg(a, b, "i")
    whole_dir = sym.symmetric_direction_distance_deg(a, b, "i")
    whole_unit = sym.to_asymmetric_unit(a, "i")
    monkeypatch.setattr(sym, "_CHUNK_ELEMENTS", 600)  # 10 poses per chunk
    np.testing.assert_allclose(sym.symmetric_pose_distance_deg(a, b, "i"), whole)
    np.testing.assert_allclose(sym.symmetric_direction_distance_deg(a, b, "i"), whole_dir)
    np.testing.assert_allclose(sym.to_asymmetric_unit(a, "i"), whole_unit)
    # the largest icosahedral pose distance is about 44.5 degrees
    assert whole.max() < 44.6


@pytest.mark.parametrize("given,expected", [("C1", "c1"), (" D7 ", "d7"), ("I", "i2"),
                                            ("i3", "i3"), ("T", "t"), ("o", "o"),
                                            ("c12", "c12")])
def test_normalise_symmetry(given, expected):
    assert sym.normalise_symmetry(given) == expected


@pytest.mark.parametrize("bad", ["c0", "d1", "x", "h", "i5", "dd2", "", "c-2", 4, None])
def test_unknown_symmetry_raises(bad):
    with pytest.raises(ValueError, match=r"symmetry.*c1, c2, \.\.\. cN, d2"):
        sym.normalise_symmetry(bad)
    with pytest.raises(ValueError, match="symmetry"):
        sym.symmetry_matrices(bad)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="angles_a_deg"):
        sym.symmetric_pose_distance_deg(np.zeros((3, 2)), np.zeros((3, 3)), "c2")
    with pytest.raises(ValueError, match="same length"):
        sym.symmetric_direction_distance_deg(np.zeros((3, 2)), np.zeros((4, 2)), "c2")
    with pytest.raises(ValueError, match="directions"):
        sym.in_asymmetric_unit(np.zeros((3, 2)), "c2")


@pytest.mark.parametrize("name", ["c4", "d7", "o", "i", "i3"])
def test_equivalent_poses_and_distances_match_xmipp(name):
    # Xmipp's SymList: the equivalent poses of a pose (right-multiplied, A @ S) and the
    # symmetry-aware projection-direction distance (projdir_mode).
    emlib = pytest.importorskip("pwem.emlib")
    symlist = emlib.SymList()
    symlist.readSymmetryFile(name)
    a, b = POSES[:10], POSES[10:20]
    for pose in a:
        xmipp = euler_to_matrix(np.array(symlist.symmetricAngles(*pose)))
        ours = euler_to_matrix(sym.equivalent_angles_deg(pose[None], name)[0])
        d = rotation_angle_deg(xmipp[:, None], ours[None])  # (G, G)
        assert len(xmipp) == len(ours)
        assert d.min(axis=1).max() < 1e-3 and d.min(axis=0).max() < 1e-3
    expected = [symlist.computeDistanceAngles(*p, *q, True, False, False) for p, q in zip(a, b)]
    np.testing.assert_allclose(sym.symmetric_direction_distance_deg(a, b, name), expected,
                               atol=1e-3)


def test_axis_rotation_equals_hand_written_rodrigues():
    """scipy's Rotation (used by the core) against Rodrigues' formula written out."""
    from scipion_deepalign.tests.helpers import rodrigues

    rng = np.random.default_rng(11)
    for axis, angle in zip(rng.normal(size=(20, 3)), rng.uniform(-360, 360, 20)):
        np.testing.assert_allclose(sym._axis_rotation(axis, angle),
                                   rodrigues(axis, np.deg2rad(angle)), atol=1e-12)
