"""A slow, obviously correct real-space projector, used only by tests as an oracle.

``p(x, y) = sum_z V(A.T @ (x, y, z))`` with ``A = euler_to_matrix(angles)``, coordinates measured
from the centre ``B // 2``, the map indexed ``[z, y, x]`` and sampled by scipy spline
interpolation (zero outside the box). The sum runs over every ``z`` that can meet the box.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from scipion_deepalign.core.geometry import euler_to_matrix


def reference_project(volume, angles_deg, *, order: int = 3, use_transpose: bool = True):
    """Real-space projections of ``volume`` at poses ``angles_deg`` (N, 3) -> (N, B, B).

    ``use_transpose=False`` samples at ``A @ r`` instead of ``A.T @ r`` (the wrong convention),
    for tests that show the difference.
    """
    vol = np.asarray(volume, dtype=np.float64)
    box = vol.shape[0]
    c = box // 2
    half_depth = int(np.ceil(box * np.sqrt(3) / 2)) + 1
    x = np.arange(box) - c
    z = np.arange(-half_depth, half_depth + 1)
    zz, yy, xx = np.meshgrid(z, x, x, indexing="ij")  # (Z, Y, X) image-frame coordinates
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()]).astype(np.float64)  # (3, M)
    out = []
    for m in euler_to_matrix(np.atleast_2d(angles_deg)):
        r = (m.T if use_transpose else m) @ pts  # map coordinates (x, y, z)
        vals = ndimage.map_coordinates(vol, [r[2] + c, r[1] + c, r[0] + c], order=order,
                                       mode="grid-constant", cval=0.0)
        out.append(vals.reshape(zz.shape).sum(axis=0))
    return np.asarray(out, dtype=np.float32)
