"""Normalised cross-correlation of particles with references over a shift window (numpy/cupy).

Both sides are masked (soft circular mask), made zero-mean inside the mask, Fourier
transformed (``rfft2``) and kept on the *band* of frequencies below Nyquist (radius < B/2);
each spectrum is scaled so that the band-limited image has unit L2 norm. The score of a
particle ``p`` and a reference ``r`` at integer shift ``s`` is then the cosine
``<p, r(. - s)> / (|p| |r|)`` of the band-limited images, and the best shift is taken inside
a disc of ``max_shift`` pixels.

The correlation at the K window shifts is computed as one matrix product per block,
``corr[j, (i, s)] = sum_k Re(R_j(k)) Q_i(k, s) + Im(R_j(k)) Q'_i(k, s)`` with
``Q_i(k, s) = w_k P_i(k) exp(2 pi i k.s / B) / B**2`` split in real and imaginary parts
(``w_k`` counts the mirrored half of the spectrum): a GEMM of the ``(m, 2F)`` references by
the ``(2F, n K)`` particle-shift matrix. For the small windows of alignment this is cheaper
than an inverse FFT per pair, and it runs as fast BLAS (or cuBLAS) code.

Correlation sign: ``corr(s) = sum_x img(x + s) ref(x)`` peaks at ``s`` when the particle is
the reference translated by ``+s``; by :mod:`geometry` that particle has shift ``-s``.

CTF handling (``ctf_mode``):

* ``"apply"``: the particle's CTF is applied to every reference. It is done on the particle
  side, which gives the same numerator because the CTF is real
  (``<img, CTF*ref> = <CTF*img, ref>``); the norm of ``CTF*ref`` comes, exactly, from the
  squared CTF and the power spectrum of the reference by Parseval (one matrix product).
* ``"flip"``: the particle is phase-flipped and compared with the plain references.
* ``"flipped"``: the particles were phase-flipped *before* (e.g. by the preprocessing); the
  references get ``|CTF|``, the rest is as ``"apply"``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CTF_MODES",
    "FourierBand",
    "fft_module",
    "shift_window",
    "ctf_half_plane",
    "soft_mask",
    "mask_zero_mean",
    "prepare_particles",
    "prepare_references",
    "correlate_block",
    "correlation_maps",
    "merge_best",
    "subpixel_offsets",
]

CTF_MODES = ("apply", "flip", "flipped")


def fft_module(xp):
    """``cupy.fft`` for cupy; ``scipy.fft`` for numpy (keeps float32, unlike ``numpy.fft``)."""
    if xp is np:
        import scipy.fft
        return scipy.fft
    return xp.fft


@dataclass
class FourierBand:
    """The ``rfft2`` coefficients used for matching: frequencies of radius below ``B / 2``.

    Attributes
    ----------
    box_px : int
    flat_index : ndarray of shape (F,) int
        Indices into the flattened ``(B, B // 2 + 1)`` half plane.
    ky, kx : ndarray of shape (F,) float
        Frequencies in cycles per box.
    weight : ndarray of shape (F,) float32
        2 where the mirrored coefficient is implied (``0 < kx``), 1 on ``kx = 0``.
    """

    box_px: int
    flat_index: np.ndarray
    ky: np.ndarray
    kx: np.ndarray
    weight: np.ndarray

    @classmethod
    def of_box(cls, box_px: int) -> FourierBand:
        ky = np.fft.fftfreq(box_px) * box_px
        kx = np.fft.rfftfreq(box_px) * box_px
        kyy, kxx = np.meshgrid(ky, kx, indexing="ij")
        keep = np.hypot(kyy, kxx).ravel() < box_px / 2
        weight = np.where(kxx.ravel() > 0, 2.0, 1.0).astype(np.float32)
        return cls(box_px, np.flatnonzero(keep), kyy.ravel()[keep], kxx.ravel()[keep],
                   weight[keep])

    def __len__(self) -> int:
        return len(self.flat_index)

    def take(self, half_planes, xp=np):
        """Band coefficients ``(..., F)`` of arrays in ``rfft2`` layout ``(..., B, B//2+1)``."""
        flat = half_planes.reshape(half_planes.shape[:-2] + (-1,))
        return flat[..., xp.asarray(self.flat_index)]

    def norm2(self, spectra, xp=np):
        """Squared L2 norm in real space of band-limited images given their band ``(..., F)``."""
        w = xp.asarray(self.weight)
        return (w * (spectra.real ** 2 + spectra.imag ** 2)).sum(axis=-1) / float(
            self.box_px ** 2)

    def shift_phases(self, offsets_yx: np.ndarray, xp=np):
        """``w_k exp(2 pi i k.s / B) / B**2`` for every band coefficient and shift: (F, K)."""
        arg = 2 * np.pi * (np.outer(self.ky, offsets_yx[:, 0])
                           + np.outer(self.kx, offsets_yx[:, 1])) / self.box_px
        e = np.exp(1j * arg) * (self.weight[:, None] / self.box_px ** 2)
        return xp.asarray(e.astype(np.complex64))


def shift_window(box_px: int, max_shift_px: float) -> np.ndarray:
    """Integer shifts ``(dy, dx)`` in a disc of radius ``max_shift_px``: (K, 2) int."""
    r = int(np.floor(max_shift_px + 1e-6))
    d = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    keep = dy ** 2 + dx ** 2 <= max_shift_px ** 2 + 1e-6
    return np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64)


def ctf_half_plane(ctf_full) -> np.ndarray:
    """CTF images in ``fft2`` layout ``(n, B, B)`` -> ``rfft2`` layout ``(n, B, B // 2 + 1)``."""
    ctf_full = np.asarray(ctf_full, dtype=np.float32)
    return np.ascontiguousarray(ctf_full[..., : ctf_full.shape[-1] // 2 + 1])


def soft_mask(box_px: int, radius_px: float, *, edge_px: float = 2.0) -> np.ndarray:
    """Circular mask ``(B, B)`` float32: 1 inside ``radius_px``, raised-cosine edge outside."""
    c = box_px // 2
    y, x = np.mgrid[:box_px, :box_px]
    r = np.hypot(y - c, x - c)
    t = np.clip((r - radius_px) / edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def mask_zero_mean(images, mask, xp=np):
    """Mask and remove the mean inside the mask: ``(images - mean) * mask``, ``(n, B, B)``."""
    x = xp.asarray(images, dtype=xp.float32)
    mask = xp.asarray(mask)
    mean = (x * mask).sum(axis=(-2, -1), keepdims=True) / float(mask.sum())
    return (x - mean) * mask


def _band_spectra(images, mask, band, xp):
    """Masked (unless ``mask`` is None), zero-mean, unit-norm band spectra ``(n, F)``."""
    x = xp.asarray(images, dtype=xp.float32)
    if mask is not None:
        x = mask_zero_mean(x, mask, xp)
    spectra = band.take(fft_module(xp).rfft2(x), xp).astype(xp.complex64)
    norm = xp.sqrt(xp.maximum(band.norm2(spectra, xp), 1e-24))
    return spectra / norm[:, None].astype(xp.float32)


def prepare_particles(images, *, xp, mask, band, ctf_half=None, ctf_mode="apply"):
    """Band spectra of the particles, CTF-weighted as ``ctf_mode`` says.

    Parameters
    ----------
    images : ndarray of shape (n, B, B)
    xp : module
    mask : ndarray of shape (B, B)
    band : FourierBand
    ctf_half : ndarray of shape (n, B, B // 2 + 1) or None
        CTF values in ``rfft2`` layout.
    ctf_mode : {"apply", "flip", "flipped"}

    Returns
    -------
    spectra : complex64 array of shape (n, F)
        Unit norm before the CTF weighting.
    ctf_power : float32 array of shape (n, F) or None
        ``w_k CTF(k)**2 / B**2`` (``"apply"``, ``"flipped"``), for the norm of ``CTF * ref``.
    """
    spectra = _band_spectra(images, mask, band, xp)
    if ctf_half is None:
        return spectra, None
    ctf = band.take(xp.asarray(ctf_half, dtype=xp.float32), xp)
    if ctf_mode == "flip":
        return spectra * xp.sign(ctf), None
    if ctf_mode == "flipped":
        ctf = xp.abs(ctf)
    power = ctf * ctf * xp.asarray(band.weight) / float(band.box_px ** 2)
    return spectra * ctf, power


def prepare_references(refs, *, xp, mask, band, with_power=False):
    """Real-imaginary matrix of the reference band spectra and, optionally, their power.

    Parameters
    ----------
    refs : ndarray of shape (m, B, B)
    mask : ndarray of shape (B, B) or None
        None when the references are already masked and zero-mean (:func:`mask_zero_mean`
        before an in-plane rotation, which commutes with a circular mask).
    band : FourierBand
    with_power : bool
        Also return ``|R(k)|**2`` (m, F), for the ``"apply"`` CTF norm.

    Returns
    -------
    matrix : float32 array of shape (m, 2F)
        ``[Re R, Im R]`` of unit-norm band spectra.
    power : float32 array of shape (m, F) or None
    """
    spectra = _band_spectra(refs, mask, band, xp)
    matrix = xp.concatenate([spectra.real, spectra.imag], axis=1).astype(xp.float32)
    power = (spectra.real ** 2 + spectra.imag ** 2).astype(xp.float32) if with_power else None
    return matrix, power


def correlate_block(particle_spectra, ref_matrix, phases, *, xp, particle_power=None,
                    ref_power=None):
    """Best normalised correlation over the shift window for every particle-reference pair.

    Parameters
    ----------
    particle_spectra : complex array of shape (n, F)
    ref_matrix : float array of shape (m, 2F)
    phases : complex array of shape (F, K)
        :meth:`FourierBand.shift_phases` of the window.
    particle_power, ref_power : arrays of shape (n, F), (m, F) or None
        Given together in ``"apply"`` CTF mode; the score is then divided by the exact norm
        of ``CTF_i * ref_j``.

    Returns
    -------
    score : float32 array of shape (n, m)
    shift_index : int array of shape (n, m)
        Index of the best shift in the window.
    """
    n, f = particle_spectra.shape
    k = phases.shape[1]
    q = particle_spectra[:, :, None] * phases[None]  # (n, F, K)
    q = xp.concatenate([q.real, q.imag], axis=1)  # (n, 2F, K)
    q = xp.ascontiguousarray(q.transpose(1, 0, 2).reshape(2 * f, n * k))
    corr = (ref_matrix @ q).reshape(ref_matrix.shape[0], n, k)  # (m, n, K)
    shift_index = xp.argmax(corr, axis=2)
    score = xp.take_along_axis(corr, shift_index[:, :, None], axis=2)[:, :, 0]
    score, shift_index = score.T, shift_index.T
    if particle_power is not None:
        norm2 = particle_power @ ref_power.T
        score = score / xp.sqrt(xp.maximum(norm2, 1e-20))
    return xp.ascontiguousarray(score.astype(xp.float32)), xp.ascontiguousarray(shift_index)


def correlation_maps(particle_spectra, ref_matrix, band, *, xp):
    """Full correlation maps ``(n, B, B)`` of particle ``i`` with reference ``i`` (pairs).

    Same normalisation as :func:`correlate_block` without the CTF norm; ``map[i][s % B]``
    is the correlation at shift ``s``. Used for sub-pixel peak refinement.
    """
    f = len(band)
    ref = ref_matrix[:, :f] + 1j * ref_matrix[:, f:]
    box = band.box_px
    half = xp.zeros((len(ref), box * (box // 2 + 1)), dtype=xp.complex64)
    half[:, xp.asarray(band.flat_index)] = particle_spectra * xp.conj(ref)
    half = half.reshape(len(ref), box, box // 2 + 1)
    # irfft2 sums the mirrored half itself; the Nyquist-free band needs no extra weighting.
    return fft_module(xp).irfft2(half, s=(box, box))


def _to_numpy(x):
    from .backend import to_numpy
    return to_numpy(x)


def merge_best(score, shift, sel, ref_base, best_score, best_ref, best_shift):
    """Merge a block's scores into the running N best of particles ``sel`` (in place).

    Parameters
    ----------
    score, shift : ndarray of shape (n, m)
        Block scores and best-shift indices (numpy).
    sel : int ndarray of shape (n,)
        Rows of the running arrays the block's particles are.
    ref_base : int
        Reference index of the block's first column.
    best_score, best_ref, best_shift : ndarray of shape (N, k)
        Running best, sorted by decreasing score.
    """
    k = best_score.shape[1]
    if k == 1:
        j = np.argmax(score, axis=1)
        s = score[np.arange(len(sel)), j]
        better = s > best_score[sel, 0]
        rows = sel[better]
        best_score[rows, 0] = s[better]
        best_ref[rows, 0] = ref_base + j[better]
        best_shift[rows, 0] = shift[better, j[better]]
        return
    take = min(k, score.shape[1])
    top = np.argpartition(-score, take - 1, axis=1)[:, :take]
    all_s = np.concatenate([best_score[sel], np.take_along_axis(score, top, 1)], axis=1)
    all_r = np.concatenate([best_ref[sel], ref_base + top], axis=1)
    all_h = np.concatenate([best_shift[sel], np.take_along_axis(shift, top, 1)], axis=1)
    order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
    best_score[sel] = np.take_along_axis(all_s, order, 1)
    best_ref[sel] = np.take_along_axis(all_r, order, 1)
    best_shift[sel] = np.take_along_axis(all_h, order, 1)


def subpixel_offsets(xp, images, ctf_half, ctf_mode, particle_mask, band, refs, offsets_yx):
    """Parabolic sub-pixel correction ``(dy, dx)`` of the best correlation peak, each in ±0.5.

    ``refs`` ``(N, B, B)`` are the best references (masked, zero-mean), one per particle.
    """
    n, box = images.shape[0], images.shape[-1]
    out = np.zeros((n, 2))
    rows = np.arange(n)
    for start in range(0, n, 1024):
        sel = rows[start:start + 1024]
        spectra, _ = prepare_particles(
            images[sel], xp=xp, mask=particle_mask, band=band,
            ctf_half=None if ctf_half is None else ctf_half[sel], ctf_mode=ctf_mode)
        ref_matrix, _ = prepare_references(refs[sel], xp=xp, mask=None, band=band)
        corr = _to_numpy(correlation_maps(spectra, ref_matrix, band, xp=xp))
        peak = offsets_yx[sel]
        local = np.arange(len(sel))
        centre = corr[local, peak[:, 0] % box, peak[:, 1] % box]
        for axis in (0, 1):
            step = np.zeros(2, dtype=np.int64)
            step[axis] = 1
            lo = corr[local, (peak[:, 0] - step[0]) % box, (peak[:, 1] - step[1]) % box]
            hi = corr[local, (peak[:, 0] + step[0]) % box, (peak[:, 1] + step[1]) % box]
            den = lo - 2 * centre + hi
            safe = np.where(den < -1e-12, den, -1.0)
            frac = np.where(den < -1e-12, 0.5 * (lo - hi) / safe, 0.0)
            out[sel, axis] = np.clip(frac, -0.5, 0.5)
    return out
