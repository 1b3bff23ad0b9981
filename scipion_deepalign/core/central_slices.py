"""A map's projections at chosen frequencies only, read from its 3D spectrum.

The local refinement (:mod:`.align.local_refinement`) scores each candidate pose on the band of
frequencies the matching uses (:class:`.align.matching.FourierBand`); by the central-slice
theorem those coefficients of the projection are samples of the map's 3D spectrum
(:class:`.projection.VolumeSpectrum`, padded and apodisation-corrected), so they are read
directly, with no 2D transform (:meth:`.projection.VolumeSpectrum.project` samples the whole
padded slice and transforms it back). On numpy one compiled pass runs on the process's threads;
on cupy the same trilinear sampling runs as array gathers on the device.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .runtime.backend import cpu_threads
from .runtime.compiled import compiled

__all__ = ["band_spectra"]


def band_spectra(spectrum, matrices, ky, kx, *, xp=np):
    """The ``rfft2`` coefficients of the projections ``project`` gives, at chosen frequencies.

    Exact where the projection lies inside the box (a map inside the sphere of radius
    ``B / 2``): the crop of :meth:`.projection.VolumeSpectrum.project` then loses nothing.

    Parameters
    ----------
    spectrum : projection.VolumeSpectrum
    matrices : ndarray of shape (N, 3, 3)
    ky, kx : ndarray of shape (F,)
        Frequencies in cycles per box ``B`` (``kx >= 0``, as in an ``rfft2`` half plane).
    xp : module
        ``numpy`` (a compiled pass on the process's threads) or ``cupy`` (array gathers on the
        device, the spectrum copied there once per map).

    Returns
    -------
    array of shape (N, F), complex64, on ``xp``
    """
    r = spectrum.pad_box_px / spectrum.box_px
    ky, kx = np.asarray(ky, np.float64), np.asarray(kx, np.float64)
    m = np.ascontiguousarray(matrices, dtype=np.float32).reshape(-1, 3, 3)
    # the image's origin is pixel B // 2, the slice's the padded image's corner
    centre = np.exp(-2j * np.pi * (spectrum.box_px // 2) * (ky + kx) / spectrum.box_px)
    args = ((ky * r).astype(np.float32), (kx * r).astype(np.float32),
            centre.astype(np.complex64))
    if xp is not np:
        return _on_device(xp, spectrum, m, *args)
    out = np.empty((len(m), len(ky)), dtype=np.complex64)
    threads = max(1, min(cpu_threads(), len(m) // 64))
    size = -(-len(m) // threads)

    def one(s):  # the compiled sampling releases the GIL: chunks side by side
        _sample_points(spectrum.spectrum, m[s:s + size], *args, out[s:s + size])

    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(0, len(m), size)))
    else:
        one(0)
    return out


def _on_device(xp, spectrum, mats, ky, kx, phase):
    """:func:`band_spectra` as array operations on ``xp`` (what ``_sample_points`` does); the
    flat device copy of the spectrum is kept on the :class:`VolumeSpectrum` itself."""
    copy = getattr(spectrum, "_device_copy", None)
    if copy is None or copy[0] is not xp:
        copy = spectrum._device_copy = (xp, xp.asarray(spectrum.spectrum).ravel())
    flat, p = copy[1], spectrum.pad_box_px
    m = xp.asarray(mats)
    # q[..., j] = A[0, j] kx + A[1, j] ky + P // 2: (x, y, z) in the centred spectrum
    q = (xp.asarray(kx)[None, :, None] * m[:, None, 0, :]
         + xp.asarray(ky)[None, :, None] * m[:, None, 1, :] + np.float32(p // 2))
    lower = xp.floor(q)
    t = (q - lower).astype(xp.float32)
    index = lower.astype(xp.int64)
    inside = ((index >= 0) & (index < p - 1)).all(axis=-1)
    index = xp.clip(index, 0, p - 2)
    base = (index[..., 2] * p + index[..., 1]) * p + index[..., 0]
    out = xp.zeros(base.shape, dtype=xp.complex64)
    for dz in (0, 1):
        wz = t[..., 2] if dz else 1 - t[..., 2]
        for dy in (0, 1):
            wy = wz * (t[..., 1] if dy else 1 - t[..., 1])
            for dx in (0, 1):
                w = wy * (t[..., 0] if dx else 1 - t[..., 0])
                out += w * flat[base + (dz * p + dy) * p + dx]
    return xp.where(inside, out, 0) * xp.asarray(phase)[None]


@compiled(contract=True)
def _sample_points(spectrum, mats, ky, kx, phase, out):  # pragma: no cover - compiled
    """``out[i, f]``: the centred spectrum (P, P, P) at ``A_i.T @ (kx_f, ky_f, 0)`` (padded
    frequency units), trilinear as
    :func:`.projection._sample_slices`, times ``phase[f]``; zero where a
    neighbour is outside. The matrix entries are read by index in the inner loop (a view
    ``mats[i]`` there made the loop 1.6x slower)."""
    p = spectrum.shape[0]
    half = np.float32(p // 2)
    one = np.float32(1.0)
    c = spectrum  # a short name for the eight neighbours
    for i in range(mats.shape[0]):
        for f in range(ky.shape[0]):
            kyf, kxf = ky[f], kx[f]
            qx = mats[i, 0, 0] * kxf + mats[i, 1, 0] * kyf + half
            qy = mats[i, 0, 1] * kxf + mats[i, 1, 1] * kyf + half
            qz = mats[i, 0, 2] * kxf + mats[i, 1, 2] * kyf + half
            fx, fy, fz = np.floor(qx), np.floor(qy), np.floor(qz)
            ix, iy, iz = int(fx), int(fy), int(fz)
            if ix < 0 or iy < 0 or iz < 0 or ix >= p - 1 or iy >= p - 1 or iz >= p - 1:
                out[i, f] = 0
                continue
            tx, ty, tz = qx - fx, qy - fy, qz - fz
            ux, uy, uz = one - tx, one - ty, one - tz
            out[i, f] = phase[f] * (
                uz * (uy * (ux * c[iz, iy, ix] + tx * c[iz, iy, ix + 1])
                      + ty * (ux * c[iz, iy + 1, ix] + tx * c[iz, iy + 1, ix + 1]))
                + tz * (uy * (ux * c[iz + 1, iy, ix] + tx * c[iz + 1, iy, ix + 1])
                        + ty * (ux * c[iz + 1, iy + 1, ix] + tx * c[iz + 1, iy + 1, ix + 1])))
