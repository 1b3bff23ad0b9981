"""Training options and the layout of a model folder.

Model folder::

    config.json          TrainConfig + what prediction needs (input box, symmetry, regions, ...)
    regions.star         region centres (io.star.write_regions_star)
    region_NNNN.keras    one binary classifier per region, NNNN 1-based as in regions.star
    history_NNNN.json    Keras History.history (loss, accuracy, val_loss, val_accuracy) plus
                         "region", "n_particles", "seconds"; a region skipped for having too
                         few particles has only this file, with "skipped" set
    shared.keras         the shared-trunk network instead (network="shared")
    history_shared.json
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["TrainConfig", "CONFIG_FILE", "REGIONS_FILE", "SHARED_MODEL", "SHARED_HISTORY",
           "NETWORKS", "LOSSES",
           "model_path", "history_path", "read_model_config", "write_json_atomic"]

CONFIG_FILE = "config.json"
REGIONS_FILE = "regions.star"
SHARED_MODEL = "shared.keras"
SHARED_HISTORY = "history_shared.json"
NETWORKS = ("regional", "shared")
#: training losses: binary cross-entropy, mean absolute error (Xmipp's code)
LOSSES = ("bce", "mae")


@dataclass
class TrainConfig:
    """Options of :func:`~scipion_deepalign.core.cnn.train.train_regions`.

    Attributes
    ----------
    pixel_size_a : float or None
        Pixel size of the particles (needed with ``target_resolution_a``).
    target_resolution_a : float or None
        Downsample the particles to this resolution (``projection.downsampled_geometry``).
    target_box_px : int or None
        Or give the input side directly. Neither: the full box is used.
    epochs : int
        Maximum epochs per network (paper and Xmipp: 10).
    batch_size : int
        Images per batch, half positives and half negatives (128).
    positives_per_region : int
        Augmented positives per region and epoch (as many negatives); fixed, so the cost
        of a region does not grow with the data set (paper: 10000). The shared network
        sees this many images per region and epoch.
    network : {"shared", "regional"}
        One shared-trunk network with a sigmoid head per region (default) or one binary
        classifier per region (the paper's). The shared network won on region accuracy in
        both measurements of docs/benchmarks_cnn.md (4 regions: top-2 0.717 vs 0.697; 42
        regions: top-2 0.35 vs 0.13 at equal epochs and positives) and trains several
        times faster; the regional networks can be trained in parallel, one per GPU.
    loss : {"bce", "mae"}
        Binary cross-entropy (default) or mean absolute error (Xmipp's code). bce gave the
        better region accuracy in docs/benchmarks_cnn.md, and mae does not train the shared
        network at all.
    learning_rate : float
        Adam learning rate: 0.002 (the paper's; Xmipp's code used 0.001), as good or
        slightly better in docs/benchmarks_cnn.md.
    validation_fraction : float
        Fraction of each region's particles held out (by particle) for validation and
        early stopping.
    patience : int
        Epochs without a lower validation loss before stopping (best weights are kept);
        0 disables early stopping.
    max_shift_fraction : float
        Random augmentation shifts up to this fraction of the input box.
    seed : int
    min_particles_per_region : int
        Regions with fewer training particles are skipped with a warning; their
        probability is 0 at prediction.
    """

    pixel_size_a: float | None = None
    target_resolution_a: float | None = None
    target_box_px: int | None = None
    epochs: int = 10
    batch_size: int = 128
    positives_per_region: int = 10000
    network: str = "shared"
    loss: str = "bce"
    learning_rate: float = 0.002
    validation_fraction: float = 0.1
    patience: int = 3
    max_shift_fraction: float = 0.05
    seed: int = 0
    min_particles_per_region: int = 10

    def __post_init__(self):
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {self.network!r}")
        if self.loss not in LOSSES + ("binary_crossentropy", "mean_absolute_error"):
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "positives_per_region"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1), "
                             f"got {self.validation_fraction}")
        if self.patience < 0 or self.min_particles_per_region < 1:
            raise ValueError("patience must be >= 0 and min_particles_per_region >= 1")
        if self.target_resolution_a is not None and self.target_box_px is not None:
            raise ValueError("give target_resolution_a or target_box_px, not both")
        if self.target_resolution_a is not None and not self.pixel_size_a:
            raise ValueError("pixel_size_a is needed with target_resolution_a")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def model_path(model_dir, region: int) -> Path:
    """``region_NNNN.keras`` of a 1-based region number."""
    return Path(model_dir) / f"region_{int(region):04d}.keras"


def history_path(model_dir, region: int) -> Path:
    """``history_NNNN.json`` of a 1-based region number."""
    return Path(model_dir) / f"history_{int(region):04d}.json"


def write_json_atomic(path, data) -> None:
    """Write JSON through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_model_config(model_dir) -> dict:
    """The ``config.json`` of a model folder (ValueError naming the folder if absent)."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"model_dir {model_dir!s} holds no {CONFIG_FILE}: not a DeepAlign "
                         "model folder, or training never started there")
    with open(path) as handle:
        return json.load(handle)
