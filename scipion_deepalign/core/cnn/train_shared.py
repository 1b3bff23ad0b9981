"""Training of the shared-trunk network from particles, projections of the map, or both.

Called by :func:`~.train.train_regions` (which owns the model folder, resuming and the
report). The validation set that early stopping watches is

* ``particles``: held-out aligned particles (by particle, stratified by region);
* ``projections`` / ``both``: a fixed set of projections made like the training ones
  (seeded apart from them), since the aligned poses may be partly wrong. Held-out aligned
  particles, when there are any, are still scored at the end (``particle_accuracy`` in the
  history), which measures how well the training transfers to real images.

With K reference maps (``reference`` of shape (K, B, B, B), ``projections`` only) the output
has the ``K * R`` class x region columns of :mod:`.joint`, made as ``config.class_output``
says (one joint softmax, or a class head beside the region head: :mod:`.model`); the history
adds ``n_classes``, ``class_output`` and ``class_accuracy`` (held-out projections whose most
probable class is theirs).

Fine-tuning (``start_weights``, :func:`~.train.train_regions`'s ``start_from``): the network
is built as always, then takes the weights of a saved shared network of the same input box,
regions and classes (a ValueError names what differs) before it trains on; the history
records ``fine_tuned_from``. ``deepalign classify --cnn`` fine-tunes each iteration's network
from the previous one on projections of the new class maps
(:mod:`~..classes.network`).
"""
from __future__ import annotations

import logging
import time

import keras
import numpy as np

from ..imageops import fourier_crop_volume
from ..regions import assign_regions
from ..simulate import signal_mask_radius_px
from .data import (
    ProjectionBatches,
    SharedBatches,
    mask_images,
    preprocess_images,
    region_targets,
    split_by_particle,
)
from .joint import ClassProjectionBatches, ClassProjectionSource, class_probabilities
from .model import build_shared_model, compile_model
from .model_folder import SHARED_HISTORY, SHARED_MODEL, write_json_atomic
from .synthetic import ProjectionSource, noise_model_of_particles, noise_sample_rows

__all__ = ["train_shared_network", "VALIDATION_PROJECTIONS"]

logger = logging.getLogger(__name__)

#: Projections in the fixed validation set of the ``projections`` and ``both`` sources.
VALIDATION_PROJECTIONS = 2048


def _projection_source(images, reference, *, input_box, input_px, ctf, max_shift_px):
    """The projections of the map, or of K maps (``reference`` of shape (K, B, B, B)) with
    their classes (:class:`~.joint.ClassProjectionSource`); one noise model for all."""
    maps = [reference] if reference.ndim == 3 else list(reference)
    small = [fourier_crop_volume(m, input_box) if input_box < m.shape[0] else m for m in maps]
    radius = min(input_box / 2 - 1,
                 max(signal_mask_radius_px(m) for m in small) + max_shift_px)
    noise = noise_model_of_particles(images, input_box_px=input_box, mask_radius_px=radius)
    logger.info("noise measured on %d particles: SNR %.3g at %d px inside a %.1f px disc",
                len(noise_sample_rows(len(images))), noise.snr, input_box, radius)
    sources = [ProjectionSource(m, input_box_px=input_box, input_pixel_size_a=input_px,
                                noise=noise, ctf=ctf, max_shift_px=max_shift_px)
               for m in small]
    return sources[0] if len(sources) == 1 else ClassProjectionSource(sources)


def train_shared_network(images, angles, *, out_dir, centres_deg, symmetry, spacing_deg,
                         config, input_box, input_px, shifts_px, reference, ctf, fit,
                         save, start_weights=None) -> dict:
    """Train, save and return the history of the shared network (see the module docstring).

    ``fit(model, batches, validation) -> history`` and ``save(model, path)`` come from
    :mod:`.train` (progress logging, early stopping, atomic writes); ``start_weights``, the
    path of a saved shared network whose weights the training starts from (fine-tuning).
    """
    n_regions = len(centres_deg)
    n_classes = 1 if reference is None or reference.ndim == 3 else len(reference)
    sigma = (config.label_softness * float(spacing_deg)
             if config.head == "softmax" and config.label_softness > 0 else None)
    max_shift = config.max_shift_fraction * input_box
    x_train = x_val = None
    if angles is not None:
        labels = np.asarray(assign_regions(angles, centres_deg, symmetry)[0], dtype=int)
        train_idx, val_idx = split_by_particle(labels, config.validation_fraction,
                                               np.random.default_rng(config.seed))
        logger.info("preprocessing %d particles to %d px (%.3g A/px)", len(images),
                    input_box, input_px)
        x = preprocess_images(images, input_box_px=input_box, shifts_px=shifts_px)
        targets = region_targets(angles, centres_deg, symmetry, label_sigma_deg=sigma)
        x_train, x_val = x[train_idx], x[val_idx]
    keras.utils.set_random_seed(config.seed)
    class_output = config.class_output_of(n_classes)
    model = compile_model(build_shared_model(input_box, n_regions, head=config.head,
                                             trunk=config.trunk, n_classes=n_classes,
                                             class_output=class_output),
                          loss=config.loss, learning_rate=config.learning_rate, shared=True,
                          head=config.head, n_classes=n_classes, class_output=class_output)
    extra = {"training_source": config.training_source, "head": config.head,
             "chance_accuracy": 1.0 / (n_classes * n_regions)}
    if start_weights is not None:
        _load_start_weights(model, start_weights)
        extra["fine_tuned_from"] = str(start_weights)
    if config.training_source == "particles":
        batches = SharedBatches(x_train, labels[train_idx], n_regions=n_regions,
                                batch_size=config.batch_size,
                                samples_per_epoch=config.images_per_epoch,
                                max_shift_px=max_shift, seed=config.seed,
                                targets=targets[train_idx])
        validation = (mask_images(x_val), targets[val_idx]) if len(val_idx) else None
        extra["n_particles_per_region"] = np.bincount(labels[train_idx],
                                                      minlength=n_regions).tolist()
    else:
        source = _projection_source(images, reference, input_box=input_box,
                                    input_px=input_px, ctf=ctf, max_shift_px=max_shift)
        extra["noise_snr"] = float(source.noise.snr)
        mixed = None
        if config.training_source == "both":
            mixed = (x_train, angles[train_idx])
        kind = ProjectionBatches if n_classes == 1 else ClassProjectionBatches
        batches = kind(source, centres_deg, symmetry, batch_size=config.batch_size,
                       n_images=config.images_per_epoch, seed=config.seed,
                       label_sigma_deg=sigma, particles=mixed,
                       particle_fraction=config.particle_fraction, max_shift_px=max_shift,
                       noise_ramp_epochs=config.ramp_epochs)
        held_out = kind(source, centres_deg, symmetry, batch_size=VALIDATION_PROJECTIONS,
                        n_images=VALIDATION_PROJECTIONS, seed=config.seed + 7919,
                        label_sigma_deg=sigma)
        validation = held_out[0]
    t0 = time.perf_counter()
    history = fit(model, batches, validation)
    if n_classes > 1:  # the joint output's class marginal on the held-out projections
        extra.update(n_classes=n_classes, class_output=class_output,
                     class_accuracy=_class_accuracy(model, validation, n_classes))
    if x_val is not None and len(x_val):
        predicted = np.argmax(model.predict(mask_images(x_val), batch_size=256, verbose=0),
                              axis=1)
        extra["particle_accuracy"] = float(np.mean(predicted == labels[val_idx]))
    history.update(extra, region="shared",
                   n_particles=0 if angles is None else int(len(x_train)),
                   seconds=time.perf_counter() - t0)
    write_json_atomic(out_dir / SHARED_HISTORY, history)
    save(model, out_dir / SHARED_MODEL)
    return history


def _load_start_weights(model, path) -> None:
    """``model`` takes the weights of the saved network at ``path`` (same architecture)."""
    start = keras.models.load_model(path)
    old, new = start.get_weights(), model.get_weights()
    if len(old) != len(new) or any(a.shape != b.shape for a, b in zip(old, new)):
        raise ValueError(f"cannot fine-tune from {path}: its network differs (input box, "
                         "regions, classes or trunk) from the one to train")
    model.set_weights(old)
    logger.info("fine-tuning from the weights of %s", path)


def _class_accuracy(model, validation, n_classes) -> float:
    """Fraction of held-out images whose most probable class (the sum over its regions,
    :func:`~.joint.class_probabilities`) is their class."""
    images, targets = validation
    predicted = model.predict(images, batch_size=256, verbose=0)
    truth = class_probabilities(targets, n_classes).argmax(axis=1)
    return float(np.mean(class_probabilities(predicted, n_classes).argmax(axis=1) == truth))
