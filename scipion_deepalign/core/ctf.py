"""Contrast transfer function: RELION's formula and sign, and the usual corrections.

For spatial frequency ``s`` (1/Angstrom) at azimuth ``theta`` (angle from the image x axis),

``CTF = -sin(chi)``, ``chi = -pi * lambda * dF(theta) * s^2 + pi / 2 * Cs * lambda^3 * s^4
- phase_shift - atan(Q / sqrt(1 - Q^2))``,

with ``dF(theta) = (U + V) / 2 + (U - V) / 2 * cos(2 * (theta - defocus_angle))`` (positive
underfocus, Angstrom), ``Cs`` converted from mm to Angstrom and the relativistic electron
wavelength ``lambda = 12.2643247 / sqrt(V * (1 + 0.978466e-6 * V))`` Angstrom for ``V`` volts.
At ``s = 0`` the CTF equals the amplitude contrast ``Q`` (positive: density is positive as in
RELION's images). Images are in ``np.fft.fft2`` layout (DC at ``[0, 0]``), ``x`` on the last axis.
"""
from __future__ import annotations

import numpy as np

from .particles import CTFParams

__all__ = [
    "electron_wavelength_a",
    "ctf_images",
    "ctf_half_images",
    "ctf_at_frequencies",
    "apply_ctf",
]


def electron_wavelength_a(voltage_kv):
    """Relativistic electron wavelength in Angstrom for acceleration voltage(s) in kV.

    ``voltage_kv`` is a float or an array (one wavelength per element, same shape).
    """
    if not np.all(np.asarray(voltage_kv) > 0):
        raise ValueError(f"voltage_kv must be > 0, got {voltage_kv!r}")
    volts = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    if volts.ndim == 0:
        return float(12.2643247 / np.sqrt(volts * (1.0 + volts * 0.978466e-6)))
    return 12.2643247 / np.sqrt(volts * (1.0 + volts * 0.978466e-6))


def ctf_images(box_px: int, pixel_size_a: float, ctf: CTFParams) -> np.ndarray:
    """CTF of every particle of ``ctf`` on the Fourier grid of a ``box_px`` image.

    Parameters
    ----------
    box_px : int
    pixel_size_a : float
        Pixel size in Angstrom.
    ctf : CTFParams
        N particles' parameters; each particle gets its own voltage, Cs and amplitude
        contrast when those are arrays (particles of several optics groups).

    Returns
    -------
    ndarray of shape (N, box_px, box_px), float32
        In ``np.fft.fft2`` layout (DC at ``[0, 0]``); real and even in frequency.
    """
    return _ctf_grid(box_px, pixel_size_a, ctf, columns=int(box_px))


def ctf_half_images(box_px: int, pixel_size_a: float, ctf: CTFParams) -> np.ndarray:
    """:func:`ctf_images` in ``np.fft.rfft2`` layout ``(N, B, B // 2 + 1)``: the same values
    at the columns an ``rfft2`` keeps, computed there only (half the work)."""
    return _ctf_grid(box_px, pixel_size_a, ctf, columns=int(box_px) // 2 + 1)


def _ctf_grid(box_px, pixel_size_a, ctf, *, columns: int) -> np.ndarray:
    """The CTFs on the first ``columns`` columns of the ``fft2`` grid of a ``box_px`` image."""
    if int(box_px) != box_px or box_px < 1:
        raise ValueError(f"box_px must be a positive integer, got {box_px!r}")
    if not pixel_size_a > 0:
        raise ValueError(f"pixel_size_a must be > 0, got {pixel_size_a!r}")
    freq = np.fft.fftfreq(int(box_px), d=pixel_size_a)
    sx, sy = np.meshgrid(freq[:columns], freq)
    return ctf_at_frequencies(sx.ravel(), sy.ravel(), ctf).reshape(
        len(ctf), int(box_px), columns).astype(np.float32)


def ctf_at_frequencies(freq_x, freq_y, ctf: CTFParams) -> np.ndarray:
    """CTF of every particle of ``ctf`` at the spatial frequencies ``(freq_x, freq_y)``.

    Parameters
    ----------
    freq_x, freq_y : ndarray of shape (S,)
        Frequencies in 1/Angstrom along the image x and y axes (e.g. only the Fourier
        samples a reconstruction keeps, rather than a whole image grid).
    ctf : CTFParams

    Returns
    -------
    ndarray of shape (N, S), float64
    """
    sx, sy = np.asarray(freq_x, np.float64), np.asarray(freq_y, np.float64)
    q = ctf.per_particle("amplitude_contrast")[:, None]
    if not np.all((q >= 0) & (q < 1)):
        raise ValueError(f"amplitude_contrast must be in [0, 1), got {ctf.amplitude_contrast}")
    lam = electron_wavelength_a(ctf.per_particle("voltage_kv"))[:, None]
    cs_a = ctf.per_particle("cs_mm")[:, None] * 1e7
    s2 = sx ** 2 + sy ** 2
    safe = np.where(s2 > 0, s2, 1.0)
    # cos(2 (theta - a)) = cos(2 theta) cos(2 a) + sin(2 theta) sin(2 a), theta = atan2(sy, sx)
    cos2t = np.where(s2 > 0, (sx ** 2 - sy ** 2) / safe, 1.0)
    sin2t = np.where(s2 > 0, 2.0 * sx * sy / safe, 0.0)
    ang = 2.0 * np.deg2rad(ctf.defocus_angle_deg)[:, None]
    u, v = ctf.defocus_u_a[:, None], ctf.defocus_v_a[:, None]
    defocus = 0.5 * (u + v) + 0.5 * (u - v) * (cos2t * np.cos(ang) + sin2t * np.sin(ang))
    chi = (-np.pi * lam * defocus * s2 + 0.5 * np.pi * cs_a * lam ** 3 * s2 ** 2
           - np.arctan(q / np.sqrt(1.0 - q * q)))
    if ctf.phase_shift_deg is not None:
        chi = chi - np.deg2rad(ctf.phase_shift_deg)[:, None]
    return -np.sin(chi)


def _check_pair(images, ctf_imgs):
    img = np.asarray(images)
    if img.ndim == 2:
        img = img[None]
    c = np.asarray(ctf_imgs)
    if c.ndim == 2:
        c = c[None]
    if img.ndim != 3 or c.shape[-2:] != img.shape[-2:] or len(c) not in (1, len(img)):
        raise ValueError(f"ctf_imgs of shape {np.shape(ctf_imgs)} do not match images of shape "
                         f"{np.shape(images)}")
    return img.astype(np.float32, copy=False), c


def _filter(images, weights) -> np.ndarray:
    spec = np.fft.fft2(images)
    return np.fft.ifft2(spec * weights).real.astype(np.float32)


def apply_ctf(images, ctf_imgs) -> np.ndarray:
    """Multiply the spectra of images by their CTFs (what the microscope does).

    The CTF multiplies the box's own discrete spectrum, a circular filter of the box (as
    ``relion_project`` applies it); :mod:`scipion_deepalign.core.judge.reconstruct` undoes
    it at those same samples.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)
    ctf_imgs : ndarray of shape (N, B, B) or (B, B)
        From :func:`ctf_images`.

    Returns
    -------
    ndarray of shape (N, B, B), float32
    """
    img, c = _check_pair(images, ctf_imgs)
    return _filter(img, c)
