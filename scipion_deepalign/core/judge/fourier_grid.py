"""The half-space Fourier grid of a direct Fourier inversion (:mod:`.reconstruct`).

Samples at 3D frequencies (pixel units of the padded box) are spread onto the 8 surrounding
voxels with trilinear weights; only ``qx >= 0`` is stored (``numpy.fft.rfftn`` layout), a
sample with ``qx < 0`` going in as its complex conjugate at ``-q``. The grid is one array of
shape (voxels, 3 or 4), the sums ``w Re(cF)``, ``w Im(cF)``, ``w`` and, with a CTF, ``w c^2``
side by side, so a voxel's four sums share one cache line. The spreading is one compiled
loop (numba, ``nogil``): each sample's weights, voxel indices and the four sums in one pass,
about ten times faster than ``np.bincount`` over the flat index (four passes over eight
neighbour arrays), and it lets threads grid side by side.
:meth:`FourierAccumulator.volume` completes the plane ``qx = 0``, divides (Wiener-like with a
CTF), inverts, crops and undoes the trilinear kernel (``sinc^2`` gridding correction).
"""
from __future__ import annotations

import numpy as np

from ..runtime.compiled import compiled

__all__ = ["FourierAccumulator"]

# Columns of the grid.
_RE, _IM, _W, _C2 = 0, 1, 2, 3


@compiled
def _spread(grid, k, mats, values, ctf2, pad_box):  # pragma: no cover - compiled
    """Add the samples ``k`` (S, 3) of every image i, rotated to ``q = k @ mats[i]``.

    ``values`` (B, S) complex, ``ctf2`` (B, S) their squared CTF or shape (0, 0).
    """
    n_x = pad_box // 2 + 1
    with_ctf = ctf2.shape[0] > 0
    for i in range(mats.shape[0]):
        m = mats[i]
        for j in range(k.shape[0]):
            kx, ky, kz = k[j, 0], k[j, 1], k[j, 2]
            qx = kx * m[0, 0] + ky * m[1, 0] + kz * m[2, 0]
            qy = kx * m[0, 1] + ky * m[1, 1] + kz * m[2, 1]
            qz = kx * m[0, 2] + ky * m[1, 2] + kz * m[2, 2]
            v_re, v_im = values[i, j].real, values[i, j].imag
            if qx < 0.0:  # the conjugate at -q
                qx, qy, qz, v_im = -qx, -qy, -qz, -v_im
            fx, fy, fz = np.floor(qx), np.floor(qy), np.floor(qz)
            tx, ty, tz = qx - fx, qy - fy, qz - fz
            ix, iy, iz = int(fx), int(fy), int(fz)
            for dz in range(2):
                wz = tz if dz else 1.0 - tz
                z = (iz + dz) % pad_box
                for dy in range(2):
                    wzy = wz * (ty if dy else 1.0 - ty)
                    row = (z * pad_box + (iy + dy) % pad_box) * n_x + ix
                    for dx in range(2):
                        w = wzy * (tx if dx else 1.0 - tx)
                        v = row + dx
                        grid[v, _RE] += w * v_re
                        grid[v, _IM] += w * v_im
                        grid[v, _W] += w
                        if with_ctf:
                            grid[v, _C2] += w * ctf2[i, j]


class FourierAccumulator:
    """Half-space Fourier accumulators ``sum(w c F)``, ``sum(w c^2)`` and ``sum(w)``."""

    def __init__(self, pad_box: int, *, with_ctf: bool):
        self.pad_box = pad_box
        self.shape = (pad_box, pad_box, pad_box // 2 + 1)
        size = int(np.prod(self.shape))
        self.grid = np.zeros((size, 4 if with_ctf else 3), dtype=np.float64)

    # The four sums as flat views of the grid (one value per voxel).
    data_re = property(lambda self: self.grid[:, _RE])
    data_im = property(lambda self: self.grid[:, _IM])
    weight = property(lambda self: self.grid[:, _W])
    ctf2 = property(lambda self: self.grid[:, _C2] if self.grid.shape[1] > _C2 else None)

    def add_(self, other: FourierAccumulator) -> FourierAccumulator:
        """Add ``other`` in place (no third grid in memory)."""
        self.grid += other.grid
        return self

    def insert_planes(self, k, mats, values, ctf2) -> None:
        """Spread the Fourier samples ``k`` (S, 3) of B images at poses ``mats`` (B, 3, 3):
        image i's sample j goes to ``q = k[j] @ mats[i]``.

        ``values`` (B, S) complex; ``ctf2`` (B, S) the squared CTF of each sample, or None
        (then the grid must have been made ``with_ctf=False``).
        """
        if (ctf2 is None) != (self.ctf2 is None):
            raise ValueError("ctf2 must be given exactly when the grid is made with_ctf")
        mats = np.ascontiguousarray(mats, dtype=np.float64).reshape(-1, 3, 3)
        shape = (len(mats), -1)  # no copy of arrays already so (once per symmetry operator)
        values = np.ascontiguousarray(values, dtype=np.complex128).reshape(shape)
        c2 = (np.empty((0, 0)) if ctf2 is None
              else np.ascontiguousarray(ctf2, dtype=np.float64).reshape(shape))
        _spread(self.grid, np.ascontiguousarray(k, dtype=np.float64).reshape(-1, 3), mats,
                values, c2, self.pad_box)

    def insert(self, q, values, ctf2) -> None:
        """Spread samples at 3D frequencies ``q`` (M, 3) in (x, y, z) order, pixel units."""
        self.insert_planes(q, np.eye(3)[None], np.asarray(values).reshape(1, -1),
                           None if ctf2 is None else np.asarray(ctf2).reshape(1, -1))

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
