"""Layer structure of the regional CNN (paper §2.2) and its shared-trunk variant."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from scipion_deepalign.core.cnn.model import (  # noqa: E402
    build_regional_model,
    build_shared_model,
    compile_model,
    kernel_sizes,
)


@pytest.mark.parametrize("box, expected", [
    (24, (9, 3, 3)),      # 8 -> 9 (odd), 2.4 -> 3 (minimum), 1.2 -> 3
    (64, (21, 7, 3)),     # 21.3 -> 21, 6.4 -> 6 -> 7, 3.2 -> 3
    (100, (33, 11, 5)),   # 33.3 -> 33, 10 -> 11, 5
    (128, (43, 13, 7)),   # 42.7 -> 43, 12.8 -> 13, 6.4 -> 6 -> 7
])
def test_kernel_sizes_rounding(box, expected):
    assert kernel_sizes(box) == expected
    assert all(k % 2 == 1 and k >= 3 for k in kernel_sizes(box))


def test_kernel_sizes_rejects_tiny_box():
    with pytest.raises(ValueError, match="box_px"):
        kernel_sizes(6)


def test_regional_model_layers_follow_the_paper():
    model = build_regional_model(40)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer",
                     "Conv2D", "BatchNormalization", "MaxPooling2D",
                     "Conv2D", "BatchNormalization", "MaxPooling2D",
                     "Conv2D", "BatchNormalization", "MaxPooling2D",
                     "Dropout", "Flatten", "Dense", "Dense"]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [16, 32, 64]
    assert [c.kernel_size for c in convs] == [(13, 13), (5, 5), (3, 3)]
    dropout = [layer for layer in model.layers if type(layer).__name__ == "Dropout"][0]
    assert dropout.rate == pytest.approx(0.2)
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert dense[0].units == 256 and dense[0].activation.__name__ == "relu"
    assert dense[1].units == 1 and dense[1].activation.__name__ == "sigmoid"
    out = model.predict(np.random.default_rng(0).normal(size=(3, 40, 40, 1)), verbose=0)
    assert out.shape == (3, 1) and np.all((out > 0) & (out < 1))


def test_shared_model_has_one_sigmoid_per_region():
    model = build_shared_model(24, 7)
    assert model.output_shape == (None, 7)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    with pytest.raises(ValueError, match="n_regions"):
        build_shared_model(24, 0)


def test_compile_options():
    model = compile_model(build_regional_model(24), loss="mae", learning_rate=0.002)
    assert model.loss == "mean_absolute_error"
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.002)
    with pytest.raises(ValueError, match="loss"):
        compile_model(build_regional_model(24), loss="hinge")
    with pytest.raises(ValueError, match="learning_rate"):
        compile_model(build_regional_model(24), learning_rate=0)


def test_regional_model_learns_a_separable_toy_problem():
    # Bright disc vs dark disc: a model that cannot learn this is broken.
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    n, box = 128, 24
    y = (np.arange(n) % 2).astype("float32")
    yy, xx = np.mgrid[:box, :box] - box // 2
    disc = (yy ** 2 + xx ** 2 < 36).astype("float32")
    x = (rng.normal(size=(n, box, box)) * 0.5 + np.where(y[:, None, None] > 0, 1, -1) * disc)
    model = compile_model(build_regional_model(box), loss="bce", learning_rate=0.002)
    model.fit(x[..., None].astype("float32"), y[:, None], epochs=4, batch_size=32, verbose=0)
    pred = model.predict(x[..., None].astype("float32"), verbose=0)[:, 0]
    assert np.mean((pred > 0.5) == (y > 0.5)) > 0.9


def _smooth_images(n, box, seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return np.stack([gaussian_filter(rng.normal(size=(box, box)), 1.5)
                     for _ in range(n)]).astype("float32")


def test_polar_matrix_turns_an_in_plane_rotation_into_a_circular_shift():
    from scipion_deepalign.core.cnn.model import POLAR_ANGLES, polar_matrix
    from scipion_deepalign.core.imageops import rotate_images

    box, n_rings = 24, 12
    images = _smooth_images(4, box)
    matrix = polar_matrix(box)
    assert matrix.shape == (box * box, n_rings * POLAR_ANGLES)
    # every sample inside the box is a bilinear interpolation: its weights add up to one
    inside = matrix.sum(axis=0).reshape(n_rings, POLAR_ANGLES)[:-1]
    np.testing.assert_allclose(inside, 1.0, atol=1e-5)
    steps = 8
    rotated = rotate_images(images, np.full(4, 360.0 / POLAR_ANGLES * steps))
    polar = (images.reshape(4, -1) @ matrix).reshape(4, n_rings, POLAR_ANGLES)
    polar_rotated = (rotated.reshape(4, -1) @ matrix).reshape(4, n_rings, POLAR_ANGLES)
    inner = slice(0, n_rings - 2)  # the outer rings meet the corners the rotation fills
    shifted = np.roll(polar_rotated, steps, axis=2)[:, inner]
    assert np.corrcoef(polar[:, inner].ravel(), shifted.ravel())[0, 1] > 0.99
    # the opposite shift does not match: the test can tell the two apart
    wrong = np.roll(polar_rotated, -steps, axis=2)[:, inner]
    assert np.corrcoef(polar[:, inner].ravel(), wrong.ravel())[0, 1] < 0.5


def test_polar_trunk_gives_the_same_features_to_a_rotated_particle():
    from scipion_deepalign.core.imageops import rotate_images

    keras.utils.set_random_seed(0)
    model = build_shared_model(24, 42, head="softmax", trunk="polar")
    assert model.output_shape == (None, 42)
    features = keras.Model(model.input, model.layers[-2].output)
    images = _smooth_images(6, 24, seed=1)
    ref = features.predict(images[..., None], verbose=0)
    for angle, tolerance in ((90.0, 1e-3), (33.0, 0.05), (171.0, 0.05)):
        turned = features.predict(rotate_images(images, np.full(6, angle))[..., None],
                                  verbose=0)
        assert np.corrcoef(ref.ravel(), turned.ravel())[0, 1] > 1 - tolerance, angle
    # while the Cartesian trunk's features change with the rotation
    cartesian = build_shared_model(24, 42, head="softmax")
    cart = keras.Model(cartesian.input, cartesian.layers[-2].output)
    a = cart.predict(images[..., None], verbose=0)
    b = cart.predict(rotate_images(images, np.full(6, 33.0))[..., None], verbose=0)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.95
    with pytest.raises(ValueError, match="trunk"):
        build_shared_model(24, 42, trunk="spherical")


def test_polar_model_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = compile_model(build_shared_model(24, 5, head="softmax", trunk="polar"),
                          shared=True, head="softmax")
    x = _smooth_images(3, 24)[..., None]
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    resampling = loaded.get_layer("polar_resampling")
    assert not resampling.trainable and resampling.weights[0].shape == (576, 768)
