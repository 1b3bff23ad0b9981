"""Region tables of a model folder (``regions.star``): centres, symmetry and spacing."""
from __future__ import annotations

import numpy as np

from .columns import (
    REGION_COUNT_COLUMN,
    REGION_ID_COLUMN,
    REGION_SPACING_COLUMN,
    SYMMETRY_COLUMN,
    regions_from_star,
    regions_to_star,
)
from .star_tables import float_column, read_star_blocks, write_star_blocks

__all__ = ["write_regions_star", "read_regions_star"]


def write_regions_star(path, centres_deg, *, symmetry, spacing_deg) -> None:
    """Write region centres: ``data_deepalign_general`` (symmetry, spacing, count) and
    ``data_regions`` (region number 1-based, ``rlnAngleRot``, ``rlnAngleTilt``); column
    names in :mod:`.columns`.

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
    general = {SYMMETRY_COLUMN: [str(symmetry)],
               REGION_SPACING_COLUMN: [float(spacing_deg)],
               REGION_COUNT_COLUMN: [len(centres)]}
    regions = {REGION_ID_COLUMN: regions_to_star(np.arange(len(centres))),
               "rlnAngleRot": centres[:, 0], "rlnAngleTilt": centres[:, 1]}
    write_star_blocks(path, {"deepalign_general": general, "regions": regions},
                      single_row=("deepalign_general",))


def read_regions_star(path) -> tuple[np.ndarray, str, float]:
    """Read a file written by :func:`write_regions_star`.

    Returns
    -------
    centres_deg : ndarray of shape (R, 2)
        Ordered by region number.
    symmetry : str
    spacing_deg : float
    """
    blocks = read_star_blocks(path)
    id_column = REGION_ID_COLUMN
    for bname, cols in (("deepalign_general", (SYMMETRY_COLUMN, REGION_SPACING_COLUMN)),
                        ("regions", (id_column, "rlnAngleRot", "rlnAngleTilt"))):
        if bname not in blocks:
            raise ValueError(f"{path}: not a regions file (no data_{bname} block)")
        missing = [c for c in cols if c not in blocks[bname]]
        if missing:
            raise ValueError(f"{path}: data_{bname} lacks column(s) {missing}")
    general, regions = blocks["deepalign_general"], blocks["regions"]
    try:
        order = np.argsort(regions_from_star(regions[id_column], f"column {id_column}"))
    except ValueError as exc:
        raise ValueError(f"{path}: data_regions {exc}") from None
    centres = np.stack([float_column(regions, "rlnAngleRot", path),
                        float_column(regions, "rlnAngleTilt", path)], axis=1)[order]
    return (centres, str(general[SYMMETRY_COLUMN][0]),
            float(general[REGION_SPACING_COLUMN][0]))
