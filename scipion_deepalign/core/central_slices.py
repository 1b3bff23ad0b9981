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


#: candidates sampled by one task of the thread pool: their rows (~0.8 MB at 400 frequencies)
#: stay in the core's cache for the caller's ``finish`` pass
CHUNK = 256


def band_spectra(spectrum, matrices, ky, kx, *, xp=np, finish=None):
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
    finish : callable, optional
        numpy only: called as ``finish(rows, sampled)`` (a slice of the ``N`` candidates and
        their sampled rows) by the thread that sampled them, just after, :data:`CHUNK`
        candidates at a time: a further pass over the rows runs on the threads while they are
        in cache.

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
    grid = np.ascontiguousarray(spectrum.spectrum)  # the kernel reads it flat
    pairs = out.view(np.float32).reshape(len(m), len(ky), 2)  # (re, im), written in place
    starts = range(0, len(m), CHUNK)
    threads = max(1, min(cpu_threads(), len(starts)))

    def one(start):  # the compiled sampling releases the GIL: chunks side by side
        rows = slice(start, min(len(m), start + CHUNK))
        _sample_points(grid, m[rows], *args, pairs[rows])
        if finish is not None:
            finish(rows, out[rows])

    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, starts))
    else:
        for start in starts:
            one(start)
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
    frequency units), trilinear as :func:`.projection._sample_slices`, times ``phase[f]``;
    zero where a neighbour is outside. ``out`` is the complex64 result seen as float32
    ``(N, F, 2)``. Branch-free, in real arithmetic: the corner index is clamped into the box
    and a point outside is multiplied by zero, so LLVM vectorises the loop over the
    frequencies (docs/benchmarks_accuracy.md, "The refinement's sampling, branch-free")."""
    p = spectrum.shape[0]
    flat = spectrum.ravel()
    sy, sz = p, p * p
    half = np.float32(p // 2)
    one, zero = np.float32(1.0), np.float32(0.0)
    edge = np.float32(p - 1)  # a point needs its corner below it on every axis
    top = np.float32(p - 2)  # the highest corner index
    for i in range(mats.shape[0]):
        a00, a01, a02 = mats[i, 0, 0], mats[i, 0, 1], mats[i, 0, 2]
        a10, a11, a12 = mats[i, 1, 0], mats[i, 1, 1], mats[i, 1, 2]
        for f in range(ky.shape[0]):
            kyf, kxf = ky[f], kx[f]
            qx = a00 * kxf + a10 * kyf + half
            qy = a01 * kxf + a11 * kyf + half
            qz = a02 * kxf + a12 * kyf + half
            inside = ((qx >= zero) & (qy >= zero) & (qz >= zero)
                      & (qx < edge) & (qy < edge) & (qz < edge))
            fx = min(max(np.floor(qx), zero), top)
            fy = min(max(np.floor(qy), zero), top)
            fz = min(max(np.floor(qz), zero), top)
            b = np.int64(fz) * sz + np.int64(fy) * sy + np.int64(fx)
            tx, ty, tz = qx - fx, qy - fy, qz - fz
            ux, uy, uz = one - tx, one - ty, one - tz
            w000, w001, w010, w011 = uz * uy * ux, uz * uy * tx, uz * ty * ux, uz * ty * tx
            w100, w101, w110, w111 = tz * uy * ux, tz * uy * tx, tz * ty * ux, tz * ty * tx
            c000, c001 = flat[b], flat[b + 1]
            c010, c011 = flat[b + sy], flat[b + sy + 1]
            c100, c101 = flat[b + sz], flat[b + sz + 1]
            c110, c111 = flat[b + sz + sy], flat[b + sz + sy + 1]
            re = (w000 * c000.real + w001 * c001.real + w010 * c010.real + w011 * c011.real
                  + w100 * c100.real + w101 * c101.real + w110 * c110.real + w111 * c111.real)
            im = (w000 * c000.imag + w001 * c001.imag + w010 * c010.imag + w011 * c011.imag
                  + w100 * c100.imag + w101 * c101.imag + w110 * c110.imag + w111 * c111.imag)
            keep = one if inside else zero
            re, im = re * keep, im * keep
            pr, pi = phase[f].real, phase[f].imag
            out[i, f, 0] = re * pr - im * pi
            out[i, f, 1] = re * pi + im * pr
