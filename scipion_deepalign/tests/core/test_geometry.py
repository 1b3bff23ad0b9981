"""Properties of the Euler convention in core.geometry; golden values from Xmipp (pwem.emlib)."""
import numpy as np
import pytest

from scipion_deepalign.core.geometry import (
    angle_between_directions_deg,
    direction_to_euler,
    euler_to_matrix,
    inplane_difference_deg,
    matrix_to_euler,
    projection_direction,
    random_angles_deg,
    rotation_angle_deg,
)

ANGLES = random_angles_deg(500, rng=7)


def _emlib():
    return pytest.importorskip("pwem.emlib", reason="pwem.emlib (xmippLib) not importable")


def test_matrices_are_rotations():
    m = euler_to_matrix(ANGLES)
    assert m.shape == (500, 3, 3)
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)


def test_euler_matrix_round_trip():
    back = matrix_to_euler(euler_to_matrix(ANGLES))
    np.testing.assert_allclose(euler_to_matrix(back), euler_to_matrix(ANGLES), atol=1e-10)
    assert np.all((back[:, 1] >= 0) & (back[:, 1] <= 180))
    # away from the poles the angles themselves come back (rot, psi wrapped to (-180, 180])
    np.testing.assert_allclose(back, ANGLES, atol=1e-8)


@pytest.mark.parametrize("tilt", [0.0, 180.0], ids=["north", "south"])
def test_poles_round_trip_as_matrices(tilt):
    angles = np.array([[30.0, tilt, 50.0], [-120.0, tilt, 10.0], [0.0, tilt, -170.0]])
    back = matrix_to_euler(euler_to_matrix(angles))
    np.testing.assert_allclose(back[:, 0], 0.0)
    np.testing.assert_allclose(back[:, 1], tilt)
    np.testing.assert_allclose(euler_to_matrix(back), euler_to_matrix(angles), atol=1e-12)


def test_pole_directions():
    np.testing.assert_allclose(projection_direction([[75.0, 0.0, 10.0], [75.0, 180.0, 10.0]]),
                               [[0, 0, 1], [0, 0, -1]], atol=1e-12)


def test_direction_is_third_row_and_round_trips():
    m = euler_to_matrix(ANGLES)
    d = projection_direction(ANGLES)
    np.testing.assert_allclose(d, m[:, 2, :], atol=1e-12)
    np.testing.assert_allclose(projection_direction(direction_to_euler(d)), d, atol=1e-12)


def test_matrix_golden_values_against_xmipp():
    emlib = _emlib()
    for rot, tilt, psi in ANGLES[:50]:
        expected = np.array(emlib.Euler_angles2matrix(rot, tilt, psi))
        np.testing.assert_allclose(euler_to_matrix([rot, tilt, psi]), expected, atol=1e-10)


def test_direction_golden_values_against_xmipp():
    emlib = _emlib()
    for rot, tilt, psi in ANGLES[:50]:
        expected = np.array(emlib.Euler_direction(rot, tilt, psi))
        np.testing.assert_allclose(projection_direction([rot, tilt, psi]), expected, atol=1e-10)


def test_known_matrix_value():
    # rot = 90: Rz(90) passive maps map x to image -y
    np.testing.assert_allclose(euler_to_matrix([90.0, 0.0, 0.0]),
                               [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(projection_direction([0.0, 90.0]), [1, 0, 0], atol=1e-15)


def test_direction_distance_properties():
    a, b = ANGLES[:250], ANGLES[250:]
    d_ab = angle_between_directions_deg(a, b)
    np.testing.assert_allclose(d_ab, angle_between_directions_deg(b, a), atol=1e-12)
    assert np.all((d_ab >= 0) & (d_ab <= 180))
    np.testing.assert_allclose(angle_between_directions_deg(a, a), 0.0, atol=1e-12)
    # psi does not change the direction
    a2 = a.copy()
    a2[:, 2] += 77.0
    np.testing.assert_allclose(angle_between_directions_deg(a, a2), 0.0, atol=1e-12)
    # known values: tilt difference along a meridian, antipodes
    np.testing.assert_allclose(angle_between_directions_deg([10.0, 20.0], [10.0, 65.0]), 45.0)
    np.testing.assert_allclose(angle_between_directions_deg([10.0, 0.0], [99.0, 180.0]), 180.0)


def test_rotation_angle_properties():
    ma, mb = euler_to_matrix(ANGLES[:250]), euler_to_matrix(ANGLES[250:])
    d = rotation_angle_deg(ma, mb)
    np.testing.assert_allclose(d, rotation_angle_deg(mb, ma), atol=1e-9)
    assert np.all((d >= 0) & (d <= 180))
    np.testing.assert_allclose(rotation_angle_deg(ma, ma), 0.0, atol=1e-5)
    # the rotation angle bounds the direction change
    assert np.all(angle_between_directions_deg(ANGLES[:250], ANGLES[250:]) <= d + 1e-9)


@pytest.mark.parametrize("delta", [5.0, 45.0, 120.0, 180.0])
def test_rotation_about_the_beam(delta):
    # Changing psi rotates the image about the beam: the pose changes by exactly |delta|.
    a = ANGLES[:100]
    b = a.copy()
    b[:, 2] += delta
    np.testing.assert_allclose(rotation_angle_deg(euler_to_matrix(a), euler_to_matrix(b)),
                               delta, atol=1e-5)
    # and so does composing with an explicit rotation about the image z axis
    c, s = np.cos(np.deg2rad(delta)), np.sin(np.deg2rad(delta))
    rz = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
    np.testing.assert_allclose(euler_to_matrix(b), rz @ euler_to_matrix(a), atol=1e-12)


def test_inplane_difference_for_same_direction():
    a = ANGLES[:100]
    rng = np.random.default_rng(3)
    delta = rng.uniform(-179.0, 179.0, len(a))
    b = a.copy()
    b[:, 2] += delta
    np.testing.assert_allclose(inplane_difference_deg(a, b), np.abs(delta), atol=1e-6)
    np.testing.assert_allclose(inplane_difference_deg(a, a), 0.0, atol=1e-6)


def test_inplane_difference_bounded_by_pose_distance():
    a, b = ANGLES[:250], ANGLES[250:]
    inplane = inplane_difference_deg(a, b)
    assert np.all((inplane >= 0) & (inplane <= 180 + 1e-9))
    np.testing.assert_allclose(inplane, inplane_difference_deg(b, a), atol=1e-6)


def test_random_angles_are_uniform_on_the_sphere():
    a = random_angles_deg(20000, rng=1)
    d = projection_direction(a)
    np.testing.assert_allclose(d.mean(axis=0), 0.0, atol=0.03)
    # uniform on the sphere: z is uniform in [-1, 1]
    np.testing.assert_allclose(np.mean(d[:, 2] > 0.5), 0.25, atol=0.015)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="angles_deg"):
        euler_to_matrix(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="matrices"):
        matrix_to_euler(np.zeros((4, 3)))


def test_rotation_between_equals_hand_written_rodrigues():
    """The smallest rotation taking u to v: about u x v by the angle between them."""
    from scipion_deepalign.core.geometry import _rotation_between
    from scipion_deepalign.tests.helpers import rodrigues

    rng = np.random.default_rng(12)
    u = rng.normal(size=(30, 3))
    v = rng.normal(size=(30, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    got = _rotation_between(u, v)
    for i in range(len(u)):
        angle = np.arctan2(np.linalg.norm(np.cross(u[i], v[i])), u[i] @ v[i])
        np.testing.assert_allclose(got[i], rodrigues(np.cross(u[i], v[i]), angle), atol=1e-12)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", got, u), v, atol=1e-12)
    flipped = _rotation_between(u[:3], -u[:3])  # antiparallel: some half turn
    np.testing.assert_allclose(np.einsum("nij,nj->ni", flipped, u[:3]), -u[:3], atol=1e-12)
    assert _rotation_between(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0, 3, 3)
