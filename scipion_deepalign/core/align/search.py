"""The correlation search: what one alignment carries from stage to stage, and its steps.

:class:`Search` holds what travels together through an alignment: the array backend
(numpy or cupy), the search box and its scale to the original images, the direction step
and in-plane grid, the Fourier band, the shift window and its phases, the reference and
particle masks, and the particles' CTF with the CTF mode. Its methods are the steps of a
search on one block of particles, written once for the gallery search
(:mod:`scipion_deepalign.core.align.align`) and the local refinement
(:mod:`scipion_deepalign.core.align.local_refinement`):

* :meth:`Search.particles` — band spectra of (downsampled) particles, CTF-weighted;
* :meth:`Search.references` — masked, in-plane rotated references as a GEMM matrix;
* :meth:`Search.keep_best` — correlate a block with a reference chunk (one GEMM; the block
  halved on out-of-memory errors) and keep the running N best (:class:`BestPoses`);
* :meth:`Search.subpixel` — parabolic sub-pixel position of the best correlation peaks.

The maths (normalisation, CTF modes, correlation sign) is in
:mod:`scipion_deepalign.core.align.matching`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..defaults import ALIGN_BATCH
from ..runtime.backend import is_out_of_memory, to_numpy
from . import matching
from .gallery import rotate_selected, rotate_to_psi
from .reference_bank import ReferenceBank
from .search_geometry import search_geometry
from .shift_gemm import shift_rows

__all__ = ["Search", "BestPoses", "peak_significance"]

logger = logging.getLogger(__name__)

#: prepared references kept for a whole alignment (:meth:`Search.reference_bank`) at most
_BANK_BYTES = 1 << 30
_BLOCK_ELEMENTS = 1 << 23  # bound on n * m * K (correlations held at once, 32 MB float32)
#: bound on the shifted references of :meth:`Search.keep_best` (``m K x 2F`` float32)
_SHIFTED_REFS_BYTES = 64 << 20
_SUBPIXEL_CHUNK = 1024  # particles whose full correlation maps are held at once


class BestPoses:
    """Running N best (score, reference, shift) of a block of particles, best first.

    Attributes
    ----------
    score : float32 ndarray of shape (n, n_best)
    ref : int ndarray of shape (n, n_best)
        Reference index: direction index * P + in-plane index.
    shift : int ndarray of shape (n, n_best)
        Index into the search's shift window.
    total, total_sq : float64 ndarray of shape (n,)
        Sum and sum of squares of every score met (each reference's best over the shifts).
    count : int ndarray of shape (n,)
        Number of scores met (for :meth:`significance`).
    """

    def __init__(self, n: int, n_best: int):
        self.score = np.full((n, n_best), -np.inf, dtype=np.float32)
        self.ref = np.zeros((n, n_best), dtype=np.int64)
        self.shift = np.zeros((n, n_best), dtype=np.int64)
        self.total = np.zeros(n)
        self.total_sq = np.zeros(n)
        self.count = np.zeros(n, dtype=np.int64)

    def significance(self) -> np.ndarray:
        """:func:`peak_significance` of each particle's best score among the scores met."""
        return peak_significance(self.score[:, 0], self.total, self.total_sq, self.count)

    def merge(self, score, shift, sel, ref_base: int) -> None:
        """Merge scores of particles ``sel`` with references ``ref_base...`` (in place).

        ``score``, ``shift`` are ``(len(sel), m)`` numpy arrays: scores and best-shift indices;
        ``sel`` holds distinct rows.
        """
        self.total[sel] += score.sum(axis=1, dtype=np.float64)
        self.total_sq[sel] += np.einsum("ij,ij->i", score, score, dtype=np.float64)
        self.count[sel] += score.shape[1]
        k = self.score.shape[1]
        if k == 1:
            j = np.argmax(score, axis=1)
            s = score[np.arange(len(sel)), j]
            better = s > self.score[sel, 0]
            rows = sel[better]
            self.score[rows, 0] = s[better]
            self.ref[rows, 0] = ref_base + j[better]
            self.shift[rows, 0] = shift[better, j[better]]
            return
        take = min(k, score.shape[1])
        top = np.argpartition(-score, take - 1, axis=1)[:, :take]
        self._keep_best(sel, np.take_along_axis(score, top, 1), ref_base + top,
                        np.take_along_axis(shift, top, 1))

    def absorb(self, other: BestPoses, *, ref_base: int) -> None:
        """Take in the poses of a second search of the same particles (in place): its scores
        counted with these, its references offset by ``ref_base``, the N best of both kept."""
        self.total += other.total
        self.total_sq += other.total_sq
        self.count += other.count
        self._keep_best(slice(None), other.score, other.ref + int(ref_base), other.shift)

    def _keep_best(self, sel, score, ref, shift) -> None:
        """The N best of the rows ``sel`` and the candidates ``(score, ref, shift)`` (arrays
        of those rows, any number of columns), best first; the earlier first among equals."""
        all_s = np.concatenate([self.score[sel], score], axis=1)
        all_r = np.concatenate([self.ref[sel], ref], axis=1)
        all_h = np.concatenate([self.shift[sel], shift], axis=1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :self.score.shape[1]]
        self.score[sel] = np.take_along_axis(all_s, order, 1)
        self.ref[sel] = np.take_along_axis(all_r, order, 1)
        self.shift[sel] = np.take_along_axis(all_h, order, 1)


def peak_significance(best, total, total_sq, count) -> np.ndarray:
    """How far a best score stands out from the ``count`` scores it was chosen among.

    ``(best - mean) / std`` of those scores, divided by ``sqrt(2 ln count)``, which is about
    where the largest of ``count`` independent normal values lies. So about 1 (or below)
    says the best pose stands out no more than the best of as many pure-noise scores would:
    typically a particle whose true pose was not searched. A clear peak is well above 1
    (measured values: docs/benchmarks_accuracy.md). 0 where fewer than two scores were met.
    """
    count = np.asarray(count, dtype=np.float64)
    n = np.maximum(count, 1.0)
    mean = np.asarray(total) / n
    std = np.sqrt(np.maximum(np.asarray(total_sq) / n - mean ** 2, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(best, dtype=np.float64) - mean) / std
        out = z / np.sqrt(2.0 * np.log(np.maximum(count, 2.0)))
    return np.where((count >= 2) & (std > 0), out, 0.0)


@dataclass
class Search:
    """Settings and arrays of one correlation search (see the module docstring).

    Attributes
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    box_px, pixel_size_a : int, float
        Search box and its pixel size.
    scale : float
        Original box / search box (shifts are multiplied by it on the way out).
    step_deg : float
        Direction step of the galleries.
    psi_deg : ndarray of shape (P,)
        In-plane grid.
    max_shift_px : float
        Shift disc radius in search pixels.
    band : matching.FourierBand
    offsets : int ndarray of shape (K, 2)
        ``(dy, dx)`` of the shift window.
    phases : complex array of shape (F, K)
        :meth:`FourierBand.shift_phases` of the window, on ``xp``.
    ref_mask, particle_mask : ndarray of shape (B, B)
        References are masked at the particle radius; particles at that radius plus the
        largest shift, so that a shifted particle keeps all of its signal.
    ctf : CTFParams or None
        CTF of all particles (the block's rows are taken by :meth:`ctf_half`).
    ctf_mode : {"apply", "flip", "flipped"}
    batch : int
        Particles per correlation block (halved on out-of-memory errors, for good).
    block_elements : int
        Most correlations (particles x references x shifts) held at once (halved on
        out-of-memory errors too): with the shift on the references' side
        (:func:`.shift_gemm.shift_rows`) the only bound on a block's particles.
    """

    xp: object
    box_px: int
    pixel_size_a: float
    scale: float
    step_deg: float
    psi_deg: np.ndarray
    max_shift_px: float
    band: matching.FourierBand
    offsets: np.ndarray
    phases: object
    ref_mask: np.ndarray
    particle_mask: np.ndarray
    ctf: object = None
    ctf_mode: str = "apply"
    batch: int = ALIGN_BATCH
    mask_radius_px: float = 0.0
    block_elements: int = _BLOCK_ELEMENTS

    @classmethod
    def create(cls, box_px: int, pixel_size_a: float, *, max_shift_px: float, xp=np,
               target_resolution_a=None, mask_radius_px=None, step_deg=None,
               psi_step_deg=None, ctf=None, ctf_mode="apply", batch_size=ALIGN_BATCH,
               refine=False) -> Search:
        """The search geometry for ``box_px`` images (arguments as ``align_particles``;
        ``refine``: the local refinement follows, so the automatic step is coarser)."""
        g = search_geometry(box_px, pixel_size_a, max_shift_px=max_shift_px,
                            target_resolution_a=target_resolution_a,
                            mask_radius_px=mask_radius_px, step_deg=step_deg,
                            psi_step_deg=psi_step_deg, refine=refine)
        small, pixel_small, scale, radius = g.box_px, g.pixel_size_a, g.scale, g.radius_px
        step, psi, shift, offsets = g.step_deg, g.psi_deg, g.max_shift_px, g.offsets
        band = matching.FourierBand.of_box(small)
        return cls(xp, small, pixel_small, scale, step, psi, shift, band, offsets,
                   band.shift_phases(offsets, xp), matching.soft_mask(small, radius),
                   matching.soft_mask(small, min(small / 2 - 1, radius + shift)),
                   ctf, ctf_mode, int(batch_size), radius)

    def finer(self, target_resolution_a) -> Search:
        """The same search on the box of ``target_resolution_a`` (None: the full box): the
        local refinement's. Same step, in-plane grid, shift disc and mask radius (in
        Angstrom), CTF and batch; ``self`` when the box is the same."""
        box = int(round(self.box_px * self.scale))
        pixel = self.pixel_size_a / self.scale
        finer = Search.create(box, pixel, max_shift_px=self.max_shift_px * self.scale,
                              xp=self.xp, target_resolution_a=target_resolution_a,
                              mask_radius_px=self.mask_radius_px * self.scale,
                              step_deg=self.step_deg, psi_step_deg=360.0 / self.n_psi,
                              ctf=self.ctf, ctf_mode=self.ctf_mode, batch_size=self.batch)
        return self if finer.box_px == self.box_px else finer

    @property
    def n_psi(self) -> int:
        return len(self.psi_deg)

    @property
    def ctf_on_references(self) -> bool:
        """Whether the references' CTF-weighted norm is needed (``"apply"``, ``"flipped"``)."""
        return self.ctf is not None and self.ctf_mode in ("apply", "flipped")

    # --- particles -----------------------------------------------------------------------
    def downsample(self, images: np.ndarray) -> np.ndarray:
        """Images ``(n, B0, B0)`` on the search box (Fourier crop), float32."""
        if self.scale == 1:
            return images
        from ..imageops import fourier_crop
        return np.asarray(fourier_crop(images, self.box_px), dtype=np.float32)

    def downsample_volume(self, volume: np.ndarray) -> np.ndarray:
        if self.scale == 1:
            return volume
        from ..imageops import fourier_crop_volume
        return np.asarray(fourier_crop_volume(volume, self.box_px), dtype=np.float32)

    def ctf_half(self, rows) -> np.ndarray | None:
        """CTF of particles ``rows`` in ``rfft2`` layout on the search box (None without CTF)."""
        if self.ctf is None:
            return None
        from ..ctf import ctf_half_images
        return ctf_half_images(self.box_px, self.pixel_size_a, self.ctf.subset(rows))

    def particles(self, images, ctf_half=None):
        """Band spectra and CTF power of search-box particles (``prepare_particles``)."""
        return matching.prepare_particles(images, xp=self.xp, mask=self.particle_mask,
                                          band=self.band, ctf_half=ctf_half,
                                          ctf_mode=self.ctf_mode)

    # --- references ----------------------------------------------------------------------
    def masked(self, projections):
        """Projections masked at the particle radius, zero mean inside (numpy)."""
        return matching.mask_zero_mean(projections, self.ref_mask)

    def references(self, projections, *, rotate=True):
        """GEMM matrix ``(m P, 2F)`` (and CTF power) of every in-plane copy of ``projections``.

        Masked first, then rotated: the circular mask commutes with the rotation. With
        ``rotate=False`` the ``m`` projections are taken as they are.
        """
        refs = self.masked(projections)
        if rotate:
            refs = rotate_to_psi(refs, self.psi_deg).reshape(-1, self.box_px, self.box_px)
        return matching.prepare_references(refs, xp=self.xp, mask=None, band=self.band,
                                           with_power=self.ctf_on_references)

    def reference_bank(self, projections, *, chunk: int):
        """:class:`~.reference_bank.ReferenceBank` of ``projections`` (every in-plane copy,
        prepared once), or None when it would take more than 1 GB (then each chunk is prepared
        as it is met)."""
        if len(projections) * self.n_psi * 2 * len(self.band) * 4 > _BANK_BYTES:
            return None
        xp = self.xp
        parts = [self.references(projections[d0:d0 + chunk])[0]
                 for d0 in range(0, len(projections), chunk)]
        matrix = xp.concatenate(parts) if parts else xp.zeros((0, 2 * len(self.band)),
                                                               xp.float32)
        return ReferenceBank(matrix, self.n_psi, with_power=self.ctf_on_references)

    def best_references(self, projections, psi_index):
        """Each projection masked and rotated to its own in-plane angle (index into the grid)."""
        return rotate_selected(self.masked(projections), self.psi_deg, psi_index)

    # --- search --------------------------------------------------------------------------
    def keep_best(self, spectra, power, rows, references, best: BestPoses, *,
                  ref_base: int) -> int:
        """Correlate particles ``rows`` of a block with one reference chunk; keep the best.

        ``spectra``/``power`` are :meth:`particles` of the block, ``references`` the
        :meth:`references` of the chunk, whose first column is reference ``ref_base``.
        Returns the number of comparisons (particles times references).
        """
        ref_matrix, ref_power = references
        xp, m, k = self.xp, ref_matrix.shape[0], self.phases.shape[1]
        # fewer references than particles (a regional group of directions): shift the
        # references once for all the blocks, not each block's particles (shift_gemm)
        shifted = None
        if m < len(rows) and m * k * ref_matrix.shape[1] * 4 <= _SHIFTED_REFS_BYTES:
            shifted = shift_rows(ref_matrix, self.phases, xp=xp)
        start = 0
        while start < len(rows):
            # the correlations held at once are bounded in both layouts; the particles at
            # every shift (shift columns) only in the particles' one
            nb = max(1, self.block_elements // (m * k))
            nb = nb if shifted is not None else min(self.batch, nb)
            sel = rows[start:start + nb]
            local = xp.asarray(sel)
            try:
                score, shift = matching.correlate_block(
                    spectra[local], ref_matrix, self.phases, xp=xp,
                    particle_power=None if power is None else power[local], ref_power=ref_power,
                    shifted_refs=shifted)
                score, shift = to_numpy(score), to_numpy(shift)
            except Exception as exc:
                if not is_out_of_memory(exc) or nb == 1:
                    raise
                self.batch = max(1, min(self.batch, nb) // 2)  # never more than before
                self.block_elements = max(1, self.block_elements // 2)
                logger.warning("out of memory with %d particles per block; retrying with %d",
                               nb, nb // 2)
                self._free_gpu_memory()
                continue
            best.merge(score, shift, sel, ref_base)
            start += len(sel)
        return len(rows) * m

    def subpixel(self, spectra, references, peaks_yx) -> np.ndarray:
        """Parabolic sub-pixel correction ``(dy, dx)`` (each in ±0.5) of correlation peaks.

        ``spectra`` are :meth:`particles`, ``references`` ``(n, B, B)`` their best
        references (:meth:`best_references`), ``peaks_yx`` ``(n, 2)`` the integer peaks.
        The full correlation map is used, so a peak at the window's edge has neighbours.
        """
        n, box = len(peaks_yx), self.box_px
        out = np.zeros((n, 2))
        for start in range(0, n, _SUBPIXEL_CHUNK):
            sel = np.arange(start, min(n, start + _SUBPIXEL_CHUNK))
            ref_matrix, _ = matching.prepare_references(references[sel], xp=self.xp,
                                                        mask=None, band=self.band)
            corr = to_numpy(matching.correlation_maps(spectra[self.xp.asarray(sel)],
                                                      ref_matrix, self.band, xp=self.xp))
            out[sel] = matching.parabolic_peak(_on_maps(corr, peaks_yx[sel], box))
        return out

    def _free_gpu_memory(self) -> None:
        if self.xp is not np:
            try:
                self.xp.get_default_memory_pool().free_all_blocks()
            except Exception:  # pragma: no cover - best effort
                pass


def _on_maps(corr, peaks_yx, box):
    """``value_at(dy, dx)`` of :func:`matching.parabolic_peak` on periodic correlation maps."""
    rows = np.arange(len(peaks_yx))
    return lambda dy, dx: corr[rows, (peaks_yx[:, 0] + dy) % box, (peaks_yx[:, 1] + dx) % box]
