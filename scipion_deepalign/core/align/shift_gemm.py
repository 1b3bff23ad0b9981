"""The shift search's GEMM layouts and the best shift of each correlation (numpy/cupy).

:func:`.matching.correlate_block` either multiplies the references ``(m, 2F)`` by the
particles at every shift of the window, :func:`shift_columns` ``(2F, n K)``, and reduces the
``(m, n K)`` product with :func:`best_over_shift_columns`; or, where the references are the
fewer (a regional search's small groups of directions met by many particles), multiplies the
references at every shift, :func:`shift_rows` ``(m K, 2F)`` (made once for all the particles
that meet them), by the particles ``(2F, n)`` and reduces the ``(m K, n)`` product with
:func:`best_over_shift_rows`. The two give the same correlations (``Re sum_k conj(R(k)) P(k)
phase(k, s)``, the phase put on either side). On numpy the passes are compiled (numba); on
cupy they are array expressions, the same maths.
"""
from __future__ import annotations

import numpy as np

from ..runtime.compiled import compiled

__all__ = ["shifted_particles", "shift_columns", "best_over_shift_columns",
           "best_over_shifts", "shift_rows", "particle_rows", "best_over_shift_rows",
           "pair_cross_spectra"]


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


def shift_rows(ref_matrix, phases, *, xp):
    """The ``(m K, 2F)`` left-hand matrix of the shifted-references layout: row ``j K + s`` is
    ``[Re T_j(., s), -Im T_j(., s)]`` with ``T_j(k, s) = conj(R_j(k)) phases(k, s)``, so that
    its product with :func:`particle_rows` is the correlation of :func:`shift_columns`'s."""
    m, f2 = ref_matrix.shape
    f, k = f2 // 2, phases.shape[1]
    if xp is not np:
        r = ref_matrix[:, :f] - 1j * ref_matrix[:, f:]  # conj(R): (m, F)
        t = r[:, None, :] * phases.T[None]  # (m, K, F)
        return xp.ascontiguousarray(xp.concatenate([t.real, -t.imag], axis=2).reshape(
            m * k, f2).astype(xp.float32))
    out = np.empty((m * k, f2), dtype=np.float32)
    _shift_rows(np.ascontiguousarray(ref_matrix, dtype=np.float32),
                np.ascontiguousarray(np.asarray(phases, dtype=np.complex64).T), out)
    return out


@compiled
def _shift_rows(refs, phases_t, out):  # pragma: no cover - compiled
    m, f2 = refs.shape
    f = f2 // 2
    k = phases_t.shape[0]
    for j in range(m):
        for s in range(k):
            row = j * k + s
            for q in range(f):
                a_re, a_im = refs[j, q], -refs[j, f + q]  # conj(R)
                b_re, b_im = phases_t[s, q].real, phases_t[s, q].imag
                out[row, q] = a_re * b_re - a_im * b_im
                out[row, f + q] = -(a_re * b_im + a_im * b_re)


def particle_rows(particle_spectra, *, xp):
    """The ``(2F, n)`` right-hand matrix of the shifted-references layout: ``[Re P; Im P]``."""
    return xp.ascontiguousarray(xp.concatenate([particle_spectra.real.T,
                                                particle_spectra.imag.T]).astype(xp.float32))


def best_over_shift_rows(corr, k: int, *, xp):
    """Best value ``(n, m)`` and its shift index ``(n, m)`` of ``corr`` ``(m K, n)``, whose
    row ``j K + s`` is reference ``j`` at shift ``s`` (the first of equal values wins, as
    ``argmax``)."""
    mk, n = corr.shape
    m = mk // k
    if xp is not np:
        return best_over_shifts(corr.reshape(m, k, n).transpose(2, 0, 1), xp=xp)
    score = np.empty((m, n), dtype=corr.dtype)
    index = np.empty((m, n), dtype=np.int64)
    _best_over_shift_rows(np.ascontiguousarray(corr), k, score, index)
    return score.T, index.T


@compiled
def _best_over_shift_rows(corr, k, score, index):  # pragma: no cover - compiled
    n = corr.shape[1]
    for j in range(corr.shape[0] // k):  # score, index: (m, n), read and written by rows
        for i in range(n):
            score[j, i], index[j, i] = corr[j * k, i], 0
        for s in range(1, k):
            for i in range(n):
                if corr[j * k + s, i] > score[j, i]:
                    score[j, i], index[j, i] = corr[j * k + s, i], s


def pair_cross_spectra(particle_spectra, ref_matrix, *, xp):
    """``[Re X, Im X]`` with ``X = conj(R_ij) P_i`` for particle ``i`` and each of its own
    references ``j``: ``(n c, 2F)`` float32 from spectra ``(n, F)`` and references
    ``(n, c, 2F)`` (the left-hand matrix of :func:`.matching.correlate_pairs`; on numpy one
    compiled pass instead of four products and a concatenation)."""
    n, c, f2 = ref_matrix.shape
    f = f2 // 2
    if xp is not np:
        p_re, p_im = particle_spectra.real[:, None, :], particle_spectra.imag[:, None, :]
        r_re, r_im = ref_matrix[..., :f], ref_matrix[..., f:]
        cross = xp.concatenate([r_re * p_re + r_im * p_im, r_re * p_im - r_im * p_re], axis=2)
        return cross.reshape(n * c, f2).astype(xp.float32, copy=False)
    out = np.empty((n * c, f2), dtype=np.float32)
    _pair_cross_spectra(np.ascontiguousarray(particle_spectra, dtype=np.complex64),
                        np.ascontiguousarray(ref_matrix, dtype=np.float32), out)
    return out


@compiled
def _pair_cross_spectra(spectra, refs, out):  # pragma: no cover - compiled
    n, c, f2 = refs.shape
    f = f2 // 2
    for i in range(n):
        for j in range(c):
            row = i * c + j
            for q in range(f):
                p_re, p_im = spectra[i, q].real, spectra[i, q].imag
                r_re, r_im = refs[i, j, q], refs[i, j, f + q]
                out[row, q] = r_re * p_re + r_im * p_im
                out[row, f + q] = r_re * p_im - r_im * p_re
