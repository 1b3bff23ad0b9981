"""The local refinement's candidate references, read from the map's 3D spectrum.

Each candidate pose's band spectrum is sampled from the map's padded 3D spectrum at the band's
frequencies (:func:`..central_slices.band_spectra`: no 2D transform); the reference mask of
:meth:`.search.Search.masked` is applied in Fourier space (:class:`ReferenceMasking`), and the
rows are made unit-norm for the GEMM, as :meth:`.search.Search.references` makes the gallery's
(:func:`candidate_references`; on numpy one compiled pass, the array path on cupy).
"""
from __future__ import annotations

import numpy as np

from ..central_slices import band_spectra
from ..runtime.compiled import compiled

__all__ = ["ReferenceMasking", "candidate_references"]


class ReferenceMasking:
    """The reference mask of :meth:`Search.masked` in Fourier space: a projection ``p``
    inside the mask's flat part becomes ``(p - mean) * mask`` = ``p - mean * mask``, whose
    band spectrum is ``P - P(0) / sum(mask) * M`` (``M`` the mask's band spectrum)."""

    def __init__(self, mask_band, mask_sum, dc):
        self.mask_band, self.mask_sum, self.dc = mask_band, mask_sum, dc

    @classmethod
    def of(cls, search):
        import scipy.fft

        mask = np.asarray(search.ref_mask, dtype=np.float32)
        band = search.band
        dc = int(np.flatnonzero((band.ky == 0) & (band.kx == 0))[0])
        return cls(band.take(scipy.fft.rfft2(mask)).astype(np.complex64), float(mask.sum()), dc)

    def apply(self, spectra, xp=np):
        """Masked band spectra ``(m, F)`` complex64, as array operations on ``xp`` (the
        numpy path does it inside :func:`_masked_unit_rows`)."""
        mean = spectra[:, self.dc:self.dc + 1] * np.float32(1.0 / self.mask_sum)
        return spectra - mean * xp.asarray(self.mask_band)[None]


def candidate_references(spec, matrices, search, masking):
    """GEMM matrix ``(m, 2F)`` and CTF power of the projections at ``matrices`` (m, 3, 3), as
    ``search.references(project(...), rotate=False)`` makes them (to float32 rounding for a
    map inside the mask), from the band frequencies of the 3D spectrum alone."""
    xp, band = search.xp, search.band
    with_power = search.ctf_on_references
    if xp is np:  # one compiled pass after the sampling, on its threads: mask, norm, rows
        count = len(np.reshape(matrices, (-1, 9)))
        matrix = np.empty((count, 2 * len(band)), dtype=np.float32)
        power = np.empty((count, len(band)) if with_power else (0, 0), np.float32)

        def finish(rows, sampled):
            _masked_unit_rows(sampled, masking.dc, np.float32(1.0 / masking.mask_sum),
                              masking.mask_band, band.weight,
                              np.float32(1.0 / band.box_px ** 2), matrix[rows],
                              power[rows] if with_power else power, with_power)

        band_spectra(spec, matrices, band.ky, band.kx, finish=finish)
        return matrix, power if with_power else None
    sampled = band_spectra(spec, matrices, band.ky, band.kx, xp=xp)
    spectra = masking.apply(sampled, xp)
    norm = xp.sqrt(xp.maximum(band.norm2(spectra, xp), 1e-24))
    spectra /= norm[:, None].astype(xp.float32)  # in place: the sampled spectra are ours
    matrix = xp.concatenate([spectra.real, spectra.imag], axis=1)  # float32 already
    power = None
    if with_power:
        power = (spectra.real ** 2 + spectra.imag ** 2).astype(xp.float32)
    return matrix, power


@compiled
def _masked_unit_rows(spectra, dc, scale, mask_band, weight, inv_box2, matrix, power,
                      with_power):  # pragma: no cover - compiled
    """:meth:`ReferenceMasking.apply`, the unit band norm and the ``[Re, Im]`` rows (and
    their power) of :func:`candidate_references`, in one pass per candidate."""
    f = spectra.shape[1]
    for i in range(spectra.shape[0]):
        mean = spectra[i, dc] * scale
        total = 0.0
        for q in range(f):
            v = spectra[i, q] - mean * mask_band[q]
            spectra[i, q] = v
            total += weight[q] * (v.real * v.real + v.imag * v.imag)
        inv = 1.0 / np.sqrt(max(total * inv_box2, 1e-24))
        for q in range(f):
            re, im = spectra[i, q].real * inv, spectra[i, q].imag * inv
            matrix[i, q] = re
            matrix[i, f + q] = im
            if with_power:
                power[i, q] = re * re + im * im
