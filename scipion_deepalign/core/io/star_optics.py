"""RELION column names and optics-table rules that reading (:mod:`.star`) and writing
(:mod:`.star_write`) share: one place for both. Import public names from
:mod:`scipion_deepalign.core.io`; these are internal to the STAR modules.
"""
from __future__ import annotations

import numpy as np

from ..particles import DEFAULT_AMPLITUDE_CONTRAST, DEFAULT_CS_MM, DEFAULT_VOLTAGE_KV

__all__ = ["ANGLE_COLUMNS", "CTF_SCALARS", "PIXEL", "BOX", "GROUP", "uniform", "optics_rows"]

#: Euler angles of a pose (degrees, RELION's ZYZ)
ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
#: optics column, :class:`~..particles.CTFParams` field, default when a file has none
CTF_SCALARS = (("rlnVoltage", "voltage_kv", DEFAULT_VOLTAGE_KV),
               ("rlnSphericalAberration", "cs_mm", DEFAULT_CS_MM),
               ("rlnAmplitudeContrast", "amplitude_contrast", DEFAULT_AMPLITUDE_CONTRAST))
#: pixel size (A), box (px) and group number of an optics group
PIXEL, BOX, GROUP = "rlnImagePixelSize", "rlnImageSize", "rlnOpticsGroup"


def uniform(values) -> bool:
    """All ``values`` equal to relative rounding (1e-6)."""
    values = np.asarray(values, dtype=np.float64)
    return np.ptp(values) <= 1e-6 * max(abs(values[0]), 1e-12)


def optics_rows(ids, groups, path) -> np.ndarray:
    """Row of the optics table of each particle's group (``ValueError`` for unknown groups)."""
    ids, groups = np.asarray(ids), np.asarray(groups)
    missing = sorted(set(np.unique(groups).tolist()) - set(ids.tolist()))
    if missing:
        raise ValueError(f"{path}: particles refer to optics groups {missing} that "
                         "data_optics does not define")
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids[order], groups)]
