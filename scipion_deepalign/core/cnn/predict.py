"""Region probabilities of particles from a trained model folder (paper §2.3).

Every particle goes through every region's classifier (or the shared network) in chunks of
``chunk_size`` images, so memory stays bounded whatever the number of particles. The images
are preprocessed exactly as at training time, with the geometry stored in ``config.json``
(no shifts: particles to assign have unknown shifts, which the training augmentation
covers). Regions skipped at training for having too few particles get probability 0.
Particles of another box or pixel size than the model's are refused
(:meth:`~.model_folder.ModelFolder.check_particles`).
"""
from __future__ import annotations

import keras
import numpy as np

from ..defaults import TOP_K
from ..runtime.progress import advance
from ..runtime.stacks import as_stack
from .data import mask_images, preprocess_images
from .joint import region_marginal
from .model_folder import SHARED_MODEL, ModelFolder

__all__ = ["load_models", "predict_probabilities", "predict_regions", "top_k_regions",
           "progress_chunk", "MIN_CHUNK"]

#: images a prediction that reports its progress hands the network at least per call: each
#: Keras ``predict`` call costs about 60 ms of its own (2 000 particles of 64 px: 0.99 s in
#: calls of 256, 0.55 s in one; docs/benchmarks_cnn.md, "Prediction in fewer calls")
MIN_CHUNK = 2048


def progress_chunk(n: int) -> int:
    """``chunk_size`` of :func:`predict_probabilities` for ``n`` particles whose progress is
    reported: a twentieth of them (the progress's steps), at least :data:`MIN_CHUNK`."""
    return max(MIN_CHUNK, int(n) // 20)


def load_models(model_dir):
    """Load the networks of a model folder.

    Parameters
    ----------
    model_dir : str or Path

    Returns
    -------
    meta : dict
        Contents of ``config.json``.
    models : keras.Model or list of (keras.Model or None)
        The shared network, or one model per region (None for a region skipped at training).
    """
    from . import model as _layers  # noqa: F401  (registers the class head's layers)

    folder = ModelFolder(model_dir)
    model_dir = folder.path
    meta = folder.read_config()
    folder.class_output(meta)  # a kind this version cannot read is refused here
    if meta["config"]["network"] == "shared":
        path = folder.shared_model_path
        if not path.exists():
            raise ValueError(f"model_dir {model_dir} has no {SHARED_MODEL}: training is not "
                             "finished (run deepalign train again to complete it)")
        return meta, keras.models.load_model(path)
    models, missing = _RegionModels(), []
    for region in range(1, meta["n_regions"] + 1):
        path = folder.model_path(region)
        if path.exists():
            models.append(keras.models.load_model(path))
            continue
        if not folder.is_skipped(region):
            missing.append(region)
        models.append(None)
    if missing:
        raise ValueError(f"model_dir {model_dir} lacks the models of regions {missing}: "
                         "training is not finished (run deepalign train again to complete it)")
    return meta, models


class _RegionModels(list):
    """The regional networks (None for skipped regions), caching their combined model."""

    combined = None


def _combine(nets, box_px):
    """One Keras model giving the outputs of all regional networks side by side.

    Returns the model and the 0-based regions of its output columns (regions skipped at
    training have no network and keep probability 0).
    """
    if not isinstance(nets, list):
        return nets, slice(None)
    if getattr(nets, "combined", None) is not None:
        return nets.combined
    present = [r for r, net in enumerate(nets) if net is not None]
    if not present:
        raise ValueError("no region of this model folder has a trained network")
    for r in present:  # operation names must be unique inside the combined model
        nets[r]._name = f"region_{r + 1:04d}"
    inputs = keras.Input(shape=(int(box_px), int(box_px), 1))
    outputs = [nets[r](inputs, training=False) for r in present]
    merged = outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)
    combined = keras.Model(inputs, merged), np.array(present)
    if isinstance(nets, _RegionModels):
        nets.combined = combined
    return combined


def _check_images(images, model_dir, meta, pixel_size_a):
    images = as_stack(images)  # a stack read on demand is read chunk by chunk below
    if len(images.shape) != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (N, B, B), got {images.shape}")
    ModelFolder(model_dir).check_particles(images.shape[1], pixel_size_a, meta=meta)
    return images


def predict_probabilities(images, model_dir, *, pixel_size_a=None, batch_size: int = 256,
                          chunk_size: int = 4096, models=None, progress=None) -> np.ndarray:
    """Probability that each particle's direction lies in each region.

    Parameters
    ----------
    images : stack of shape (N, B, B)
        Particles with the box they were trained with: an ndarray or a stack read on
        demand (:mod:`..stacks`), read ``chunk_size`` images at a time.
    model_dir : str or Path
    pixel_size_a : float, optional
        The particles' pixel size (Å/px): refused when it is not the model's
        (:func:`~scipion_deepalign.core.defaults.same_pixel_size`). None (an array has no
        pixel size): not checked, logged.
    batch_size : int
        Images per network call.
    chunk_size : int
        Images preprocessed and held at once.
    models : tuple, optional
        ``load_models(model_dir)`` already done (to reuse loaded networks).
    progress : callable, optional
        Called with the number of particles just predicted (:mod:`..progress`).

    Returns
    -------
    ndarray of shape (N, R) float32, or (N, K * R) for a model of K classes
        Column ``r`` is region ``r + 1`` of ``regions.star``; with K classes column
        ``k * R + r`` is class ``k`` and region ``r`` (:mod:`.joint`).
    """
    if int(batch_size) < 1 or int(chunk_size) < 1:
        raise ValueError("batch_size and chunk_size must be positive, "
                         f"got {batch_size} and {chunk_size}")
    meta, nets = models if models is not None else load_models(model_dir)
    images = _check_images(images, model_dir, meta, pixel_size_a)
    n_outputs = meta["n_regions"] * ModelFolder(model_dir).n_classes(meta)
    combined, present = _combine(nets, meta["input_box_px"])
    out = np.zeros((len(images), n_outputs), np.float32)
    for start in range(0, len(images), int(chunk_size)):
        stop = min(start + int(chunk_size), len(images))
        x = mask_images(preprocess_images(images[start:stop],
                                          input_box_px=meta["input_box_px"]))
        out[start:stop, present] = combined.predict(x, batch_size=int(batch_size), verbose=0)
        advance(progress, stop - start)
    return out


def predict_regions(images, model_dir, *, top_k: int = TOP_K, pixel_size_a=None,
                    batch_size: int = 256, chunk_size: int = 4096, progress=None):
    """The ``top_k`` most probable regions of each particle, best first.

    Parameters
    ----------
    images : stack of shape (N, B, B)
        As in :func:`predict_probabilities`.
    model_dir : str or Path
    top_k : int
        Regions kept per particle, at least 1 (more than the ``R`` regions keeps them all:
        ``--top-k`` is a most, so that its default suits every region spacing).
    pixel_size_a, batch_size, chunk_size, progress
        See :func:`predict_probabilities`.

    Returns
    -------
    regions : ndarray of shape (N, min(top_k, R)) int
        **0-based** region indices (add 1 for the numbers of ``regions.star``).
    probabilities : ndarray of shape (N, min(top_k, R)) float32
        Their probabilities, non-increasing along each row. For a model of K classes, each
        region's probability summed over the classes (:func:`.joint.region_marginal`).
    """
    if int(top_k) != top_k or top_k < 1:
        raise ValueError(f"top_k must be a whole number of at least 1, got {top_k}")
    probs = predict_probabilities(images, model_dir, pixel_size_a=pixel_size_a,
                                  batch_size=batch_size,
                                  chunk_size=chunk_size, progress=progress)
    n_classes = ModelFolder(model_dir).n_classes()
    if n_classes > 1:  # the regions whatever the class
        probs = region_marginal(probs, n_classes)
    return top_k_regions(probs, int(top_k))


def top_k_regions(probabilities, top_k: int):
    """The ``top_k`` largest probabilities of each row, best first (ties: lower region first).

    Parameters
    ----------
    probabilities : ndarray of shape (N, R)
    top_k : int
        A most: all ``R`` where ``top_k`` is larger.

    Returns
    -------
    regions : ndarray of shape (N, min(top_k, R)) int, 0-based
    probabilities : ndarray of shape (N, min(top_k, R))
    """
    probabilities = np.asarray(probabilities)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :int(top_k)]
    return order.astype(int), np.take_along_axis(probabilities, order, axis=1)
