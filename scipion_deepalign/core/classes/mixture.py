"""Simulated mixtures: particles of K maps at known poses, shifts, CTFs and classes.

A particle of class ``k`` is made as :func:`~..simulate.simulate_particles` makes one of map
``k`` (conventions of :mod:`..geometry`); the noise is white and Gaussian with one variance for
the whole set, ``var(signal) / snr``, the signal variance pooled over **every** class's
noiseless images inside the widest map's particle disc, so that the classes differ only by
their maps, as in a real data set.
"""
from __future__ import annotations

import numpy as np

from ..imageops import circular_mask
from ..simulate import clean_particle_images, signal_mask_radius_px, simulate_particles

__all__ = ["simulate_mixture"]


def simulate_mixture(volumes, n: int, *, pixel_size_a: float, fractions=None,
                     snr: float = 0.1, ctf: bool = True, max_shift_px: float = 0.0,
                     seed: int = 0):
    """Noisy particles of several maps in known proportions.

    Parameters
    ----------
    volumes : sequence of ndarray of shape (B, B, B)
        The map of each class (K >= 1), on one box.
    n : int
        Number of particles.
    pixel_size_a : float
    fractions : sequence of float, optional
        Probability of each class (summing to 1); default equal. Classes are drawn at random.
    snr, ctf, max_shift_px, seed
        As in :func:`~..simulate.simulate_particles` (one seed for poses, CTFs, shifts,
        classes and noise).

    Returns
    -------
    images : ndarray of shape (n, B, B), float32
    particles : Particles
        True poses, shifts and CTFs.
    classes : ndarray of shape (n,) int64
        0-based true class of each particle.
    """
    volumes = [np.asarray(v, dtype=np.float32) for v in volumes]
    k = len(volumes)
    if k < 1 or any(v.shape != volumes[0].shape for v in volumes):
        raise ValueError(f"volumes must be one or more maps of one shape, got "
                         f"{[v.shape for v in volumes]}")
    fractions = np.full(k, 1.0 / k) if fractions is None else np.asarray(fractions, float)
    if fractions.shape != (k,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1):
        raise ValueError(f"fractions must be {k} non-negative numbers adding up to 1, got "
                         f"{fractions.tolist()}")
    if not snr > 0:
        raise ValueError(f"snr must be > 0, got {snr!r}")
    clean, particles = simulate_particles(volumes[0], n, pixel_size_a=pixel_size_a,
                                          snr=np.inf, ctf=ctf, max_shift_px=max_shift_px,
                                          seed=seed)
    rng = np.random.default_rng([seed, 1])
    classes = rng.choice(k, size=len(clean), p=fractions).astype(np.int64)
    for c in range(1, k):
        rows = np.flatnonzero(classes == c)
        if len(rows):
            clean[rows] = clean_particle_images(volumes[c], particles.subset(rows))
    if np.isinf(snr):
        return clean, particles, classes
    radius = max(signal_mask_radius_px(v) for v in volumes)
    mask = circular_mask(clean.shape[-1], radius)
    noise_std = np.sqrt(clean[:, mask].var(dtype=np.float64) / snr)
    noise = rng.normal(0.0, noise_std, size=clean.shape).astype(np.float32)
    return clean + noise, particles, classes
