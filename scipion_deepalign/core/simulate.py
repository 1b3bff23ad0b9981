"""Built-in phantom and a particle simulator with known poses, shifts and CTFs.

A simulated particle is ``translate_images(apply_ctf(project(V, pose), CTF), -shift) + noise``
(conventions of :mod:`scipion_deepalign.core.geometry`), with white Gaussian noise whose variance
is ``signal variance / snr``. The signal variance is measured **over the whole set**: the
variance of all noiseless pixels inside the particle's circular mask (radius
:func:`signal_mask_radius_px`) pooled across particles, so every particle gets the same noise
level, as in a real data set.
"""
from __future__ import annotations

import numpy as np

from .ctf import apply_ctf, ctf_images
from .geometry import random_angles_deg
from .imageops import circular_mask, translate_images
from .particles import CTFParams, Particles, stack_image_names
from .projection import VolumeSpectrum, project
from .runtime.progress import advance

__all__ = ["make_phantom", "simulate_particles", "clean_particle_images", "model_images",
           "signal_mask_radius_px"]

_N_ATOMS = 300
_ATOM_CHUNK = 512


def _symmetry_operators(symmetry: str) -> np.ndarray:
    if str(symmetry).strip().lower() == "c1":
        return np.eye(3)[None]
    from .symmetry import symmetry_matrices  # noqa: PLC0415 (only needed for symmetric phantoms)
    return np.asarray(symmetry_matrices(symmetry), dtype=np.float64)


def _chain(rng: np.random.Generator, n: int, step: float, radius: float) -> np.ndarray:
    """Persistent random walk of ``n`` points kept inside a sphere of ``radius``."""
    pos = np.empty((n, 3))
    p = rng.normal(size=3) * radius * 0.2
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    for i in range(n):
        d = d + 0.9 * rng.normal(size=3)
        if np.linalg.norm(p + step * d) > radius:
            d -= 1.5 * p / np.linalg.norm(p)  # turn back inside
        d /= np.linalg.norm(d)
        p = p + step * d
        pos[i] = p
    return pos


def _render(box: int, centres: np.ndarray, sigmas: np.ndarray, weights: np.ndarray):
    """Sum of isotropic Gaussians, ``centres (M, 3)`` as map ``(x, y, z)`` from ``box // 2``."""
    grid = np.arange(box, dtype=np.float64) - box // 2
    vol = np.zeros((box, box * box), dtype=np.float64)
    for s in range(0, len(centres), _ATOM_CHUNK):
        c = centres[s:s + _ATOM_CHUNK]
        inv = 1.0 / (2.0 * sigmas[s:s + _ATOM_CHUNK, None] ** 2)
        gx = np.exp(-(grid[None] - c[:, 0, None]) ** 2 * inv) * weights[s:s + _ATOM_CHUNK, None]
        gy = np.exp(-(grid[None] - c[:, 1, None]) ** 2 * inv)
        gz = np.exp(-(grid[None] - c[:, 2, None]) ** 2 * inv)
        vol += gz.T @ (gy[:, :, None] * gx[:, None, :]).reshape(len(c), -1)
    return vol.reshape(box, box, box)


def make_phantom(box_px: int = 64, *, symmetry: str = "c1", seed: int = 0) -> np.ndarray:
    """A deterministic, macromolecule-like density map.

    ``_N_ATOMS`` Gaussian pseudo-atoms along a random compact chain plus three globular domains
    of different sizes at irregular positions, all within ``0.35 * box_px`` of the centre;
    clearly asymmetric for ``symmetry="c1"``. For another point group the asymmetric unit is
    moved off the symmetry axes and every pseudo-atom ``r`` is replicated at ``S @ r`` for the
    operators of :func:`scipion_deepalign.core.symmetry.symmetry_matrices`, so ``V(S r) = V(r)``.

    Parameters
    ----------
    box_px : int
        Side of the cube (>= 16).
    symmetry : str
        Point group (``"c1"``, ``"c4"``, ``"d2"``, ``"o"``, ...).
    seed : int

    Returns
    -------
    ndarray of shape (box_px, box_px, box_px), float32
        Indexed ``[z, y, x]``, non-negative, maximum 1.
    """
    if int(box_px) != box_px or box_px < 16:
        raise ValueError(f"box_px must be an integer >= 16, got {box_px!r}")
    box = int(box_px)
    ops = _symmetry_operators(symmetry)
    rng = np.random.default_rng(seed)
    outer = 0.35 * box
    atom_sigma = max(0.8, 0.022 * box)
    atoms = _chain(rng, _N_ATOMS, step=0.045 * box, radius=0.26 * box)
    dom_sigma = np.array([0.085, 0.06, 0.04]) * box
    dom_dirs = rng.normal(size=(3, 3))
    dom_dirs /= np.linalg.norm(dom_dirs, axis=1, keepdims=True)
    dom_centres = dom_dirs * (outer - 2.0 * dom_sigma)[:, None] * np.array([[0.55], [0.8], [1.0]])
    centres = np.concatenate([atoms, dom_centres])
    sigmas = np.concatenate([np.full(len(atoms), atom_sigma), dom_sigma])
    weights = np.concatenate([np.ones(len(atoms)), [1.5, 2.0, 2.5]])
    if len(ops) > 1:
        # Shrink the unit and move it off every axis so that the copies stay distinct.
        offset = np.array([0.62, 0.41, 0.27])
        offset *= 0.16 * box / np.linalg.norm(offset)
        centres = 0.45 * centres + offset
        sigmas = np.maximum(0.8, 0.7 * sigmas)
        centres = np.einsum("gij,mj->gmi", ops, centres).reshape(-1, 3)
        sigmas = np.tile(sigmas, len(ops))
        weights = np.tile(weights, len(ops))
    vol = _render(box, centres, sigmas, weights)
    return (vol / vol.max()).astype(np.float32)


def signal_mask_radius_px(volume) -> float:
    """Radius of the particle: farthest voxel above 10 % of the maximum, plus 2 px.

    Clipped to ``[2, B // 2]``; used as the mask of the signal variance in
    :func:`simulate_particles`.
    """
    vol = np.asarray(volume)
    box = vol.shape[-1]
    grid = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(grid, grid, grid, indexing="ij")
    strong = vol > 0.1 * vol.max()
    if not strong.any():  # empty or non-positive map: the inscribed circle
        return float(box // 2)
    radius = np.sqrt(zz[strong] ** 2 + yy[strong] ** 2 + xx[strong] ** 2).max() + 2.0
    return float(np.clip(radius, 2.0, box // 2))


def clean_particle_images(volume, particles: Particles) -> np.ndarray:
    """Noiseless particle images from their recorded poses, shifts and CTFs.

    ``translate_images(apply_ctf(project(volume, angles), ctf_images(...)), -shifts)``; CTF and
    shift are skipped when absent from ``particles``.

    Parameters
    ----------
    volume : ndarray of shape (B, B, B) or VolumeSpectrum
    particles : Particles
        With ``angles_deg``.

    Returns
    -------
    ndarray of shape (N, B, B), float32
    """
    if particles.angles_deg is None:
        raise ValueError("particles have no angles_deg to project at")
    box = volume.box_px if isinstance(volume, VolumeSpectrum) else np.shape(volume)[-1]
    weight = (None if particles.ctf is None
              else ctf_images(box, particles.pixel_size_a, particles.ctf))
    return model_images(volume, particles.angles_deg, ctf_weight=weight,
                        shifts_px=particles.shifts_px)


def model_images(volume, angles_deg, *, ctf_weight=None, shifts_px=None) -> np.ndarray:
    """What a particle of ``volume`` at each pose looks like without noise: the projection,
    times the CTF ``ctf_weight`` (any weight in Fourier space: the CTF, its absolute value),
    translated by ``-shifts_px`` (RELION origins). The one statement of the image model that
    :func:`clean_particle_images` and the class decision at one pose
    (:mod:`.classes.common_pose`) compare particles with.

    Parameters
    ----------
    volume : ndarray of shape (B, B, B) or VolumeSpectrum
    angles_deg : ndarray of shape (N, 3)
    ctf_weight : ndarray of shape (N, B, B // 2 + 1), optional
    shifts_px : ndarray of shape (N, 2), optional

    Returns
    -------
    ndarray of shape (N, B, B), float32
    """
    images = project(volume, angles_deg)
    if ctf_weight is not None:
        images = apply_ctf(images, ctf_weight)
    if shifts_px is not None:
        images = translate_images(images, -np.asarray(shifts_px))
    return images


def simulate_particles(volume, n: int, *, pixel_size_a: float, snr: float = 0.1,
                       ctf: bool = True, max_shift_px: float = 0.0, seed: int = 0,
                       angles_deg=None, defocus_range_a=(10000.0, 30000.0), progress=None):
    """Noisy particle images of ``volume`` with known poses, shifts and CTFs.

    Parameters
    ----------
    volume : ndarray of shape (B, B, B)
    n : int
        Number of particles.
    pixel_size_a : float
        Pixel size in Angstrom (used by the CTF and recorded).
    snr : float
        Signal-to-noise ratio, ``var(signal) / var(noise)``; signal variance pooled over the set
        inside the disc of radius :func:`signal_mask_radius_px` (see the module docstring).
        ``np.inf`` gives noiseless images.
    ctf : bool
        Apply a per-particle CTF: 300 kV, Cs 2.7 mm, Q 0.1, mean defocus uniform in
        ``defocus_range_a``, astigmatism ``|U - V|`` uniform in [0, 600] Angstrom at a uniform
        angle.
    max_shift_px : float
        Shifts uniform in the disc of this radius (RELION origins, pixels).
    seed : int
        Everything random comes from ``np.random.default_rng(seed)``.
    angles_deg : array_like of shape (n, 3), optional
        Poses; uniform over SO(3) (:func:`~.geometry.random_angles_deg`) by default.
    defocus_range_a : (float, float)
    progress : callable, optional
        Called with the number of particles just projected (:mod:`.progress`).

    Returns
    -------
    images : ndarray of shape (n, B, B), float32
    particles : Particles
        True poses, shifts and CTFs; image names ``"000001@particles.mrcs"``, ...
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not snr > 0:
        raise ValueError(f"snr must be > 0, got {snr!r}")
    if max_shift_px < 0:
        raise ValueError(f"max_shift_px must be >= 0, got {max_shift_px!r}")
    n = int(n)
    vol = np.asarray(volume, dtype=np.float32)
    box = vol.shape[-1]
    rng = np.random.default_rng(seed)
    if angles_deg is None:
        angles = random_angles_deg(n, rng)
    else:
        angles = np.asarray(angles_deg, dtype=np.float64)
        if angles.shape != (n, 3):
            raise ValueError(f"angles_deg must have shape ({n}, 3), got {angles.shape}")
    radius = max_shift_px * np.sqrt(rng.uniform(size=n))
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    shifts = np.stack([radius * np.cos(phi), radius * np.sin(phi)], axis=1)
    ctf_params = None
    if ctf:
        lo, hi = defocus_range_a
        if not 0 < lo <= hi:
            raise ValueError(f"defocus_range_a must be (low, high) with 0 < low <= high, "
                             f"got {defocus_range_a!r}")
        mean_df = rng.uniform(lo, hi, size=n)
        astig = rng.uniform(0.0, 600.0, size=n)
        ctf_params = CTFParams(defocus_u_a=mean_df + astig / 2, defocus_v_a=mean_df - astig / 2,
                               defocus_angle_deg=rng.uniform(0.0, 180.0, size=n),
                               voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
    particles = Particles(image_names=stack_image_names(n, "particles.mrcs"),
                          pixel_size_a=float(pixel_size_a), box_px=box, angles_deg=angles,
                          shifts_px=shifts, ctf=ctf_params)
    spectrum, chunk = VolumeSpectrum(vol), max(1, min(1024, -(-n // 20)))
    pieces = []
    for start in range(0, n, chunk):  # in chunks, for progress; each image on its own
        part = particles.subset(slice(start, start + chunk))
        pieces.append(clean_particle_images(spectrum, part))
        advance(progress, len(pieces[-1]))
    clean = np.concatenate(pieces)
    if np.isinf(snr):
        return clean, particles
    mask = circular_mask(box, signal_mask_radius_px(vol))
    noise_std = np.sqrt(clean[:, mask].var(dtype=np.float64) / snr)
    noise = rng.normal(0.0, noise_std, size=clean.shape).astype(np.float32)
    return clean + noise, particles
