"""The regional CNN classifier of DeepAlign (paper §2.2) and a shared-trunk variant.

Architecture (Jiménez-Moreno et al., J. Struct. Biol. 2021, and Xmipp's code): the input is
one particle image downsampled to the target resolution, one channel, of side ``box``;

* Conv2D 16 filters, kernel ``k1 ≈ box/3``  → BatchNormalization → MaxPooling 2×2
* Conv2D 32 filters, kernel ``k2 ≈ box/10`` → BatchNormalization → MaxPooling 2×2
* Conv2D 64 filters, kernel ``k3 ≈ box/20`` → BatchNormalization → MaxPooling 2×2
* Dropout 0.2 → Flatten → Dense 256 ReLU → Dense 1 sigmoid (probability that the particle's
  projection direction lies in the region), trained with Adam.

Kernel rounding (:func:`kernel_sizes`): ``round(box / d)``, raised to at least 3, and an even
value is raised by one to make it odd (so the kernel has a centre pixel). Convolutions use
``"same"`` padding with ReLU activations, so small boxes (24 px) still go through three
poolings; Xmipp used ``"valid"`` padding, which needs boxes of roughly 60 px or more.
BatchNormalization uses a moving-average momentum of 0.9 (Keras default 0.99): with the
few hundred steps of a small training set, 0.99 leaves the inference statistics close to
their initial values and the validation accuracy near chance.

The shared-trunk network (beyond the paper) keeps the same convolutional trunk and dense
layer but ends in ``R`` sigmoid outputs, one per region (multi-label output), so one
network is trained once for all regions.

With K >= 2 reference maps (:mod:`.joint`) the shared network's output has ``K * R`` columns,
column ``k * R + r`` the probability of class ``k`` and region ``r``, made one of two ways
(``class_output``, :data:`~..defaults.CLASS_OUTPUTS`): ``"joint"``, one softmax over the
``K * R`` pairs; ``"head"``, a softmax over the K classes beside the softmax over the R
regions on the same dense layer, and their outer product (:class:`PairProbabilities`), so that
``p(k, r) = p(k) p(r)`` and everything downstream reads the same ``K * R`` columns. The head
model is trained with the class cross-entropy plus the region cross-entropy
(:class:`ClassRegionLoss`, on the output's two marginals).

The polar trunk (``trunk="polar"``, beyond the paper) makes the network invariant to the
in-plane rotation by construction instead of by learning: a fixed (non-trainable) linear
layer resamples the image on ``box/2`` rings of ``POLAR_ANGLES`` angles (bilinear
interpolation, :func:`polar_matrix`), where an in-plane rotation is a circular shift along
the angle axis; the convolutions wrap around that axis (circular padding) and a max over all
angles ends the trunk, so a rotated particle gives the same features (up to the angular
sampling). The Cartesian network has to learn every direction at every in-plane angle.

Only ``keras`` (Keras 3) and numpy are imported: the module runs on any Keras backend.
"""
from __future__ import annotations

import keras
import numpy as np

from ..defaults import CLASS_OUTPUTS, HEADS, TRUNKS

__all__ = ["kernel_sizes", "build_regional_model", "build_shared_model", "compile_model",
           "polar_matrix", "check_class_output", "PairProbabilities", "ClassRegionLoss",
           "LOSSES", "HEADS", "TRUNKS", "CLASS_OUTPUTS", "POLAR_ANGLES"]

#: Angular samples per ring of the polar trunk (5.6 deg; 1.3 px apart on the outer ring of a
#: 24 px input).
POLAR_ANGLES = 64
#: Convolutions of the polar trunk: (filters, kernel along the rings, kernel along the
#: angles, pooling (rings, angles)).
POLAR_LAYERS = ((16, 3, 7, (1, 2)), (32, 3, 5, (2, 2)), (64, 3, 3, (2, 2)))

#: Accepted loss names and the Keras loss each one stands for.
LOSSES = {"mae": "mean_absolute_error", "bce": "binary_crossentropy",
          "binary_crossentropy": "binary_crossentropy",
          "mean_absolute_error": "mean_absolute_error"}

_FILTERS = (16, 32, 64)
_DIVISORS = (3, 10, 20)


def kernel_sizes(box_px: int) -> tuple[int, int, int]:
    """Side of the three convolution kernels for an input of ``box_px`` pixels.

    Parameters
    ----------
    box_px : int
        Side of the (downsampled) input image.

    Returns
    -------
    tuple of three odd ints
        ``round(box/3)``, ``round(box/10)``, ``round(box/20)``, each at least 3 and made odd
        by adding one when even.
    """
    box_px = int(box_px)
    if box_px < 8:
        raise ValueError(f"box_px must be at least 8 pixels for three 2x2 poolings, got {box_px}")
    sizes = []
    for divisor in _DIVISORS:
        k = max(3, int(round(box_px / divisor)))
        sizes.append(k + 1 if k % 2 == 0 else k)
    return tuple(sizes)


def _trunk(inputs, box_px: int):
    x = inputs
    for n_filters, k in zip(_FILTERS, kernel_sizes(box_px)):
        x = keras.layers.Conv2D(n_filters, k, padding="same", activation="relu")(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.MaxPooling2D(pool_size=2)(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(256, activation="relu")(x)


def polar_matrix(box_px: int, n_angles: int = POLAR_ANGLES) -> np.ndarray:
    """Bilinear resampling of a ``box x box`` image on polar rings, as one matrix.

    Ring ``r`` (``0 .. box/2 - 1``) lies at radius ``r + 0.5`` px from the centre pixel
    ``box // 2``, angle ``j`` at ``2 pi j / n_angles``.

    Returns
    -------
    ndarray of shape (box*box, rings*n_angles) float32
        ``image.reshape(-1) @ matrix`` is the polar image, ring-major.
    """
    box_px, n_rings = int(box_px), int(box_px) // 2
    radius = np.arange(n_rings) + 0.5
    angle = 2 * np.pi * np.arange(int(n_angles)) / int(n_angles)
    y = box_px // 2 + radius[:, None] * np.sin(angle)[None, :]
    x = box_px // 2 + radius[:, None] * np.cos(angle)[None, :]
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    matrix = np.zeros((box_px * box_px, n_rings * int(n_angles)), dtype=np.float64)
    column = np.arange(n_rings * int(n_angles)).reshape(n_rings, -1)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < box_px) & (xx >= 0) & (xx < box_px)
            np.add.at(matrix, ((yy * box_px + xx)[inside], column[inside]),
                      (wy * wx)[inside])
    return matrix.astype(np.float32)


def _wrap_angles(x, pad: int):
    """Circular padding of ``pad`` columns on both sides of the angle axis (axis 2)."""
    width = x.shape[2]
    left = keras.layers.Cropping2D(((0, 0), (width - pad, 0)))(x)
    right = keras.layers.Cropping2D(((0, 0), (0, width - pad)))(x)
    return keras.layers.Concatenate(axis=2)([left, x, right])


def _polar_trunk(inputs, box_px: int):
    n_rings = box_px // 2
    flat = keras.layers.Flatten()(inputs)
    resample = keras.layers.Dense(n_rings * POLAR_ANGLES, use_bias=False, trainable=False,
                                  name="polar_resampling")
    x = keras.layers.Reshape((n_rings, POLAR_ANGLES, 1))(resample(flat))
    resample.set_weights([polar_matrix(box_px, POLAR_ANGLES)])
    for n_filters, kr, ka, pool in POLAR_LAYERS:
        x = keras.layers.ZeroPadding2D(((kr // 2, kr // 2), (0, 0)))(_wrap_angles(x, ka // 2))
        x = keras.layers.Conv2D(n_filters, (kr, ka), padding="valid", activation="relu")(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.MaxPooling2D(pool_size=pool)(x)
    x = keras.layers.MaxPooling2D(pool_size=(1, x.shape[2]))(x)  # max over all angles
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(256, activation="relu")(x)


def build_regional_model(box_px: int, *, name: str = "deepalign_region") -> keras.Model:
    """One region's binary classifier (uncompiled).

    Parameters
    ----------
    box_px : int
        Side of the input images; the input shape is ``(box_px, box_px, 1)``.
    name : str
        Keras model name.

    Returns
    -------
    keras.Model
        Maps ``(N, box_px, box_px, 1)`` float32 to ``(N, 1)`` probabilities.
    """
    inputs = keras.Input(shape=(int(box_px), int(box_px), 1), name="image")
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(
        _trunk(inputs, box_px))
    return keras.Model(inputs, outputs, name=name)


def build_shared_model(box_px: int, n_regions: int, *, head: str = "sigmoid",
                       trunk: str = "cartesian", n_classes: int = 1,
                       class_output: str = "joint",
                       name: str = "deepalign_shared") -> keras.Model:
    """Shared-trunk network with one output per region, or per (class, region) pair
    (uncompiled).

    Parameters
    ----------
    box_px : int
        Side of the input images.
    n_regions : int
        Number of regions ``R``.
    head : {"sigmoid", "softmax"}
        ``R`` independent sigmoid outputs (one binary question per region, as the paper's
        networks), or one softmax over the regions (a categorical distribution: the
        probabilities sum to 1 and can be trained with labels softened towards neighbours).
    trunk : {"cartesian", "polar"}
        The paper's convolutions on the image, or the rotation-invariant polar trunk (module
        docstring).
    n_classes : int
        Reference maps ``K`` the network tells apart (1: the region network).
    class_output : {"joint", "head"}
        With ``K >= 2``: one ``head`` over the ``K * R`` pairs, or a class softmax beside the
        region softmax (module docstring; needs ``head="softmax"``).

    Returns
    -------
    keras.Model
        Maps ``(N, box_px, box_px, 1)`` to ``(N, K * R)`` probabilities.
    """
    n_regions, n_classes = int(n_regions), int(n_classes)
    if n_regions < 1 or n_classes < 1:
        raise ValueError(f"n_regions and n_classes must be at least 1, got {n_regions} and "
                         f"{n_classes}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if trunk not in TRUNKS:
        raise ValueError(f"trunk must be one of {TRUNKS}, got {trunk!r}")
    check_class_output(class_output, head=head, n_classes=n_classes)
    inputs = keras.Input(shape=(int(box_px), int(box_px), 1), name="image")
    features = (_polar_trunk if trunk == "polar" else _trunk)(inputs, int(box_px))
    if n_classes > 1 and class_output == "head":
        classes = keras.layers.Dense(n_classes, activation="softmax",
                                     name="class_probabilities")(features)
        regions = keras.layers.Dense(n_regions, activation="softmax",
                                     name="region_probabilities")(features)
        outputs = PairProbabilities(name="probabilities")([classes, regions])
    else:
        outputs = keras.layers.Dense(n_classes * n_regions, activation=head,
                                     name="probabilities")(features)
    return keras.Model(inputs, outputs, name=name)


def check_class_output(class_output: str, *, head: str = "softmax", n_classes: int = 2) -> None:
    """Refuse an unknown class output (ValueError naming the known ones), and a class head
    beside sigmoid region outputs (their product would not be a distribution)."""
    if class_output not in CLASS_OUTPUTS:
        raise ValueError(f"class output must be one of {CLASS_OUTPUTS}, got {class_output!r}")
    if int(n_classes) > 1 and class_output == "head" and head != "softmax":
        raise ValueError(f"a class head beside the region output needs head 'softmax', "
                         f"got {head!r}")


@keras.saving.register_keras_serializable(package="deepalign")
class PairProbabilities(keras.layers.Layer):
    """``[p(k) (N, K), p(r) (N, R)]`` to ``p(k) p(r)`` as ``(N, K * R)``, column ``k * R + r``
    (the layout of :mod:`.joint`)."""

    def call(self, inputs):
        classes, regions = inputs
        width = classes.shape[-1] * regions.shape[-1]
        return keras.ops.reshape(classes[:, :, None] * regions[:, None, :], (-1, width))

    def compute_output_shape(self, input_shapes):
        (n, k), (_, r) = input_shapes
        return (n, k * r)


@keras.saving.register_keras_serializable(package="deepalign")
class ClassRegionLoss(keras.losses.Loss):
    """Class cross-entropy plus region cross-entropy of a ``(N, K * R)`` pair output.

    Both on the marginals (the sums over regions, over classes) of the targets and of the
    output; for the class-head network the output's marginals are its two softmaxes exactly.
    """

    def __init__(self, n_classes: int, name: str = "class_region_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)

    def call(self, y_true, y_pred):
        k = self.n_classes
        width = y_pred.shape[-1]
        t = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), (-1, k, width // k))
        p = keras.ops.reshape(y_pred, (-1, k, width // k))
        cross = keras.losses.categorical_crossentropy
        return (cross(keras.ops.sum(t, axis=2), keras.ops.sum(p, axis=2))
                + cross(keras.ops.sum(t, axis=1), keras.ops.sum(p, axis=1)))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}


def compile_model(model: keras.Model, *, loss: str = "bce", learning_rate: float = 0.001,
                  shared: bool = False, head: str = "sigmoid", n_classes: int = 1,
                  class_output: str = "joint") -> keras.Model:
    """Compile with Adam, the chosen loss and an ``accuracy`` metric.

    Parameters
    ----------
    model : keras.Model
    loss : {"mae", "bce"}
        Mean absolute error (Xmipp's code) or binary cross-entropy.
    learning_rate : float
        Adam learning rate (paper 0.002, Xmipp 0.001).
    shared : bool
        For the shared network ``accuracy`` is the categorical accuracy (the highest output is
        the true region); otherwise the binary accuracy at 0.5.
    head : {"sigmoid", "softmax"}
        A softmax head is trained with categorical cross-entropy whatever ``loss`` says.
    n_classes, class_output
        As :func:`build_shared_model`: a class head (``K >= 2``) is trained with
        :class:`ClassRegionLoss`, whatever ``loss`` says.

    Returns
    -------
    keras.Model
        The same model, compiled.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    metric = (keras.metrics.CategoricalAccuracy(name="accuracy") if shared
              else keras.metrics.BinaryAccuracy(name="accuracy"))
    check_class_output(class_output, head=head, n_classes=n_classes)
    keras_loss = "categorical_crossentropy" if head == "softmax" else LOSSES[loss]
    if int(n_classes) > 1 and class_output == "head":
        keras_loss = ClassRegionLoss(n_classes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=float(learning_rate)),
                  loss=keras_loss, weighted_metrics=[metric])
    return model
