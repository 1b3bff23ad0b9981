"""Training data of the regional classifiers: preprocessing, splits, augmentation, batches.

Preprocessing (the same at training and prediction time, :func:`preprocess_images`):
Fourier-crop the particles to the network's input box (chosen by
:func:`.checks.input_geometry` from a target resolution, or given
directly), normalise them (zero mean, unit standard deviation in the background
outside a circle of radius ``box/2 - 1``) and, for training particles with known shifts,
centre them. Every image fed to a network, augmented or not, is multiplied by the same
circular mask (:func:`mask_images`), so that the corners an in-plane rotation fills with
zeros look the same at training and prediction time.

Augmentation (:func:`augment_images`): a random in-plane rotation (uniform in [0, 360) deg;
it keeps the projection direction, so the region label is unchanged) and a random shift
(uniform in a square of half-side ``max_shift_px``, in input pixels).

Batches: :class:`RegionBatches` (one region: half positives, half negatives, both
augmented) and :class:`SharedBatches` (all regions, class-balanced, one-hot labels). Item
``i`` of epoch ``e`` is drawn from ``numpy.random.default_rng((seed, e, i))``, so batches do
not depend on the order in which they are asked for.
"""
from __future__ import annotations

import math

import keras
import numpy as np

from ..imageops import (
    circular_mask,
    fourier_crop,
    normalise_images,
    rotate_images,
    translate_images,
)
from ..io.images import read_chunk
from ..runtime.stacks import stack_shape
from .synthetic import noise_ramp_scale

__all__ = ["preprocess_images", "normalise_input", "mask_images",
           "augment_images", "split_by_particle", "RegionBatches", "SharedBatches",
           "region_validation_data", "region_targets", "ProjectionBatches"]


def preprocess_images(images, *, input_box_px: int, shifts_px=None, chunk=None) -> np.ndarray:
    """Fourier-crop, (optionally) centre and normalise particle images.

    Parameters
    ----------
    images : stack of shape (N, B, B)
        An ndarray, a memory map or a stack read on demand (:mod:`..stacks`, e.g.
        :class:`..io.ParticleImages`): it is read ``chunk`` images at a time, so only the
        (small) network inputs of all particles are held.
    input_box_px : int
        Side after Fourier cropping.
    shifts_px : ndarray of shape (N, 2), optional
        Known shifts in pixels of the original box (RELION convention): the images are
        translated by ``+shift`` (scaled to the input box), which centres them.
    chunk : int, optional
        Images read at once; default :func:`..io.images.read_chunk` of the box (64 MB).

    Returns
    -------
    ndarray of shape (N, input_box_px, input_box_px) float32
        Each image's input depends on that image alone, whatever ``chunk``.
    """
    shape = stack_shape(images)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"images must have shape (N, B, B), got {shape}")
    n, box, side = shape[0], shape[1], int(input_box_px)
    shifts = None
    if shifts_px is not None:
        shifts = np.asarray(shifts_px, dtype=np.float64)
        if shifts.shape != (n, 2):
            raise ValueError(f"shifts_px must have shape ({n}, 2), got {shifts.shape}")
        shifts = shifts * (side / box) if np.any(shifts != 0) else None
    chunk = read_chunk(box) if chunk is None else max(1, int(chunk))
    out = np.empty((n, side, side), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = np.asarray(images[start:stop], dtype=np.float32)
        if side != box:
            block = fourier_crop(block, side)
        if shifts is not None:
            block = translate_images(block, shifts[start:stop])
        out[start:stop] = normalise_input(block)
    return out


def normalise_input(images) -> np.ndarray:
    """Background normalisation of network inputs (mean 0, std 1 outside ``box/2 - 1``)."""
    images = np.asarray(images, dtype=np.float32)
    return normalise_images(images, mask_radius_px=images.shape[-1] / 2 - 1)


def _mask(box_px: int) -> np.ndarray:
    return np.asarray(circular_mask(box_px, box_px / 2), dtype=np.float32)


def mask_images(images) -> np.ndarray:
    """Multiply images by the circular mask of radius ``box/2`` and add a channel axis.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)

    Returns
    -------
    ndarray of shape (N, B, B, 1) float32, the network input
    """
    images = np.asarray(images, dtype=np.float32)
    return (images * _mask(images.shape[-1]))[..., None]


def augment_images(images, rng: np.random.Generator, *, max_shift_px: float) -> np.ndarray:
    """Random in-plane rotation and shift of each image, then the input mask.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
    rng : numpy Generator
    max_shift_px : float
        Half-side of the square the shifts are drawn from, in pixels.

    Returns
    -------
    ndarray of shape (N, B, B, 1) float32
    """
    n = len(images)
    out = rotate_images(images, rng.uniform(0.0, 360.0, n))
    if max_shift_px > 0:
        out = translate_images(out, rng.uniform(-max_shift_px, max_shift_px, (n, 2)))
    return mask_images(out)


def split_by_particle(labels, validation_fraction: float, rng: np.random.Generator):
    """Hold out a fraction of the particles of every region for validation.

    Parameters
    ----------
    labels : ndarray of shape (N,) int
        Region of each particle.
    validation_fraction : float in [0, 1)
    rng : numpy Generator

    Returns
    -------
    (train_index, validation_index) : ndarrays of int, sorted, disjoint
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    labels = np.asarray(labels)
    val = []
    for region in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == region))
        n_val = int(round(validation_fraction * len(members)))
        if n_val >= len(members):  # keep at least one particle for training
            n_val = len(members) - 1
        val.append(members[:n_val])
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, int)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val.astype(int)


class _AugmentedBatches(keras.utils.PyDataset):
    """Batches of augmented training images drawn afresh, reproducibly, for every epoch.

    Batch ``index`` of epoch ``e`` draws with ``default_rng((seed, e, index))``, so a batch
    does not depend on the order Keras asks for them.
    """

    def __init__(self, images, *, batch_size, n_images, max_shift_px, seed):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = np.asarray(images, dtype=np.float32)
        self.batch_size = int(batch_size)
        self.n_batches = max(1, math.ceil(int(n_images) / self.batch_size))
        self.max_shift_px = float(max_shift_px)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self):
        return self.n_batches

    def on_epoch_end(self):
        self.epoch += 1

    def _rng(self, index) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def _augmented(self, chosen, rng) -> np.ndarray:
        return augment_images(self.images[chosen], rng, max_shift_px=self.max_shift_px)


class RegionBatches(_AugmentedBatches):
    """Balanced, augmented batches for one region's binary classifier.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
        Preprocessed training images.
    is_positive : ndarray of shape (N,) bool
        True for the region's particles.
    batch_size : int
        Images per batch, half positive and half negative.
    positives_per_epoch : int
        Augmented positives per epoch (as many negatives); ``len(self)`` is
        ``ceil(2 * positives_per_epoch / batch_size)``.
    max_shift_px : float
    seed : int
    """

    def __init__(self, images, is_positive, *, batch_size, positives_per_epoch, max_shift_px,
                 seed):
        super().__init__(images, batch_size=batch_size, n_images=2 * int(positives_per_epoch),
                         max_shift_px=max_shift_px, seed=seed)
        is_positive = np.asarray(is_positive, dtype=bool)
        self.positives = np.flatnonzero(is_positive)
        self.negatives = np.flatnonzero(~is_positive)
        if len(self.positives) == 0 or len(self.negatives) == 0:
            raise ValueError("a region needs at least one positive and one negative particle")

    def __getitem__(self, index):
        rng = self._rng(index)
        n_pos = self.batch_size // 2
        n_neg = self.batch_size - n_pos
        chosen = np.concatenate([rng.choice(self.positives, n_pos),
                                 rng.choice(self.negatives, n_neg)])
        x = self._augmented(chosen, rng)
        y = np.concatenate([np.ones(n_pos), np.zeros(n_neg)]).astype(np.float32)[:, None]
        return x, y


class SharedBatches(_AugmentedBatches):
    """Class-balanced, augmented batches with one-hot labels for the shared network.

    Each image is drawn by first choosing a region uniformly among those with training
    particles, then one of its particles.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
    labels : ndarray of shape (N,) int
        0-based region of each particle.
    n_regions : int
    batch_size : int
    samples_per_epoch : int
    max_shift_px : float
    seed : int
    targets : ndarray of shape (N, R), optional
        Per-particle training targets (e.g. softened labels, :func:`region_targets`);
        one-hot on ``labels`` by default.
    """

    def __init__(self, images, labels, *, n_regions, batch_size, samples_per_epoch,
                 max_shift_px, seed, targets=None):
        super().__init__(images, batch_size=batch_size, n_images=samples_per_epoch,
                         max_shift_px=max_shift_px, seed=seed)
        labels = np.asarray(labels, dtype=int)
        self.n_regions = int(n_regions)
        self.members = [np.flatnonzero(labels == r) for r in range(self.n_regions)]
        self.present = np.array([r for r in range(self.n_regions) if len(self.members[r])])
        if len(self.present) == 0:
            raise ValueError("no training particles")
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)

    def __getitem__(self, index):
        rng = self._rng(index)
        regions = rng.choice(self.present, self.batch_size)
        chosen = np.array([rng.choice(self.members[r]) for r in regions])
        x = self._augmented(chosen, rng)
        if self.targets is not None:
            return x, self.targets[chosen]
        y = np.zeros((self.batch_size, self.n_regions), np.float32)
        y[np.arange(self.batch_size), regions] = 1.0
        return x, y


def region_validation_data(images, is_positive):
    """Held-out images, labels and class-balancing weights for one region.

    Parameters
    ----------
    images : ndarray of shape (M, B, B)
        Preprocessed validation particles (not augmented).
    is_positive : ndarray of shape (M,) bool

    Returns
    -------
    (x (M, B, B, 1), y (M, 1), sample_weight (M,)) or None when ``M == 0``
        Positives and negatives weigh half each in total (mean weight 1).
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    m = len(is_positive)
    if m == 0:
        return None
    n_pos = is_positive.sum()
    n_neg = m - n_pos
    weights = np.ones(m, np.float32)
    if n_pos and n_neg:
        weights[is_positive] = m / (2.0 * n_pos)
        weights[~is_positive] = m / (2.0 * n_neg)
    return mask_images(images), is_positive.astype(np.float32)[:, None], weights


def region_targets(angles_deg, centres_deg, symmetry, *, label_sigma_deg=None) -> np.ndarray:
    """Training targets over the regions: one-hot, or softened towards neighbouring regions.

    Parameters
    ----------
    angles_deg : ndarray of shape (N, 3)
    centres_deg : ndarray of shape (R, 2)
    symmetry : str
    label_sigma_deg : float or None
        None or 0: one-hot on the nearest centre. Otherwise
        ``exp(-d_r**2 / (2 sigma**2))`` normalised to sum 1, ``d_r`` the angle to centre ``r``
        (symmetry-aware): a pose near a border is half in each region.

    Returns
    -------
    ndarray of shape (N, R) float32
    """
    from ..regions import region_distances_deg

    dist = region_distances_deg(angles_deg, centres_deg, symmetry)
    if not label_sigma_deg:
        y = np.zeros(dist.shape, np.float32)
        y[np.arange(len(dist)), np.argmin(dist, axis=1)] = 1.0
        return y
    logits = -0.5 * (dist / float(label_sigma_deg)) ** 2
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


class ProjectionBatches(_AugmentedBatches):
    """Batches of new images of the reference map (``training_source`` projections/both).

    Every image of every batch is drawn afresh by ``source`` (a
    :class:`~.synthetic.ProjectionSource`): random pose, particle CTF, shift and matched noise,
    then normalised like particles and masked. With ``particles`` (``training_source="both"``)
    a fraction ``particle_fraction`` of each batch are augmented aligned particles instead.

    Parameters
    ----------
    source : ProjectionSource
    centres_deg : ndarray of shape (R, 2)
    symmetry : str
    batch_size, n_images, seed : int
    label_sigma_deg : float or None
        See :func:`region_targets`.
    particles : (images (M, B, B), angles_deg (M, 3)) or None
        Preprocessed aligned particles and their (possibly partly wrong) poses.
    particle_fraction : float
    max_shift_px : float
        Augmentation shift of the particles, input pixels.
    noise_ramp_epochs : int
        Noise curriculum (:func:`~.synthetic.noise_ramp_scale`); 0: the full noise always.
    """

    def __init__(self, source, centres_deg, symmetry, *, batch_size, n_images, seed,
                 label_sigma_deg=None, particles=None, particle_fraction=0.0,
                 max_shift_px=0.0, noise_ramp_epochs=0):
        images = np.zeros((0, source.box, source.box), np.float32) if particles is None \
            else particles[0]
        super().__init__(images, batch_size=batch_size, n_images=n_images,
                         max_shift_px=max_shift_px, seed=seed)
        self.source = source
        self.noise_ramp_epochs = int(noise_ramp_epochs)
        self.centres = np.asarray(centres_deg, dtype=np.float64)
        self.symmetry = symmetry
        self.label_sigma_deg = label_sigma_deg
        self.particle_angles = None if particles is None else np.asarray(particles[1])
        self.n_particles = 0 if particles is None else int(round(
            float(particle_fraction) * self.batch_size))

    def __getitem__(self, index):
        rng = self._rng(index)
        n_synth = self.batch_size - self.n_particles
        images, angles = self.source.draw(
            rng, n_synth, noise_scale=noise_ramp_scale(self.epoch, self.noise_ramp_epochs))
        x = mask_images(normalise_input(images))
        if self.n_particles:
            chosen = rng.integers(0, len(self.images), self.n_particles)
            x = np.concatenate([x, self._augmented(chosen, rng)])
            angles = np.concatenate([angles, self.particle_angles[chosen]])
        y = region_targets(angles, self.centres, self.symmetry,
                           label_sigma_deg=self.label_sigma_deg)
        return x, y
