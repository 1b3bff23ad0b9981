"""The shift search's GEMM layout: particle spectra at every shift of the window as the
right-hand matrix, and the best shift of each correlation (numpy/cupy).

:func:`.matching.correlate_block` multiplies the references ``(m, 2F)`` by
:func:`shift_columns` ``(2F, n K)`` and reduces the ``(m, n K)`` product with
:func:`best_over_shift_columns`. On numpy both passes are compiled (numba); on cupy they are
array expressions, the same maths.
"""
from __future__ import annotations

import numpy as np

from ..runtime.compiled import compiled

__all__ = ["shifted_particles", "shift_columns", "best_over_shift_columns",
           "best_over_shifts"]


def shifted_particles(particle_spectra, phases, *, xp):
    """``[Re Q, Im Q]`` with ``Q_i(k, s) = P_i(k) * phases(k, s)``: (n, 2F, K)."""
    q = particle_spectra[:, :, None] * phases[None]  # (n, F, K)
    return xp.concatenate([q.real, q.imag], axis=1)


def shift_columns(particle_spectra, phases, *, xp):
    """The ``(2F, n K)`` right-hand matrix of :func:`.matching.correlate_block`: column
    ``i K + s`` is ``[Re Q_i(., s), Im Q_i(., s)]`` (:func:`shifted_particles`, laid out for
    the GEMM).

    On numpy one compiled pass writes it (ten times faster than the complex product and the
    transposed copy, which the cupy path keeps)."""
    n, f = particle_spectra.shape
    k = phases.shape[1]
    if xp is not np:
        q = shifted_particles(particle_spectra, phases, xp=xp)
        return xp.ascontiguousarray(q.transpose(1, 0, 2).reshape(2 * f, n * k))
    out = np.empty((2 * f, n * k), dtype=np.float32)
    _shift_columns(np.asarray(particle_spectra, dtype=np.complex64),
                   np.asarray(phases, dtype=np.complex64), out)
    return out


@compiled
def _shift_columns(spectra, phases, out):  # pragma: no cover - compiled
    n, f = spectra.shape
    k = phases.shape[1]
    for j in range(f):
        for i in range(n):
            a_re, a_im = spectra[i, j].real, spectra[i, j].imag
            for s in range(k):
                b_re, b_im = phases[j, s].real, phases[j, s].imag
                out[j, i * k + s] = a_re * b_re - a_im * b_im
                out[f + j, i * k + s] = a_re * b_im + a_im * b_re


def best_over_shift_columns(corr, k: int, *, xp):
    """Best value ``(n, m)`` and its shift index ``(n, m)`` of ``corr`` ``(m, n K)``, whose
    column ``i K + s`` is particle ``i`` at shift ``s`` (the layout of
    :func:`.matching.correlate_block`).

    On numpy one compiled pass reads each correlation once and writes the transposed results
    (the first of equal values wins, as ``argmax``)."""
    m, nk = corr.shape
    n = nk // k
    if xp is not np:
        score, index = best_over_shifts(corr.reshape(m, n, k), xp=xp)
        return score.T, index.T
    score = np.empty((n, m), dtype=corr.dtype)
    index = np.empty((n, m), dtype=np.int64)
    _best_over_shift_columns(np.ascontiguousarray(corr), k, score, index)
    return score, index


@compiled
def _best_over_shift_columns(corr, k, score, index):  # pragma: no cover - compiled
    for j in range(corr.shape[0]):
        for i in range(score.shape[0]):
            best, best_s = corr[j, i * k], 0
            for s in range(1, k):
                if corr[j, i * k + s] > best:
                    best, best_s = corr[j, i * k + s], s
            score[i, j], index[i, j] = best, best_s


def best_over_shifts(corr, *, xp):
    """Best value and its index along the last (shift) axis of ``corr``."""
    index = xp.argmax(corr, axis=-1)
    return xp.take_along_axis(corr, index[..., None], axis=-1)[..., 0], index
