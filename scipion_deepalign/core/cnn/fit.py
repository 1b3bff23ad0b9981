"""One network's training loop: progress lines, held-out scores and early stopping.

:func:`fit_model` runs Keras's ``fit`` with

* a progress line per epoch (:class:`~..runtime.progress.Progress`, and the user's
  ``progress`` callable);
* for the **shared network**, :class:`HeldOutScores`: after every epoch it predicts the
  held-out images once and records ``val_loss``, ``val_accuracy`` (the highest output is the
  true region) and ``val_region_hit`` (:func:`.history.region_hit_rate`: the true region is
  among those the default search takes), and stops when the hit rate has reached a plateau
  (:class:`.history.PlateauStop`: no gain above ``HIT_RATE_MIN_DELTA`` for ``patience``
  epochs after the noise curriculum), keeping the weights of the best epoch;
* for a **regional network**, Keras's early stopping on ``val_loss`` (balanced binary
  validation with sample weights; a region hit rate needs all regions at once).

After the first batch, :class:`_ReuseFreedMemory` puts back glibc's allocation thresholds,
which TensorFlow's generator dataset pins at 128 KiB (:mod:`..runtime.heap`): the training
images made on the fly and everything after the training in the same process (prediction,
alignment) then reuse freed memory instead of page-faulting fresh memory for every array.
"""
from __future__ import annotations

import keras
import numpy as np

from ..runtime.heap import reuse_freed_memory
from ..runtime.progress import Progress
from .history import PlateauStop, region_hit_rate

__all__ = ["fit_model", "HeldOutScores"]


class _ProgressLogger(keras.callbacks.Callback):
    """Reports every epoch (:class:`~..progress.Progress`: rate, ETA, loss and accuracy) and
    forwards it to the user's ``progress`` callable."""

    def __init__(self, label, position, total, epochs, progress):
        super().__init__()
        self.label, self.position, self.total = label, position, total
        self.epochs, self.progress = epochs, progress
        self.reporter = Progress(epochs, f"training {label} ({position} of {total})",
                                 unit="epochs", log_step=1 / epochs)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.reporter.update(1, **dict(sorted(logs.items())))
        if self.progress is not None:
            self.progress({"model": self.label, "position": self.position,
                           "total": self.total, "epoch": epoch + 1, "epochs": self.epochs,
                           "logs": logs})

    def on_train_end(self, logs=None):
        self.reporter.close()


class _ReuseFreedMemory(keras.callbacks.Callback):
    """:func:`~..runtime.heap.reuse_freed_memory` once the first batch has run (the backend's
    data pipeline is made by then)."""

    def __init__(self):
        super().__init__()
        self.done = False

    def on_train_batch_end(self, batch, logs=None):
        if not self.done:
            self.done = True
            reuse_freed_memory()


class HeldOutScores(keras.callbacks.Callback):
    """Scores of the shared network on held-out images after every epoch, and early stopping
    on their region hit rate (module docstring).

    Parameters
    ----------
    images : ndarray of shape (M, b, b, 1)
        Held-out network inputs.
    targets : ndarray of shape (M, R)
        Their region targets (one-hot or softened); the true region is the largest.
    patience : int
        Epochs without gain before stopping; 0: run every epoch and keep the last weights.
    start_epoch : int
        First 0-based epoch that counts (after the noise curriculum).

    Attributes
    ----------
    best_epoch, stopped_epoch : int or None
        0-based epoch of the kept weights, and of the stop (None: ran to the end).
    """

    def __init__(self, images, targets, *, patience: int, start_epoch: int):
        super().__init__()
        self.images = images
        self.targets = np.asarray(targets, dtype=np.float32)
        self.truth = np.argmax(self.targets, axis=1)
        self.patience = int(patience)
        self.rule = PlateauStop(patience=patience, start_epoch=start_epoch)
        self.best_weights = None
        self.stopped_epoch = None

    @property
    def best_epoch(self):
        return self.rule.best_epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs  # the same dict reaches History after us
        probs = self.model.predict(self.images, batch_size=256, verbose=0)
        loss = keras.losses.get(self.model.loss)(self.targets, probs)
        logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(loss)))
        logs["val_accuracy"] = float(np.mean(np.argmax(probs, axis=1) == self.truth))
        logs["val_region_hit"] = region_hit_rate(probs, self.truth)
        is_best, stop = self.rule.update(epoch, logs["val_region_hit"])
        if is_best and self.patience > 0:
            self.best_weights = self.model.get_weights()
        if stop:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def fit_model(model, batches, validation, config, *, label, position=1, total=1,
              progress=None, shared=False) -> dict:
    """Train ``model`` on ``batches`` and return its history (lists of floats per key).

    Parameters
    ----------
    model : keras.Model
        Compiled (:func:`.model.compile_model`).
    batches : keras.utils.PyDataset
    validation : tuple or None
        ``(images, targets)`` (shared) or ``(images, labels, weights)`` (regional).
    config : TrainConfig
        ``epochs``, ``patience`` and :attr:`~.config.TrainConfig.ramp_epochs`.
    label : str
        Name in the progress lines.
    shared : bool
        Shared network: :class:`HeldOutScores`; the history then also holds ``best_epoch``
        and ``stopped_epoch`` (None when it ran every epoch) and ``early_stopping`` (the
        rule's settings).
    """
    logger = _ProgressLogger(label, position, total, config.epochs, progress)
    scores = None
    if shared and validation is not None:
        scores = HeldOutScores(validation[0], validation[1], patience=config.patience,
                               start_epoch=config.ramp_epochs)
        callbacks, validation = [scores, logger], None  # scored by the callback, once
    else:
        callbacks = [logger]
        if validation is not None and config.patience > 0:
            # not while the noise curriculum still makes the training images cleaner
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, restore_best_weights=True,
                start_from_epoch=config.ramp_epochs))
    history = model.fit(batches, epochs=config.epochs, validation_data=validation,
                        callbacks=[_ReuseFreedMemory(), *callbacks], verbose=0)
    out = {k: [float(v) for v in values] for k, values in history.history.items()}
    if scores is not None:
        kept = scores.best_epoch if config.patience > 0 else len(out["loss"]) - 1
        out.update(best_epoch=kept, stopped_epoch=scores.stopped_epoch,
                   early_stopping={"monitor": "val_region_hit", "patience": config.patience,
                                   "min_delta": scores.rule.min_delta,
                                   "start_epoch": scores.rule.start_epoch})
    return out
