"""FFT cross-correlation of particles against reference blocks (numpy or cupy arrays).

Scores are normalised cross-correlations (cosine of the angle between the masked, zero-mean
particle and the shifted, masked, zero-mean reference), maximised over the in-plane shifts in
a disc of ``max_shift`` pixels. All functions take the array module ``xp`` explicitly so the
same code runs on numpy and cupy.

Correlation sign: ``corr(s) = sum_x img(x + s) ref(x)`` peaks at ``s`` when the particle is
the reference translated by ``+s``; by :mod:`geometry` that particle has shift ``-s``.

CTF handling (``ctf_mode``):

* ``"apply"``: the particle's CTF is applied to every reference. It is done on the particle
  side, which gives the same numerator because the CTF is real
  (``<img, CTF*ref> = <CTF*img, ref>``); the norm of ``CTF*ref`` comes, exactly, from the
  squared CTF and the power spectrum of the reference by Parseval (one matrix product).
* ``"flip"``: the particle is phase-flipped and compared with the plain references.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "CTF_MODES",
    "fft_module",
    "shift_window",
    "half_plane_weights",
    "ctf_half_plane",
    "soft_mask",
    "normalise_masked",
    "prepare_particles",
    "prepare_references",
    "correlate_block",
]

CTF_MODES = ("apply", "flip")


def fft_module(xp):
    """``cupy.fft`` for cupy; ``scipy.fft`` for numpy (keeps float32, unlike ``numpy.fft``)."""
    if xp is np:
        import scipy.fft
        return scipy.fft
    return xp.fft


def shift_window(box_px: int, max_shift_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer shifts within a disc and their flat indices in a ``(box, box)`` map.

    Parameters
    ----------
    box_px : int
    max_shift_px : float
        Radius of the disc in pixels (0 gives only the zero shift).

    Returns
    -------
    offsets_yx : ndarray of shape (K, 2) int
        ``(dy, dx)`` of every allowed correlation offset.
    flat_index : ndarray of shape (K,) int
        ``(dy % box) * box + (dx % box)``.
    """
    r = int(np.floor(max_shift_px + 1e-6))
    d = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    keep = dy ** 2 + dx ** 2 <= max_shift_px ** 2 + 1e-6
    offsets = np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64)
    flat = (offsets[:, 0] % box_px) * box_px + (offsets[:, 1] % box_px)
    return offsets, flat


def half_plane_weights(box_px: int) -> np.ndarray:
    """How many coefficients of the full ``fft2`` plane each ``rfft2`` one stands for.

    Returns
    -------
    ndarray of shape (B, B // 2 + 1) float32
        2 for the columns mirrored in the full plane, 1 for column 0 (and B / 2 for even B).
    """
    weight = np.full((box_px, box_px // 2 + 1), 2.0, dtype=np.float32)
    weight[:, 0] = 1.0
    if box_px % 2 == 0:
        weight[:, -1] = 1.0
    return weight


def ctf_half_plane(ctf_full) -> np.ndarray:
    """CTF images in ``fft2`` layout ``(n, B, B)`` -> ``rfft2`` layout ``(n, B, B // 2 + 1)``.

    For even boxes the Nyquist row and column are set to 0: an astigmatic CTF is not
    Hermitian-symmetric there, and a real filter must be.
    """
    ctf_full = np.asarray(ctf_full, dtype=np.float32)
    box = ctf_full.shape[-1]
    half = np.array(ctf_full[..., : box // 2 + 1])
    if box % 2 == 0:
        half[..., box // 2, :] = 0.0
        half[..., :, box // 2] = 0.0
    return half


def soft_mask(box_px: int, radius_px: float, *, edge_px: float = 2.0) -> np.ndarray:
    """Circular mask ``(B, B)`` float32: 1 inside ``radius_px``, raised-cosine edge outside."""
    c = box_px // 2
    y, x = np.mgrid[:box_px, :box_px]
    r = np.hypot(y - c, x - c)
    t = np.clip((r - radius_px) / edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def normalise_masked(images, mask, xp=np):
    """Mask, remove the masked mean and scale to unit L2 norm. ``(n, B, B)`` in and out."""
    x = images * mask
    w = float(mask.sum())
    mean = x.sum(axis=(-2, -1), keepdims=True) / w
    x = (images - mean) * mask
    norm = xp.sqrt((x * x).sum(axis=(-2, -1), keepdims=True))
    return x / xp.maximum(norm, 1e-12)


def prepare_particles(images, *, xp, mask, ctf_half=None, ctf_mode="apply"):
    """Fourier transforms of normalised particles, CTF-weighted as ``ctf_mode`` says.

    Parameters
    ----------
    images : ndarray of shape (n, B, B)
    xp : module
    mask : ndarray of shape (B, B) (xp array)
    ctf_half : ndarray of shape (n, B, B // 2 + 1) or None
        CTF values in ``rfft2`` layout.
    ctf_mode : {"apply", "flip"}

    Returns
    -------
    spectra : complex64 array of shape (n, B, B // 2 + 1)
    ctf_power : float32 array of shape (n, B * (B // 2 + 1)) or None
        Squared CTF per coefficient (``"apply"`` only).
    """
    fft = fft_module(xp)
    x = normalise_masked(xp.asarray(images, dtype=xp.float32), mask, xp)
    spectra = fft.rfft2(x).astype(xp.complex64)
    if ctf_half is None:
        return spectra, None
    ctf_half = xp.asarray(ctf_half, dtype=xp.float32)
    if ctf_mode == "flip":
        return spectra * xp.sign(ctf_half), None
    power = (ctf_half * ctf_half).reshape(len(ctf_half), -1)
    return spectra * ctf_half, power


def prepare_references(refs, *, xp, mask, with_power=False):
    """Conjugate spectra of normalised references and, optionally, their power spectra.

    Parameters
    ----------
    refs : ndarray of shape (m, B, B)
    with_power : bool
        Also return the power spectrum, weighted for the full ``fft2`` plane, shape
        (m, B * (B // 2 + 1)), for the ``"apply"`` CTF norm.

    Returns
    -------
    conj_spectra : complex64 array of shape (m, B, B // 2 + 1)
    power : float32 array of shape (m, B * (B // 2 + 1)) or None
    """
    fft = fft_module(xp)
    x = normalise_masked(xp.asarray(refs, dtype=xp.float32), mask, xp)
    spectra = fft.rfft2(x).astype(xp.complex64)
    power = None
    if with_power:
        weight = xp.asarray(half_plane_weights(refs.shape[-1]).ravel())
        power = (spectra.real ** 2 + spectra.imag ** 2).reshape(len(refs), -1) * weight
    return xp.conj(spectra), power


def correlate_block(particle_spectra, ref_conj_spectra, flat_index, *, xp, box_px,
                    particle_power=None, ref_power=None):
    """Best normalised correlation over the shift window for every particle-reference pair.

    Parameters
    ----------
    particle_spectra : complex array of shape (n, B, B // 2 + 1)
    ref_conj_spectra : complex array of shape (m, B, B // 2 + 1)
    flat_index : int array of shape (K,)
        From :func:`shift_window`.
    particle_power, ref_power : arrays of shape (n, F), (m, F) or None
        Given together in ``"apply"`` CTF mode; the score is then divided by the exact norm
        of ``CTF_i * ref_j`` (Parseval, one matrix product).

    Returns
    -------
    score : float32 array of shape (n, m)
    shift_index : int array of shape (n, m)
        Index into the window offsets of the best shift.
    """
    fft = fft_module(xp)
    n, m = particle_spectra.shape[0], ref_conj_spectra.shape[0]
    prod = particle_spectra[:, None] * ref_conj_spectra[None]
    corr = fft.irfft2(prod, s=(box_px, box_px)).reshape(n, m, box_px * box_px)
    window = corr[:, :, xp.asarray(flat_index)]
    shift_index = xp.argmax(window, axis=2)
    score = xp.take_along_axis(window, shift_index[:, :, None], axis=2)[:, :, 0]
    if particle_power is not None:
        norm2 = particle_power @ ref_power.T / float(box_px * box_px)
        score = score / xp.sqrt(xp.maximum(norm2, 1e-20))
    return score.astype(xp.float32), shift_index
