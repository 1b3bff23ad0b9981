"""RELION particle STAR files read (:func:`read_particles_star`): any RELION 3.0/3.1+ layout.

They are written as RELION 3.1 (``data_optics`` and ``data_particles``) by :mod:`.star_write`.
Reading accepts:

* RELION 3.1+ with several optics groups. The optics table is kept whole in
  :attr:`Particles.optics` (every column, e.g. beam tilt) with each particle's group in
  :attr:`Particles.optics_group`, and written back. The groups used must share the box;
  they must share the pixel size too unless ``mixed_pixel_sizes`` is true (metadata only:
  shifts are then converted with each particle's own pixel size and ``pixel_size_a`` is the
  first used group's). Voltage, Cs and amplitude contrast of :class:`CTFParams` are one
  float when the groups used agree, else one value per particle from its own group;
* RELION 3.0 style, no optics block: shifts from ``rlnOriginX/Y`` in pixels.

Pixel size, first found: the ``pixel_size_a`` argument (a warning when the file disagrees);
``rlnImagePixelSize`` of the optics table; ``rlnDetectorPixelSize * 10000 /
rlnMagnification``; the header of the first image stack (a warning, since headers often
carry a placeholder). Box: ``rlnImageSize``, else the first stack's header. Relative image
paths are found as described in :mod:`.images` (STAR folder, its parents, the current
folder, or ``datadir`` first).

Poses follow :mod:`scipion_deepalign.core.geometry`: ``shifts_px = rlnOriginXAngst /
pixel_size`` with RELION's sign. Every particle column not interpreted here (e.g.
``rlnRandomSubset``, ``rlnMicrographName``, the DeepAlign columns of :mod:`.columns`) is kept
in :attr:`Particles.extra` (and written back by :mod:`.star_write`). emtable stores rows as
named tuples, so custom column names work as long as they are Python identifiers (those of
:mod:`.columns` are). The column names and optics rules reading and writing share live in
:mod:`.star_optics`. Generic table IO lives in :mod:`.star_tables`, region tables in
:mod:`.regions`, image loading and stack paths in :mod:`.images`. Import public names from
:mod:`scipion_deepalign.core.io` (the one front door), not from here.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..defaults import same_pixel_size
from ..particles import CTFParams, Particles
from .images import locate_stacks, stack_path
from .mrc import read_mrc_header
from .star_optics import ANGLE_COLUMNS, BOX, CTF_SCALARS, GROUP, PIXEL, optics_rows, uniform
from .star_tables import column_values, float_column, read_star_blocks

__all__ = ["read_particles_star"]

#: Particle columns interpreted by :func:`read_particles_star` (never put in ``extra``).
_KNOWN_COLUMNS = {
    "rlnImageName", "rlnOpticsGroup", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
    "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginX", "rlnOriginY",
    "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift",
    "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
    "rlnMagnification", "rlnDetectorPixelSize", "rlnImagePixelSize", "rlnImageSize",
}


def _particle_block(blocks, path):
    if "particles" in blocks:
        if "rlnImageName" not in blocks["particles"]:
            raise ValueError(f"{path}: data_particles has no rlnImageName column")
        return blocks["particles"]
    for name, block in blocks.items():
        if name != "optics" and "rlnImageName" in block:
            return block
    raise ValueError(f"{path}: no particle table (a data_ block with rlnImageName)")


def _read_optics(blocks, block, path):
    """``(table, group of each particle, table row of each particle)``; Nones without one."""
    if "optics" not in blocks or not blocks["optics"]:
        return None, None, None
    table = {c: column_values(v) for c, v in blocks["optics"].items()}
    if GROUP not in table:
        table[GROUP] = np.arange(1, len(next(iter(table.values()))) + 1)
    n = len(block["rlnImageName"])
    groups = (column_values(block[GROUP]) if GROUP in block
              else np.full(n, table[GROUP][0]))
    return table, groups, optics_rows(table[GROUP], groups, path)


def _optics_column(table, rows, col, path):
    """Each particle's value of optics column ``col`` (float), or None without the column."""
    if table is None or col not in table:
        return None
    try:
        return np.asarray(table[col], dtype=np.float64)[rows]
    except ValueError as exc:
        raise ValueError(f"{path}: data_optics column {col} is not numeric ({exc})") from exc


def _column_scalar(block, col, path):
    vals = float_column(block, col, path)
    if not uniform(vals):
        warnings.warn(f"{path}: {col} varies between particles; using {vals[0]}",
                      UserWarning, stacklevel=4)
    return float(vals[0])


def _file_pixel_sizes(block, table, rows, path):
    """Each particle's pixel size as the STAR file gives it, or None."""
    px = _optics_column(table, rows, PIXEL, path)
    if px is None and {"rlnDetectorPixelSize", "rlnMagnification"} <= set(block):
        px = np.full(len(block["rlnImageName"]),
                     _column_scalar(block, "rlnDetectorPixelSize", path) * 1e4
                     / _column_scalar(block, "rlnMagnification", path))
    return px


def _header_pixel_size(names, root, path):
    """Pixel size in the header of the first image stack (with a warning), or None."""
    stack = stack_path(names[0], root)
    size = read_mrc_header(stack)["pixel_size_a"] if os.path.isfile(stack) else None
    if size is not None:
        warnings.warn(f"{path}: no pixel size in the STAR file; using {size:g} A from the "
                      f"header of {stack}", UserWarning, stacklevel=4)
    return size


def _pixel_sizes(block, table, rows, names, root, path, override, mixed):
    """Each particle's pixel size in Angstrom, ndarray of shape (N,)."""
    file_px = _file_pixel_sizes(block, table, rows, path)
    if override is not None:
        if not override > 0:
            raise ValueError(f"pixel_size_a must be positive, got {override}")
        if file_px is not None and not all(same_pixel_size(p, override)
                                           for p in np.unique(file_px)):
            warnings.warn(f"{path}: pixel size {file_px[0]:.4f} A in the file replaced by "
                          f"pixel_size_a={override}", UserWarning, stacklevel=3)
        if table is not None:
            table[PIXEL] = np.asarray(table.get(PIXEL, np.zeros(len(table[GROUP]))), float)
            table[PIXEL][np.unique(rows)] = override
        return np.full(len(names), float(override))
    if file_px is None:
        header = _header_pixel_size(names, root, path)
        if header is None:
            raise ValueError(f"{path}: no pixel size (no data_optics rlnImagePixelSize, no "
                             "rlnDetectorPixelSize/rlnMagnification, none in the header of "
                             f"{stack_path(names[0], root)}); pass pixel_size_a")
        file_px = np.full(len(names), float(header))
    if not np.all(file_px > 0):
        raise ValueError(f"{path}: pixel size must be positive, got {np.min(file_px)}; "
                         "pass pixel_size_a")
    if not mixed and not uniform(file_px):
        raise ValueError(f"{path}: optics groups differ in {PIXEL} "
                         f"({_per_group(table, rows, file_px)}); images, shifts and CTFs are "
                         "computed on one pixel grid: split the particles by optics group "
                         "first (or resample them to one pixel size)")
    return file_px


def _per_group(table, rows, values) -> str:
    """``"group 1: 1.5, group 2: 1.2"``: each used group's value (by ``rlnOpticsGroup``)."""
    if table is None:
        return ", ".join(f"{v:g}" for v in sorted(set(values.tolist())))
    first = {}
    for row, value in zip(rows.tolist(), values.tolist()):
        first.setdefault(row, value)
    ids = table[GROUP]
    return ", ".join(f"group {ids[r]}: {first[r]:g}" for r in sorted(first))


def _box(table, rows, names, root, path, box_px):
    if box_px is not None:
        return int(round(box_px))
    boxes = _optics_column(table, rows, BOX, path)
    if boxes is not None:
        if not uniform(boxes):
            raise ValueError(f"{path}: optics groups differ in {BOX} "
                             f"({sorted(set(boxes.tolist()))}); split the particles by "
                             "optics group first")
        return int(round(boxes[0]))
    stack = stack_path(names[0], root)
    if not os.path.isfile(stack):
        raise ValueError(f"{path}: no rlnImageSize and the first image stack "
                         f"{stack} is missing; pass box_px")
    return int(read_mrc_header(stack)["shape"][-1])


def _poses(block, path, pixel_sizes):
    angles = shifts = None
    if all(c in block for c in ANGLE_COLUMNS):
        angles = np.stack([float_column(block, c, path) for c in ANGLE_COLUMNS], axis=1)
    if "rlnOriginXAngst" in block and "rlnOriginYAngst" in block:
        shifts = np.stack([float_column(block, "rlnOriginXAngst", path),
                           float_column(block, "rlnOriginYAngst", path)], axis=1) \
            / pixel_sizes[:, None]
    elif "rlnOriginX" in block and "rlnOriginY" in block:
        shifts = np.stack([float_column(block, "rlnOriginX", path),
                           float_column(block, "rlnOriginY", path)], axis=1)
    elif angles is not None:
        shifts = np.zeros((len(pixel_sizes), 2))
    return angles, shifts


def _ctf_optics_value(block, table, rows, col, default, path):
    """One float when every particle has the same ``col``, else each particle's value."""
    vals = _optics_column(table, rows, col, path)
    if vals is None and col in block:
        vals = float_column(block, col, path)  # RELION 3.0: per particle
    if vals is None:
        return default
    return float(vals[0]) if uniform(vals) else vals


def _ctf(block, table, rows, path):
    if "rlnDefocusU" not in block:
        return None
    n = len(block["rlnImageName"])
    du = float_column(block, "rlnDefocusU", path)
    return CTFParams(
        defocus_u_a=du,
        defocus_v_a=float_column(block, "rlnDefocusV", path) if "rlnDefocusV" in block else du,
        defocus_angle_deg=(float_column(block, "rlnDefocusAngle", path)
                           if "rlnDefocusAngle" in block else np.zeros(n)),
        phase_shift_deg=(float_column(block, "rlnPhaseShift", path)
                         if "rlnPhaseShift" in block else None),
        **{key: _ctf_optics_value(block, table, rows, col, default, path)
           for col, key, default in CTF_SCALARS})


def read_particles_star(path, *, pixel_size_a=None, box_px=None, datadir=None,
                        mixed_pixel_sizes=False) -> Particles:
    """Particles (names, poses, CTF, optics, extra columns) from a RELION STAR file.

    Parameters
    ----------
    path : str or path-like
    pixel_size_a : float, optional
        Pixel size in Angstrom; overrides the file (with a warning if they disagree) and is
        required when neither the file nor the first stack's header has one.
    box_px : int, optional
        Image side; needed only when the file has no ``rlnImageSize`` and its first image
        stack cannot be opened.
    datadir : str, optional
        Folder where relative image stacks are looked for first (see :mod:`.images`).
    mixed_pixel_sizes : bool, optional
        Accept optics groups of different pixel sizes (see the module docstring).

    Returns
    -------
    Particles
        ``root`` is the folder the image names are relative to. ``angles_deg`` is ``None``
        unless all three angle columns exist (then ``shifts_px`` defaults to zeros); ``ctf``
        is ``None`` without ``rlnDefocusU``; ``optics`` is ``None`` without ``data_optics``.
    """
    path = os.fspath(path)
    blocks = read_star_blocks(path)
    block = _particle_block(blocks, path)
    if len(block["rlnImageName"]) == 0:
        raise ValueError(f"{path}: the particle table is empty")
    root, names = locate_stacks([str(s) for s in block["rlnImageName"]], path, datadir=datadir)
    table, groups, rows = _read_optics(blocks, block, path)
    pixel_sizes = _pixel_sizes(block, table, rows, names, root, path, pixel_size_a,
                               mixed_pixel_sizes)
    box = _box(table, rows, names, root, path, box_px)
    angles, shifts = _poses(block, path, pixel_sizes)
    known = set(_KNOWN_COLUMNS)
    if angles is None:  # partial angle columns (e.g. 2D classes: psi only) stay as extra
        known -= set(ANGLE_COLUMNS)
    extra = {c: column_values(v) for c, v in block.items() if c not in known}
    return Particles(image_names=names, pixel_size_a=float(pixel_sizes[0]), box_px=box,
                     angles_deg=angles, shifts_px=shifts, ctf=_ctf(block, table, rows, path),
                     extra=extra, root=root, optics=table,
                     optics_group=None if groups is None else groups.astype(np.int64))
