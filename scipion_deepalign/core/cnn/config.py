"""Training options (:class:`TrainConfig`), checked when made.

The choice lists of its fields (``NETWORKS``, ``HEADS``, ``CLASS_OUTPUTS``, ``TRUNKS``,
``TRAINING_SOURCES``, ``LOSSES``) are defined in :mod:`scipion_deepalign.core.defaults`; the
model folder's layout and reading belong to :mod:`.model_folder`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..defaults import (
    CLASS_OUTPUTS,
    HEADS,
    LOSSES,
    NETWORKS,
    TRAIN_DEFAULTS,
    TRAINING_SOURCES,
    TRUNKS,
)

__all__ = ["TrainConfig", "DEFAULT_INPUT_BOX_PX"]

#: Network input side when neither a target resolution nor a box is given. Measured
#: (docs/benchmarks_accuracy.md, 8zpm at SNR 0.05, trained from projections): 24 px reached
#: region top-4 0.83 after 27 epochs against 0.79 for 32 px, at half the time per epoch.
DEFAULT_INPUT_BOX_PX = 24


_D = TRAIN_DEFAULTS  # every field's default is defined in core/defaults.py

@dataclass
class TrainConfig:
    """Options of :func:`~scipion_deepalign.core.cnn.train.train_regions`.

    Attributes
    ----------
    pixel_size_a : float or None
        Pixel size of the particles in Å/px; :func:`~.train.train_regions` needs it (the model
        records it, and prediction refuses particles of another pixel size).
    target_resolution_a : float or None
        Downsample the particles to this resolution (``projection.downsampled_geometry``).
    target_box_px : int or None
        Or give the input side directly. Neither: ``DEFAULT_INPUT_BOX_PX`` (24 px).
    training_source : {"projections", "particles", "both"}
        Where the training images come from (shared network only for the first and last):
        ``"projections"`` makes new labelled images of the reference map at random poses
        for every batch, with the particles' CTFs and their measured noise
        (:mod:`.synthetic`; no aligned subset needed, the particles only give CTFs and
        noise); ``"particles"`` uses the aligned subset (the paper); ``"both"`` mixes
        ``particle_fraction`` of aligned particles into every batch of projections.
    epochs : int
        Maximum epochs per network; training stops earlier when it has reached a plateau
        (``patience``). The default schedule (``epochs``, ``images_per_epoch``,
        ``noise_ramp_epochs``, ``patience``) is chosen to train the 42-region shared network
        in under 2 minutes on 2 CPU cores at a 24 px input, as accurate after the regional
        search as a long training (measured: docs/benchmarks_cnn.md, "Training that costs
        minutes").
    batch_size : int
        Images per batch (regional networks: half positives and half negatives).
    images_per_epoch : int
        Images per epoch of the shared network (any source), so that an epoch costs the same
        whatever the data set and the number of regions; also how often the held-out set
        is scored (early stopping).
    positives_per_region : int
        Augmented positives per region and epoch of a regional network (as many negatives;
        paper: 10000).
    head : {"softmax", "sigmoid"}
        Output of the shared network: one softmax over the regions (default) trained with
        labels softened towards neighbouring regions (``label_softness``), or one sigmoid per
        region (one-hot labels).
    class_output : {"joint", "head"}
        Class output of a shared network trained from K >= 2 maps (:mod:`.joint`): one
        softmax over the K x R (class, region) pairs, or a class softmax over K beside the
        region softmax on the same trunk, trained with the sum of the two cross-entropies,
        whose pair probability is ``p(k) * p(r)`` (it needs ``head="softmax"``). Ignored by a
        network of one map. Measured: docs/benchmarks_classes.md, "Class head or joint
        softmax".
    trunk : {"polar", "cartesian"}
        Convolutions of the shared network on a polar resampling of the image, invariant
        to the in-plane rotation (default), or on the image (the paper's; the regional
        networks always use it, and this field then reads ``"cartesian"``). Measured on the
        70S ribosome at SNR 0.05 (docs/benchmarks_accuracy.md, 20 epochs): region top-1 /
        top-2 0.33 / 0.49 for the polar trunk against 0.14 / 0.25 for the Cartesian one
        (0.22 / 0.34 after 40 epochs), at 1.4x its time per step.
    label_softness : float
        Width of the softened labels of the softmax head, as a fraction of the region
        spacing (``sigma = label_softness * spacing_deg``); 0 gives one-hot labels.
    particle_fraction : float
        Share of aligned particles in each batch with ``training_source="both"``.
    noise_ramp_epochs : int
        Noise curriculum of the ``projections`` and ``both`` sources: the noise of the
        training projections starts at 10 % of the particles' measured amplitude and grows
        geometrically to it over this many epochs (:func:`.synthetic.noise_ramp_scale`);
        early stopping only starts after it, and validation always uses the full noise.
        At the particles' own SNR the network leaves chance slowly without it (70S ribosome,
        SNR 0.05, 20 epochs: held-out accuracy 0.06 without, 0.16 with a 10-epoch ramp;
        docs/benchmarks_accuracy.md). 0: no curriculum. A ramp never takes more than the
        first half of ``epochs`` (:attr:`ramp_epochs`).
    network : {"shared", "regional"}
        One shared-trunk network with an output per region (default; its head: ``head``)
        or one binary classifier per region (the paper's). The shared network won on region
        accuracy in both measurements of docs/benchmarks_cnn.md and trains several times
        faster; the regional networks can be trained in parallel, one per GPU.
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
        Early stopping, after the noise ramp: epochs without a gain of more than
        :data:`~.history.HIT_RATE_MIN_DELTA` in the held-out **region hit rate** (the true
        region among those the default search takes, :func:`.history.region_hit_rate`;
        shared network) or without a lower validation loss (regional networks) before
        stopping; the best epoch's weights are kept. 0 disables early stopping.
    max_shift_fraction : float
        Random augmentation shifts up to this fraction of the input box.
    seed : int
    min_particles_per_region : int
        Regions with fewer training particles are skipped with a warning; their
        probability is 0 at prediction.
    """

    pixel_size_a: float | None = _D["pixel_size_a"]
    target_resolution_a: float | None = _D["target_resolution_a"]
    target_box_px: int | None = _D["target_box_px"]
    training_source: str = _D["training_source"]
    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    images_per_epoch: int = _D["images_per_epoch"]
    positives_per_region: int = _D["positives_per_region"]
    network: str = _D["network"]
    head: str = _D["head"]
    class_output: str = _D["class_output"]
    trunk: str = _D["trunk"]
    label_softness: float = _D["label_softness"]
    particle_fraction: float = _D["particle_fraction"]
    noise_ramp_epochs: int = _D["noise_ramp_epochs"]
    loss: str = _D["loss"]
    learning_rate: float = _D["learning_rate"]
    validation_fraction: float = _D["validation_fraction"]
    patience: int = _D["patience"]
    max_shift_fraction: float = _D["max_shift_fraction"]
    seed: int = _D["seed"]
    min_particles_per_region: int = _D["min_particles_per_region"]

    def __post_init__(self):
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {self.network!r}")
        if self.training_source not in TRAINING_SOURCES:
            raise ValueError(f"training_source must be one of {TRAINING_SOURCES}, "
                             f"got {self.training_source!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.class_output not in CLASS_OUTPUTS:
            raise ValueError(f"class_output must be one of {CLASS_OUTPUTS}, "
                             f"got {self.class_output!r}")
        if self.trunk not in TRUNKS:
            raise ValueError(f"trunk must be one of {TRUNKS}, got {self.trunk!r}")
        if self.network == "regional":  # the paper's networks: its Cartesian trunk
            self.trunk = "cartesian"
        if self.training_source != "particles" and self.network != "shared":
            raise ValueError(f"training_source {self.training_source!r} needs the shared "
                             "network; the regional networks train from particles only")
        if not 0 <= self.label_softness <= 2:
            raise ValueError(f"label_softness must be in [0, 2], got {self.label_softness}")
        if not 0 < self.particle_fraction < 1:
            raise ValueError(f"particle_fraction must be in (0, 1), got {self.particle_fraction}")
        if self.loss not in LOSSES + ("binary_crossentropy", "mean_absolute_error"):
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "images_per_epoch", "positives_per_region"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1), "
                             f"got {self.validation_fraction}")
        if int(self.noise_ramp_epochs) < 0:
            raise ValueError(f"noise_ramp_epochs must be >= 0, got {self.noise_ramp_epochs}")
        if self.patience < 0 or self.min_particles_per_region < 1:
            raise ValueError("patience must be >= 0 and min_particles_per_region >= 1")
        if self.target_resolution_a is not None and self.target_box_px is not None:
            raise ValueError("give target_resolution_a or target_box_px, not both")
        if self.target_resolution_a is not None and not self.pixel_size_a:
            raise ValueError("pixel_size_a is needed with target_resolution_a")

    @property
    def ramp_epochs(self) -> int:
        """Epochs of the noise curriculum actually run: ``noise_ramp_epochs``, at most half
        of ``epochs``, 0 for the ``particles`` source (which has no synthetic noise)."""
        if self.training_source == "particles":
            return 0
        return min(int(self.noise_ramp_epochs), int(self.epochs) // 2)

    def class_output_of(self, n_classes: int) -> str:
        """The class output a shared network of ``n_classes`` maps is built with:
        :attr:`class_output` for K >= 2, ``"joint"`` for one map (its plain region output,
        whatever the option says)."""
        return self.class_output if int(n_classes) > 1 else "joint"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

