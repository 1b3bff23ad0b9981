"""Labelled training images made from the reference map (``training_source="projections"``).

The alignment needs a reference map anyway; projected at random poses it gives as many
labelled training images as the network can use, each one new. An image is made on the
network's input box (the map Fourier-cropped to it, so the projection holds exactly the
frequencies a Fourier-cropped particle holds)::

    image = translate(CTF * project(V_small, pose), -shift) * a + noise

* **pose**: uniform over SO(3) (:func:`~scipion_deepalign.core.geometry.random_angles_deg`),
  so the in-plane rotation is part of the pose and needs no image rotation; the label is the
  pose's region (symmetry-aware).
* **CTF**: the parameters of a particle drawn at random from the data set (defocus,
  astigmatism, voltage, Cs, amplitude contrast of the particles themselves).
* **shift**: uniform in the disc of ``max_shift_px`` (input pixels).
* **noise**: Gaussian, coloured by the noise power spectrum measured on the particles'
  background (:func:`estimate_noise_model`), and ``a`` sets the signal-to-noise ratio to the
  one measured on the particles (variance inside the particle disc minus the noise variance).

The images are then normalised exactly as particles are (background mean 0, std 1,
:func:`~.data.normalise_input`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ctf import ctf_half_images
from ..geometry import euler_to_matrix, random_angles_deg
from ..imageops import circular_mask, fourier_crop, fourier_crop_volume
from ..projection import VolumeSpectrum

__all__ = ["NoiseModel", "estimate_noise_model", "ProjectionSource", "noise_ramp_scale",
           "NOISE_SAMPLE", "noise_sample_rows"]

#: particles whose images measure the noise (the projections source needs no more of them)
NOISE_SAMPLE = 2000
_SIGNAL_SAMPLE = 512  # projections used to measure the clean signal variance
_MIN_BACKGROUND = 0.15  # least fraction of the box used as background
#: noise amplitude (fraction of the measured one) at the first epoch of the noise curriculum
NOISE_RAMP_START = 0.1


def noise_ramp_scale(epoch: int, ramp_epochs: int, start: float = NOISE_RAMP_START) -> float:
    """Noise amplitude factor of epoch ``epoch`` (0-based) in a curriculum of ``ramp_epochs``.

    ``start ** (1 - epoch / ramp_epochs)``: from ``start`` at epoch 0, geometrically (the
    SNR grows by the same factor every epoch) to 1 at ``ramp_epochs`` and after; always 1
    when ``ramp_epochs`` is 0.
    """
    if ramp_epochs <= 0 or epoch >= ramp_epochs:
        return 1.0
    return float(start ** (1.0 - epoch / float(ramp_epochs)))


@dataclass
class NoiseModel:
    """Noise of the particles on the network's input box.

    Attributes
    ----------
    psd : ndarray of shape (B, B // 2 + 1)
        Noise power per pixel at each frequency (``np.fft.rfft2`` layout), radially
        averaged; its mean is the noise variance per pixel.
    signal_variance : float
        Variance of the signal inside the particle disc (same units), >= 0.
    mask_radius_px : float
        Radius of the particle disc used for the measurement.
    """

    psd: np.ndarray
    signal_variance: float
    mask_radius_px: float

    @property
    def noise_variance(self) -> float:
        return float(self.psd.mean())

    @property
    def snr(self) -> float:
        """Measured ``var(signal) / var(noise)`` inside the particle disc."""
        return self.signal_variance / self.noise_variance


def _radial_index(box: int) -> np.ndarray:
    ky = np.fft.fftfreq(box) * box
    kx = np.arange(box // 2 + 1)
    return np.rint(np.hypot(ky[:, None], kx[None, :])).astype(int)


def estimate_noise_model(images, *, mask_radius_px: float) -> NoiseModel:
    """Measure the noise spectrum and the signal-to-noise ratio of particle images.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
        Particles on the network's input box, not normalised (the first
        :data:`NOISE_SAMPLE` are used).
    mask_radius_px : float
        Radius of the disc that holds the particle (shifts included); the pixels outside it
        are taken as noise. When that leaves less than 15 % of the box, the corners outside
        ``B/2 - 1`` are used.

    Returns
    -------
    NoiseModel
    """
    x = np.asarray(images, dtype=np.float64)[:NOISE_SAMPLE]
    if x.ndim != 3 or x.shape[1] != x.shape[2] or len(x) == 0:
        raise ValueError(f"particle images must have shape (N, B, B), got {x.shape}")
    box = x.shape[-1]
    inside = circular_mask(box, mask_radius_px)
    background = ~inside
    if background.mean() < _MIN_BACKGROUND:
        background = ~circular_mask(box, box / 2 - 1)
    x = x - x[:, background].mean(axis=1)[:, None, None]
    masked = x * background
    power = (np.abs(np.fft.rfft2(masked)) ** 2).mean(axis=0) / background.sum()
    ring = _radial_index(box)
    profile = np.bincount(ring.ravel(), power.ravel()) / np.bincount(ring.ravel())
    psd = profile[ring]
    psd[0, 0] = profile[1] if len(profile) > 1 else psd[0, 0]  # DC: mean removed
    total = float(np.var(x[:, inside]))
    signal = max(total - float(psd.mean()), 0.0)
    return NoiseModel(psd=psd.astype(np.float32), signal_variance=signal,
                      mask_radius_px=float(mask_radius_px))


def noise_sample_rows(n_particles: int) -> np.ndarray:
    """0-based rows of the particles whose images measure the noise: at most
    :data:`NOISE_SAMPLE`, spread evenly over the set (so over its micrographs)."""
    n = int(n_particles)
    return np.unique(np.linspace(0, n - 1, min(n, NOISE_SAMPLE)).round().astype(int)) \
        if n > 0 else np.zeros(0, dtype=int)


def noise_model_of_particles(images, *, input_box_px: int, mask_radius_px: float) -> NoiseModel:
    """:func:`estimate_noise_model` of full-size particles Fourier-cropped to the input box,
    on the spread sample of :func:`noise_sample_rows` (all of them up to NOISE_SAMPLE)."""
    x = np.asarray(images[noise_sample_rows(len(images))], dtype=np.float32)
    if x.shape[-1] != input_box_px:
        x = fourier_crop(x, int(input_box_px))
    return estimate_noise_model(x, mask_radius_px=mask_radius_px)


class ProjectionSource:
    """Draws noisy, CTF-modulated, shifted projections of the reference map at random poses.

    Parameters
    ----------
    volume : ndarray of shape (B, B, B)
        Reference map on the particles' box and pixel size.
    input_box_px : int
        Side of the network input; the map is Fourier-cropped to it.
    input_pixel_size_a : float
        Pixel size of the network input.
    noise : NoiseModel
        Measured on the particles (:func:`noise_model_of_particles`).
    ctf : CTFParams or None
        CTFs of the particles, drawn from at random; None: no CTF.
    max_shift_px : float
        Shifts uniform in the disc of this radius, input pixels.
    """

    def __init__(self, volume, *, input_box_px: int, input_pixel_size_a: float,
                 noise: NoiseModel, ctf=None, max_shift_px: float = 0.0):
        vol = np.asarray(volume, dtype=np.float32)
        if vol.ndim != 3 or len(set(vol.shape)) != 1:
            raise ValueError(f"the reference map must be cubic, got shape {vol.shape}")
        self.box = int(input_box_px)
        if vol.shape[0] != self.box:
            vol = fourier_crop_volume(vol, self.box)
        self.spectrum = VolumeSpectrum(vol)
        self.pixel_size_a = float(input_pixel_size_a)
        self.ctf = ctf
        self.max_shift_px = float(max_shift_px)
        self.noise = noise
        self._amplitude = np.sqrt(noise.psd).astype(np.float32)
        clean, _ = self._clean(np.random.default_rng(12345), _SIGNAL_SAMPLE)
        inside = circular_mask(self.box, noise.mask_radius_px)
        clean_var = float(np.var(clean[:, inside], dtype=np.float64))
        self.scale = (np.sqrt(noise.signal_variance / clean_var) if clean_var > 0 else 0.0)

    def _clean(self, rng, n):
        angles = random_angles_deg(n, rng)
        radius = self.max_shift_px * np.sqrt(rng.uniform(size=n))
        phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
        shifts = np.stack([radius * np.cos(phi), radius * np.sin(phi)], axis=1)
        # image = translate(projection, -shift): the projector's shifts do exactly that
        images = self.spectrum.project(euler_to_matrix(angles), shifts)
        if self.ctf is not None:
            pick = rng.integers(0, len(self.ctf), size=n)
            ctf = ctf_half_images(self.box, self.pixel_size_a, self.ctf.subset(pick))
            images = np.fft.irfft2(np.fft.rfft2(images) * ctf,
                                   s=(self.box, self.box))
        return np.asarray(images, dtype=np.float32), angles

    def draw(self, rng: np.random.Generator, n: int, *, noise_scale: float = 1.0):
        """``n`` new training images (not normalised) and their poses; ``noise_scale``
        multiplies the noise amplitude (the noise curriculum, :func:`noise_ramp_scale`).

        Returns
        -------
        images : ndarray of shape (n, B, B) float32
        angles_deg : ndarray of shape (n, 3)
        """
        clean, angles = self._clean(rng, int(n))
        white = rng.standard_normal(clean.shape).astype(np.float32)
        noise = np.fft.irfft2(np.fft.rfft2(white) * self._amplitude, s=clean.shape[-2:])
        return (self.scale * clean + float(noise_scale) * noise).astype(np.float32), angles
