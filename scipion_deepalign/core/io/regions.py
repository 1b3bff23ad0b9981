"""Region tables of a model folder (``regions.star``): centres, symmetry and spacing."""
from __future__ import annotations

import numpy as np

from .star_tables import float_column, read_star_blocks, write_star_blocks

__all__ = ["write_regions_star", "read_regions_star"]


def write_regions_star(path, centres_deg, *, symmetry, spacing_deg) -> None:
    """Write region centres: ``data_deepalign_general`` (symmetry, spacing, count) and
    ``data_regions`` (``deepalignRegion`` 1-based, ``rlnAngleRot``, ``rlnAngleTilt``).

    Parameters
    ----------
    path : str or path-like
    centres_deg : array_like of shape (R, 2)
        ``(rot, tilt)`` of each region centre in degrees.
    symmetry : str
    spacing_deg : float
    """
    centres = np.asarray(centres_deg, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2 or len(centres) == 0:
        raise ValueError(f"centres_deg must have shape (R, 2) with R > 0, got {centres.shape}")
    if not spacing_deg > 0:
        raise ValueError(f"spacing_deg must be positive, got {spacing_deg}")
    general = {"deepalignSymmetry": [str(symmetry)],
               "deepalignRegionSpacingDeg": [float(spacing_deg)],
               "deepalignRegionCount": [len(centres)]}
    regions = {"deepalignRegion": np.arange(1, len(centres) + 1),
               "rlnAngleRot": centres[:, 0], "rlnAngleTilt": centres[:, 1]}
    write_star_blocks(path, {"deepalign_general": general, "regions": regions},
                      single_row=("deepalign_general",))


def read_regions_star(path) -> tuple[np.ndarray, str, float]:
    """Read a file written by :func:`write_regions_star`.

    Returns
    -------
    centres_deg : ndarray of shape (R, 2)
        Ordered by ``deepalignRegion``.
    symmetry : str
    spacing_deg : float
    """
    blocks = read_star_blocks(path)
    for bname, cols in (("deepalign_general", ("deepalignSymmetry", "deepalignRegionSpacingDeg")),
                        ("regions", ("deepalignRegion", "rlnAngleRot", "rlnAngleTilt"))):
        if bname not in blocks:
            raise ValueError(f"{path}: not a regions file (no data_{bname} block)")
        missing = [c for c in cols if c not in blocks[bname]]
        if missing:
            raise ValueError(f"{path}: data_{bname} lacks column(s) {missing}")
    general, regions = blocks["deepalign_general"], blocks["regions"]
    order = np.argsort(regions["deepalignRegion"].astype(np.int64))
    centres = np.stack([float_column(regions, "rlnAngleRot", path),
                        float_column(regions, "rlnAngleTilt", path)], axis=1)[order]
    return (centres, str(general["deepalignSymmetry"][0]),
            float(general["deepalignRegionSpacingDeg"][0]))
