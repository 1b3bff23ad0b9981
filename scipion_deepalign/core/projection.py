"""Fourier-slice projector and the downsampling rule.

The projection of a map ``V`` at pose ``A`` is ``p(x, y) = sum_z V(A.T @ (x, y, z))`` (see
:mod:`scipion_deepalign.core.geometry`), in voxel units (line integrals in voxels). It is
computed by the central-slice theorem: the map is zero-padded (``padding`` times), pre-divided by
the real-space apodisation of trilinear interpolation (``sinc^2`` per axis), Fourier transformed
once; each projection is the inverse 2D transform of the half central slice sampled at
``A.T @ (kx, ky, 0)``, cropped back to the box.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft

from .geometry import euler_to_matrix
from .particles import positive_float
from .runtime.backend import cpu_threads
from .runtime.compiled import compiled

__all__ = ["project", "downsampled_geometry", "nyquist_reaches", "VolumeSpectrum",
           "DownsamplingPreview", "downsampling_preview", "resolution_for_box"]

# Bytes of working memory per sample of a half slice (the slice, its shift ramp, its inverse
# transform and the crop).
_BYTES_PER_SAMPLE = 48


@compiled
def _sample_slices(spectrum, mats, out):  # pragma: no cover - compiled
    """Half central slices ``out[i, y, x]`` of the centred spectrum (P, P, P) at
    ``A_i.T @ (kx, ky, 0)``, trilinear; zero where a neighbour falls outside.

    Rows ``y`` follow ``np.fft.fftfreq`` (ky = y for y < P/2, else y - P), columns kx = x.
    """
    p = spectrum.shape[0]
    half = np.float32(p // 2)
    one = np.float32(1.0)
    for i in range(mats.shape[0]):
        m = mats[i]
        for y in range(out.shape[1]):
            ky = np.float32(y if y < (p + 1) // 2 else y - p)
            for x in range(out.shape[2]):
                kx = np.float32(x)
                qx = m[0, 0] * kx + m[1, 0] * ky + half
                qy = m[0, 1] * kx + m[1, 1] * ky + half
                qz = m[0, 2] * kx + m[1, 2] * ky + half
                fx, fy, fz = np.floor(qx), np.floor(qy), np.floor(qz)
                ix, iy, iz = int(fx), int(fy), int(fz)
                if (ix < 0 or iy < 0 or iz < 0 or ix >= p - 1 or iy >= p - 1
                        or iz >= p - 1):
                    out[i, y, x] = 0
                    continue
                tx, ty, tz = qx - fx, qy - fy, qz - fz
                ux, uy, uz = one - tx, one - ty, one - tz
                c = spectrum  # a short name for the eight neighbours
                v = (uz * (uy * (ux * c[iz, iy, ix] + tx * c[iz, iy, ix + 1])
                           + ty * (ux * c[iz, iy + 1, ix] + tx * c[iz, iy + 1, ix + 1]))
                     + tz * (uy * (ux * c[iz + 1, iy, ix] + tx * c[iz + 1, iy, ix + 1])
                             + ty * (ux * c[iz + 1, iy + 1, ix]
                                     + tx * c[iz + 1, iy + 1, ix + 1])))
                out[i, y, x] = v


class VolumeSpectrum:
    """Padded, apodisation-corrected, centred 3D spectrum of a map, reusable for many projections.

    Parameters
    ----------
    volume : ndarray of shape (B, B, B)
        Indexed ``[z, y, x]``, centre at ``B // 2``.
    padding : int
        Zero-padding factor (2 by default).
    """

    def __init__(self, volume, *, padding: int = 2):
        vol = np.asarray(volume, dtype=np.float32)
        if vol.ndim != 3 or len(set(vol.shape)) != 1:
            raise ValueError(f"volume must be cubic (B, B, B), got {vol.shape}")
        if int(padding) != padding or padding < 1:
            raise ValueError(f"padding must be a positive integer, got {padding!r}")
        box = vol.shape[0]
        pad_box = int(padding) * box
        pad_box += pad_box % 2  # even padded box: simple Nyquist handling
        self.box_px = box
        self.pad_box_px = pad_box
        start = pad_box // 2 - box // 2
        padded = np.zeros((pad_box,) * 3, dtype=np.float32)
        padded[start:start + box, start:start + box, start:start + box] = vol
        # Trilinear interpolation of the spectrum multiplies real space by sinc^2 per axis.
        r = (np.arange(pad_box) - pad_box // 2) / pad_box
        apod = np.sinc(r).astype(np.float32) ** 2
        padded /= apod[:, None, None] * apod[None, :, None] * apod[None, None, :]
        spec = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(padded)))
        self.spectrum = spec.astype(np.complex64)

    def slices(self, matrices, shifts_px=None) -> np.ndarray:
        """Half central slices in ``np.fft.rfft2`` layout (origin at the padded image centre).

        Parameters
        ----------
        matrices : ndarray of shape (N, 3, 3)
        shifts_px : ndarray of shape (N, 2), optional

        Returns
        -------
        ndarray of shape (N, P, P // 2 + 1), complex64
        """
        p = self.pad_box_px
        m = np.ascontiguousarray(matrices, dtype=np.float32).reshape(-1, 3, 3)
        out = np.empty((len(m), p, p // 2 + 1), dtype=np.complex64)
        _sample_slices(self.spectrum, m, out)
        if shifts_px is not None:
            ky = (np.fft.fftfreq(p) * p).astype(np.float32)
            kx = np.arange(p // 2 + 1, dtype=np.float32)
            sh = np.asarray(shifts_px, dtype=np.float32)
            # image = translate(projection, -shift): multiply by exp(+2 pi i k.shift / P),
            # the product of a ramp along x and one along y (two small exponentials)
            ramp_x = np.exp((2j * np.pi / p) * sh[:, 0, None] * kx).astype(np.complex64)
            ramp_y = np.exp((2j * np.pi / p) * sh[:, 1, None] * ky).astype(np.complex64)
            out *= ramp_y[:, :, None]
            out *= ramp_x[:, None, :]
        return out

    def project(self, matrices, shifts_px=None) -> np.ndarray:
        """Projections (N, B, B) float32 for rotation matrices (N, 3, 3)."""
        p, b = self.pad_box_px, self.box_px
        img = scipy.fft.irfft2(self.slices(matrices, shifts_px), s=(p, p))  # float32
        # the centred box of the padded image, origin at index 0: rows and columns -b/2..b/2-1
        crop = (np.arange(b) - b // 2) % p
        return img[:, crop[:, None], crop[None, :]]


def project(volume, angles_deg, *, shifts_px=None, batch_size: int | None = None,
            padding: int = 2, memory_mb: float = 256.0) -> np.ndarray:
    """Projections of a map at the given poses (Fourier-slice, trilinear, apodisation-corrected).

    Parameters
    ----------
    volume : ndarray of shape (B, B, B) or VolumeSpectrum
        Map indexed ``[z, y, x]``, centre at ``B // 2``. Pass a :class:`VolumeSpectrum` to reuse
        the padded transform across calls.
    angles_deg : array_like of shape (N, 3) or (3,)
        ``(rot, tilt, psi)`` in degrees (convention of :mod:`scipion_deepalign.core.geometry`).
    shifts_px : array_like of shape (N, 2), optional
        RELION origins ``(shift_x, shift_y)`` in pixels: the result is the projection translated
        by ``-shift`` (as a particle image is). The shift is applied in the padded box, so
        content does not wrap around the edges as it does with
        :func:`~scipion_deepalign.core.imageops.translate_images`.
    batch_size : int, optional
        Projections computed at once; by default chosen to keep the work arrays within
        ``memory_mb``.
    padding : int
        Zero-padding factor of the map before its Fourier transform.
    memory_mb : float
        Working-memory budget used to pick ``batch_size`` (shared by the threads, each
        projecting a batch).

    Returns
    -------
    ndarray of shape (N, B, B), float32
        Line integrals in voxel units (``sum_z`` of voxel values).
    """
    spec = volume if isinstance(volume, VolumeSpectrum) else VolumeSpectrum(volume,
                                                                            padding=padding)
    ang = np.asarray(angles_deg, dtype=np.float64)
    if ang.ndim == 1:
        ang = ang[None]
    if ang.ndim != 2 or ang.shape[1] != 3:
        raise ValueError(f"angles_deg must have shape (N, 3), got {np.shape(angles_deg)}")
    n = len(ang)
    sh = None
    if shifts_px is not None:
        sh = np.asarray(shifts_px, dtype=np.float64)
        if sh.ndim == 1:
            sh = sh[None]
        if sh.shape != (n, 2):
            raise ValueError(f"shifts_px must have shape ({n}, 2), got {np.shape(shifts_px)}")
    threads = max(1, min(cpu_threads(), n))
    if batch_size is None:
        p = spec.pad_box_px
        per_image = p * (p // 2 + 1) * _BYTES_PER_SAMPLE + p * p * 8
        # the threads hold a batch each: the budget is shared between them
        batch_size = max(1, int(memory_mb * 2 ** 20 // (per_image * threads)))
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    mats = euler_to_matrix(ang)
    out = np.empty((n, spec.box_px, spec.box_px), dtype=np.float32)
    # equal chunks, one or more per thread, none above batch_size
    size = max(1, min(int(batch_size), -(-n // threads)))

    def one(s):  # the compiled slicing and the FFTs release the GIL: chunks side by side
        e = min(n, s + size)
        out[s:e] = spec.project(mats[s:e], None if sh is None else sh[s:e])

    starts = range(0, n, size)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, starts))
    else:
        for s in starts:
            one(s)
    return out


def nyquist_reaches(pixel_size_a: float, target_resolution_a: float) -> bool:
    """THE Nyquist rule: whether ``pixel_size_a`` pixels resolve ``target_resolution_a``
    (at least ``2 * pixel_size_a``, with a relative slack of 1e-9 for rounding). Every check
    of a target resolution (:func:`downsampled_geometry`, the alignment, the forms) asks it."""
    return float(target_resolution_a) >= 2.0 * float(pixel_size_a) * (1 - 1e-9)


def downsampled_geometry(box_px: int, pixel_size_a: float,
                         target_resolution_a: float) -> tuple[int, float]:
    """Smallest even box whose Nyquist still reaches ``target_resolution_a``.

    The new pixel is about ``target_resolution_a / 2`` (Nyquist), never smaller than the input
    pixel: ``new_box = even number >= box * 2 * pixel / target`` (rounded up, at most the
    largest even number ``<= box``) and ``new_pixel = pixel * box / new_box``, so that the field
    of view is unchanged. Use the pair with :func:`~.imageops.fourier_crop`.

    Parameters
    ----------
    box_px : int
    pixel_size_a : float
    target_resolution_a : float
        Finest detail to keep, in Angstrom; must be at least ``2 * pixel_size_a``.

    Returns
    -------
    (new_box_px, new_pixel_size_a) : (int, float)
    """
    if int(box_px) != box_px or box_px < 2:
        raise ValueError(f"box_px must be an integer >= 2, got {box_px!r}")
    if not pixel_size_a > 0:
        raise ValueError(f"pixel_size_a must be > 0, got {pixel_size_a!r}")
    if not target_resolution_a > 0:
        raise ValueError(f"target_resolution_a must be > 0, got {target_resolution_a!r}")
    nyquist = 2.0 * pixel_size_a
    if not nyquist_reaches(pixel_size_a, target_resolution_a):
        raise ValueError(
            f"target_resolution_a={target_resolution_a} Å is finer than the data allow: the "
            f"Nyquist of {pixel_size_a} Å pixels is {nyquist} Å")
    box_px = int(box_px)
    new_box = math.ceil(box_px * nyquist / target_resolution_a - 1e-9)
    new_box = max(2, new_box + new_box % 2)
    new_box = min(new_box, box_px - box_px % 2)
    return new_box, pixel_size_a * box_px / new_box


@dataclass(frozen=True)
class DownsamplingPreview:
    """Image geometry used for training/alignment at a target resolution.

    Attributes
    ----------
    box_px, pixel_size_a : int, float
        Original geometry.
    new_box_px, new_pixel_size_a : int, float
        Geometry after Fourier cropping (from
        :func:`scipion_deepalign.core.projection.downsampled_geometry`).
    nyquist_a : float
        ``2 * new_pixel_size_a``: the best resolution the downsampled images can carry.
    """

    box_px: int
    pixel_size_a: float
    new_box_px: int
    new_pixel_size_a: float
    nyquist_a: float

    @property
    def factor(self) -> float:
        """Downsampling factor ``new_pixel_size_a / pixel_size_a`` (1 means no change)."""
        return self.new_pixel_size_a / self.pixel_size_a

    def message(self) -> str:
        return (f"Images of {self.box_px} px at {self.pixel_size_a:.3g} Å/px are used as "
                f"{self.new_box_px} px at {self.new_pixel_size_a:.3g} Å/px "
                f"(factor {self.factor:.2f}, Nyquist {self.nyquist_a:.3g} Å).")


def downsampling_preview(box_px: int, pixel_size_a: float,
                         target_resolution_a: float) -> DownsamplingPreview:
    """Downsampled box and pixel size for a target resolution (see the projection module).

    Parameters
    ----------
    box_px : int
        Original box side in pixels (> 0).
    pixel_size_a : float
        Original pixel size in Angstrom (> 0).
    target_resolution_a : float
        Resolution to keep, in Angstrom (> 0).

    Raises
    ------
    ValueError
        From :func:`~.projection.downsampled_geometry`, naming the parameter: a box below 2
        px, a pixel size or resolution that is not positive, a target finer than Nyquist.
    """
    new_box, new_pixel = downsampled_geometry(box_px, pixel_size_a, target_resolution_a)
    return DownsamplingPreview(int(box_px), float(pixel_size_a), int(new_box), float(new_pixel),
                               2.0 * float(new_pixel))


def resolution_for_box(box_px: int, pixel_size_a: float, new_box_px: int) -> float:
    """Target resolution (Angstrom) whose downsampled box is ``new_box_px``.

    The inverse of :func:`~.projection.downsampled_geometry`: the Nyquist of ``new_box_px``
    pixels over the same field of view, ``2 * pixel_size_a * box_px / new_box_px``, rounded
    up to 0.01 A so that the form shows a short number that still gives ``new_box_px``.

    Raises
    ------
    ValueError
        If ``new_box_px`` is odd, below 2 or larger than ``box_px``.
    """
    pixel_size_a = positive_float(pixel_size_a, "pixel_size_a")
    if int(new_box_px) != new_box_px or new_box_px % 2 or not 2 <= new_box_px <= box_px:
        raise ValueError(f"new_box_px must be an even number of pixels between 2 and the box "
                         f"({box_px} px), got {new_box_px}")
    resolution = math.ceil(200.0 * pixel_size_a * box_px / new_box_px - 1e-9) / 100.0
    if downsampled_geometry(box_px, pixel_size_a, resolution)[0] != new_box_px:
        resolution = 2.0 * pixel_size_a * box_px / new_box_px  # rounding crossed a box
    return resolution
