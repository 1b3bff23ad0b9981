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

from .shift_gemm import (
    best_over_shift_columns,
    best_over_shift_rows,
    pair_cross_spectra,
    particle_rows,
    shift_columns,
)

__all__ = [
    "FourierBand",
    "ShiftWindow",
    "fft_module",
    "shift_window",
    "soft_mask",
    "mask_zero_mean",
    "prepare_particles",
    "prepare_references",
    "correlate_block",
    "correlate_pairs",
    "correlation_maps",
    "parabolic_peak",
]

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


@dataclass
class ShiftWindow:
    """Shifts on a grid of ``step_px`` inside a disc, in row-major order.

    Attributes
    ----------
    steps : int ndarray of shape (K, 2)
        ``(dy, dx)`` in grid steps.
    step_px : float
    radius_steps : int
        Largest ``|dy|`` or ``|dx|`` in steps.
    """

    steps: np.ndarray
    step_px: float
    radius_steps: int

    @classmethod
    def disc(cls, max_shift_px: float, step_px: float = 1.0) -> ShiftWindow:
        """The grid points at most ``max_shift_px`` from the origin."""
        r = int(np.floor(max_shift_px / step_px + 1e-6))
        d = np.arange(-r, r + 1)
        dy, dx = np.meshgrid(d, d, indexing="ij")
        keep = (dy ** 2 + dx ** 2) * step_px ** 2 <= max_shift_px ** 2 + 1e-6
        return cls(np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64), float(step_px), r)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def offsets_px(self) -> np.ndarray:
        """``(dy, dx)`` in pixels, (K, 2)."""
        return self.steps * self.step_px

    def index(self, steps: np.ndarray) -> np.ndarray:
        """Position in the window of grid points ``(n, 2)`` (in steps); -1 outside it."""
        size = 2 * self.radius_steps + 1
        lookup = np.full((size, size), -1, dtype=np.int64)
        lookup[self.steps[:, 0] + self.radius_steps, self.steps[:, 1] + self.radius_steps] = \
            np.arange(len(self.steps))
        pos = np.asarray(steps) + self.radius_steps
        inside = ((pos >= 0) & (pos < size)).all(axis=1)
        pos = pos.clip(0, size - 1)
        return np.where(inside, lookup[pos[:, 0], pos[:, 1]], -1)


def shift_window(max_shift_px: float) -> np.ndarray:
    """Integer shifts ``(dy, dx)`` in a disc of radius ``max_shift_px``: (K, 2) int."""
    return ShiftWindow.disc(max_shift_px).steps


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


def _ctf_normalised(score, norm2, xp):
    """Scores divided by the norm of ``CTF * ref`` (``norm2`` its square)."""
    return score / xp.sqrt(xp.maximum(norm2, 1e-20))


def correlate_block(particle_spectra, ref_matrix, phases, *, xp, particle_power=None,
                    ref_power=None, shifted_refs=None):
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
    shifted_refs : array of shape (m K, 2F), optional
        :func:`.shift_gemm.shift_rows` of ``ref_matrix`` (made once for every block that meets
        these references): the product is then taken in that layout, the shift on the
        references' side (the same correlations; cheaper where the references are fewer than
        the particles that meet them).

    Returns
    -------
    score : float32 array of shape (n, m)
    shift_index : int array of shape (n, m)
        Index of the best shift in the window.
    """
    k = phases.shape[1]
    if shifted_refs is not None:
        corr = shifted_refs @ particle_rows(particle_spectra, xp=xp)  # (m K, n)
        score, shift_index = best_over_shift_rows(corr, k, xp=xp)
    else:
        corr = ref_matrix @ shift_columns(particle_spectra, phases, xp=xp)  # (m, n K)
        score, shift_index = best_over_shift_columns(corr, k, xp=xp)
    if particle_power is not None:
        score = _ctf_normalised(score, particle_power @ ref_power.T, xp)
    return (xp.ascontiguousarray(score.astype(xp.float32, copy=False)),
            xp.ascontiguousarray(shift_index))


def correlate_pairs(particle_spectra, ref_matrix, phases, *, xp, particle_power=None,
                    ref_power=None):
    """Normalised correlation over the shift window of particle ``i`` with its own references.

    Parameters
    ----------
    particle_spectra : complex array of shape (n, F)
    ref_matrix : float array of shape (n, c, 2F)
        ``c`` references per particle.
    phases : complex array of shape (F, K)
    particle_power, ref_power : arrays of shape (n, F), (n, c, F) or None
        As in :func:`correlate_block`.

    Returns
    -------
    float array of shape (n, c, K)

    Notes
    -----
    The same value as :func:`correlate_block`'s, ``Re sum_k conj(R_j(k)) P_i(k) phases(k, s)``,
    computed as the cross-spectra ``conj(R) P`` ``(n c, F)`` (one elementwise product) times
    the phases: one GEMM of ``(n c, 2F)`` by ``(2F, K)`` for every pair at once.
    """
    n, c, _ = ref_matrix.shape
    ph = xp.concatenate([phases.real, -phases.imag], axis=0).astype(xp.float32)
    corr = (pair_cross_spectra(particle_spectra, ref_matrix, xp=xp) @ ph).reshape(n, c, -1)
    if particle_power is not None:
        norm2 = (particle_power[:, None, :] * ref_power).sum(axis=2)
        corr = _ctf_normalised(corr, norm2[:, :, None], xp)
    return corr


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


def parabolic_peak(value_at) -> np.ndarray:
    """Sub-step position ``(dy, dx)`` of peaks, each in ±0.5, by a parabola along y and x.

    Parameters
    ----------
    value_at : callable
        ``value_at(dy, dx)`` gives the ``(n,)`` values ``dy, dx`` grid steps from each peak
        (NaN where there is none: the offset along that axis is then 0).

    Returns
    -------
    ndarray of shape (n, 2)
    """
    mid = value_at(0, 0)
    out = np.zeros((len(mid), 2))
    for axis in (0, 1):
        step = np.zeros(2, dtype=np.int64)
        step[axis] = 1
        lo, hi = value_at(-step[0], -step[1]), value_at(step[0], step[1])
        den = lo - 2 * mid + hi
        ok = den < -1e-12
        out[:, axis] = np.clip(np.where(ok, 0.5 * (lo - hi) / np.where(ok, den, -1.0), 0.0),
                               -0.5, 0.5)
    return out
