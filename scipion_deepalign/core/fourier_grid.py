"""The half-space Fourier grid of a direct Fourier inversion (:mod:`.reconstruct`).

Samples at 3D frequencies (pixel units of the padded box) are spread onto the 8 surrounding
voxels with trilinear weights; only ``qx >= 0`` is stored (``numpy.fft.rfftn`` layout), a
sample with ``qx < 0`` going in as its complex conjugate at ``-q``. The samples of a batch are
summed into the grid with ``np.bincount`` over the flat voxel index (all 8 neighbours at
once), several times faster than ``np.add.at``; when the grid is much larger than the batch,
the indices are first compacted with ``np.unique`` so the cost does not grow with the grid.
:meth:`FourierAccumulator.volume` completes the plane ``qx = 0``, divides (Wiener-like with a
CTF), inverts, crops and undoes the trilinear kernel (``sinc^2`` gridding correction).
"""
from __future__ import annotations

import numpy as np

__all__ = ["FourierAccumulator"]

# Grids up to this many times the number of entries of a batch are summed densely.
_DENSE_GRID_FACTOR = 4


def _scatter_add(targets, flat, weights) -> None:
    """``np.add.at(t, flat, w)`` for each target and weight, by ``np.bincount``.

    Every target has the same size; repeated indices add up, as with ``np.add.at``.
    """
    size = targets[0].size
    if size <= _DENSE_GRID_FACTOR * flat.size:
        for target, w in zip(targets, weights):
            target += np.bincount(flat, weights=w, minlength=size)
        return
    voxels, inverse = np.unique(flat, return_inverse=True)
    for target, w in zip(targets, weights):
        target[voxels] += np.bincount(inverse, weights=w, minlength=len(voxels))


class FourierAccumulator:
    """Half-space Fourier accumulators ``sum(w c F)``, ``sum(w c^2)`` and ``sum(w)``."""

    def __init__(self, pad_box: int, *, with_ctf: bool):
        self.pad_box = pad_box
        self.shape = (pad_box, pad_box, pad_box // 2 + 1)
        size = int(np.prod(self.shape))
        self.data_re = np.zeros(size, dtype=np.float64)
        self.data_im = np.zeros(size, dtype=np.float64)
        self.weight = np.zeros(size, dtype=np.float64)
        self.ctf2 = np.zeros(size, dtype=np.float64) if with_ctf else None
        self._scratch, self._scratch_m = None, None

    def add_(self, other: FourierAccumulator) -> FourierAccumulator:
        """Add ``other`` in place (no third grid in memory)."""
        self.data_re += other.data_re
        self.data_im += other.data_im
        self.weight += other.weight
        if self.ctf2 is not None:
            self.ctf2 += other.ctf2
        return self

    def _buffers(self, m: int) -> dict:
        """Scratch arrays of shape (8, m), reused between batches of the same size (fresh
        large arrays cost page faults on every batch); dropped by :meth:`release`."""
        if self._scratch_m != m:
            names = ("w", "re", "im") + (("c2",) if self.ctf2 is not None else ())
            self._scratch = {k: np.empty((8, m)) for k in names}
            self._scratch["flat"] = np.empty((8, m), dtype=np.int64)
            self._scratch_m = m
        return self._scratch

    def release(self) -> None:
        """Free the scratch arrays (the grids stay)."""
        self._scratch, self._scratch_m = None, None

    def _neighbours(self, q, buf) -> None:
        """Flat index and trilinear weight of the 8 voxels around each ``q`` (3, M), qx >= 0."""
        p, n_x = self.pad_box, self.shape[2]
        base = np.floor(q)
        frac = q - base
        base = base.astype(np.int64)
        wx, wy, wz = ((1.0 - frac[a], frac[a]) for a in range(3))
        fy = [((base[1] + d) % p) * n_x for d in (0, 1)]
        fz = [((base[2] + d) % p) * (p * n_x) + base[0] for d in (0, 1)]
        for k in range(8):  # neighbour k is (dz, dy, dx) = the bits of k
            dz, dy, dx = k >> 2, (k >> 1) & 1, k & 1
            np.multiply(wz[dz] * wy[dy], wx[dx], out=buf["w"][k])
            np.add(fz[dz] + fy[dy], dx, out=buf["flat"][k])

    def insert(self, q, values, ctf2):
        """Spread samples at 3D frequencies ``q`` (M, 3) in (x, y, z) order, pixel units."""
        q = np.array(q.T)  # (3, M): contiguous rows
        flip = q[0] < 0
        q[:, flip] *= -1.0
        imag = np.where(flip, -values.imag, values.imag)  # conjugates at -q
        buf = self._buffers(q.shape[1])
        self._neighbours(q, buf)
        w = buf["w"]
        targets = [self.data_re, self.data_im, self.weight]
        weights = [np.multiply(w, values.real, out=buf["re"]),
                   np.multiply(w, imag, out=buf["im"]), w]
        if ctf2 is not None:
            targets.append(self.ctf2)
            weights.append(np.multiply(w, ctf2, out=buf["c2"]))
        _scatter_add(targets, buf["flat"].ravel(), [x.ravel() for x in weights])

    def volume(self, box_px: int, *, wiener_constant: float) -> np.ndarray:
        """Finalise: Hermitian plane, division, inverse FFT, crop, gridding correction."""
        p = self.pad_box
        mirror = np.ix_((-np.arange(p)) % p, (-np.arange(p)) % p)

        def plane_completed(flat, conj=False):
            # Plane qx = 0 also receives the conjugates of samples with qx in [0, 1).
            grid = flat.reshape(self.shape).copy()
            other = grid[:, :, 0][mirror]
            grid[:, :, 0] += np.conj(other) if conj else other
            return grid

        data = plane_completed(self.data_re + 1j * self.data_im, conj=True)
        denom = plane_completed(self.weight)
        if self.ctf2 is not None:
            denom = plane_completed(self.ctf2) + wiener_constant * denom
        spectrum = np.divide(data, denom, out=np.zeros_like(data), where=denom > 1e-8)
        vol = np.fft.fftshift(np.fft.irfftn(spectrum, s=(p, p, p)))
        start = p // 2 - box_px // 2
        vol = vol[start:start + box_px, start:start + box_px, start:start + box_px]
        r = (np.arange(box_px) - box_px // 2) / p
        s2 = np.sinc(r) ** 2
        vol = vol / (s2[:, None, None] * s2[None, :, None] * s2[None, None, :])
        if not np.all(np.isfinite(vol)):
            raise ValueError("the reconstruction has non-finite voxels (NaN or Inf); check "
                             "the particles' CTF parameters and the Wiener constant")
        return vol.astype(np.float32)
