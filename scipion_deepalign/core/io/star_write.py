"""RELION 3.1 particle STAR files written from :class:`~scipion_deepalign.core.particles.Particles`.

The layout is that of :mod:`.star` (its module docstring), the optics rules those of
:mod:`.star_optics`: one
``data_optics`` table (the particles' own, or one group per distinct voltage, Cs and
amplitude contrast) and ``data_particles``, every ``extra`` column written back (column
names must be Python identifiers, checked here).

The optics table's pixel size and box of the groups used are those of the
:class:`~scipion_deepalign.core.particles.Particles` (which may have been changed), except for
a column in which the groups used differ: it is written as read. Voltage, Cs and amplitude
contrast of each group used are those of its particles (which must agree within a group).
Particles without an optics table get one group per distinct (voltage, Cs, amplitude
contrast). Import public names from :mod:`scipion_deepalign.core.io`.
"""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from ..particles import Particles, stack_image_names
from .images import output_root, relocate_image_names
from .mrc import write_mrc
from .star_optics import ANGLE_COLUMNS, BOX, CTF_SCALARS, GROUP, PIXEL, optics_rows, uniform
from .star_tables import write_star_blocks

__all__ = ["write_particles_star", "write_particles"]


def _ctf_columns(particles) -> dict:
    """Optics CTF column -> each particle's value, ndarray of shape (N,)."""
    ctf, n = particles.ctf, len(particles)
    return {col: (ctf.per_particle(key) if ctf is not None else np.full(n, default))
            for col, key, default in CTF_SCALARS}


def _new_optics(particles, ctf_cols):
    """One optics group per distinct (voltage, Cs, amplitude contrast) of the particles."""
    combos, rows = np.unique(np.stack(list(ctf_cols.values()), axis=1), axis=0,
                             return_inverse=True)
    g = len(combos)
    table = {GROUP: np.arange(1, g + 1), "rlnOpticsGroupName":
             np.array([f"opticsGroup{k}" for k in range(1, g + 1)]),
             "rlnImageDimensionality": np.full(g, 2),
             PIXEL: np.full(g, float(particles.pixel_size_a)),
             BOX: np.full(g, int(particles.box_px))}
    table.update({col: combos[:, j] for j, col in enumerate(ctf_cols)})
    rows = np.asarray(rows).ravel()
    return table, rows + 1, rows


def _optics_to_write(particles, path):
    """``(optics table, group of each particle, table row of each particle)``."""
    n = len(particles)
    ctf_cols = _ctf_columns(particles)
    if particles.optics is None:
        return _new_optics(particles, ctf_cols)
    table = {c: np.array(v) for c, v in particles.optics.items()}
    groups = (np.full(n, table[GROUP][0]) if particles.optics_group is None
              else np.asarray(particles.optics_group))
    rows = optics_rows(table[GROUP], groups, path)
    used = np.unique(rows)
    for col, value in ((PIXEL, float(particles.pixel_size_a)), (BOX, int(particles.box_px))):
        if col not in table:
            table[col] = np.full(len(table[GROUP]), value)
        elif uniform(np.asarray(table[col], np.float64)[used]):
            table[col] = np.asarray(table[col], type(value))
            table[col][used] = value
    for col, values in ctf_cols.items():
        table[col] = (np.asarray(table[col], np.float64) if col in table
                      else np.full(len(table[GROUP]), values[0]))
        for row in used:
            mine = values[rows == row]
            if not uniform(mine):
                raise ValueError(f"{path}: particles of optics group {table[GROUP][row]} "
                                 f"differ in {col} ({sorted(set(mine.tolist()))}); one "
                                 "optics group has one value")
            table[col][row] = mine[0]
    return table, groups, rows


def write_particles_star(path, particles: Particles, *, single_row_blocks=None) -> None:
    """Write particles as RELION 3.1 (their optics table, or one group), atomically.

    Columns: ``rlnImageName``, ``rlnOpticsGroup``, angles and ``rlnOriginX/YAngst`` when
    poses exist, ``rlnDefocusU/V/Angle`` (+ ``rlnPhaseShift``) when a CTF exists, then every
    column of ``particles.extra``. Image names are rewritten relative to
    :func:`~.images.output_root` of ``path`` (``particles.root`` when the file goes inside
    it, else the file's folder). ``single_row_blocks`` (``{name: {column: value}}``) are
    written after the particles as key-value blocks (e.g. the part record of
    :mod:`scipion_deepalign.core.io.parts`); readers of particles ignore them.
    """
    n = len(particles)
    if n == 0:
        raise ValueError(f"no particles to write to {path}")
    optics, groups, rows = _optics_to_write(particles, path)
    names = relocate_image_names(particles.image_names, particles.root,
                                 output_root(path, particles.root))
    cols = {"rlnImageName": np.array(names, dtype=str), GROUP: groups}
    if particles.angles_deg is not None:
        angles = np.asarray(particles.angles_deg, dtype=np.float64).reshape(n, 3)
        for j, c in enumerate(ANGLE_COLUMNS):
            cols[c] = angles[:, j]
    if particles.shifts_px is not None:
        pixel = np.asarray(optics[PIXEL], np.float64)[rows]
        shifts_a = np.asarray(particles.shifts_px, np.float64).reshape(n, 2) * pixel[:, None]
        cols["rlnOriginXAngst"], cols["rlnOriginYAngst"] = shifts_a[:, 0], shifts_a[:, 1]
    ctf = particles.ctf
    if ctf is not None:
        cols["rlnDefocusU"] = ctf.defocus_u_a
        cols["rlnDefocusV"] = ctf.defocus_v_a
        cols["rlnDefocusAngle"] = ctf.defocus_angle_deg
        if ctf.phase_shift_deg is not None:
            cols["rlnPhaseShift"] = ctf.phase_shift_deg
    for c, v in particles.extra.items():
        if c not in cols:
            cols[c] = _checked_extra(c, v, n)
    extra_blocks = dict(single_row_blocks or {})
    write_star_blocks(path, {"optics": optics, "particles": cols, **extra_blocks},
                      single_row=tuple(extra_blocks))


def _checked_extra(name, values, n):
    values = np.asarray(values)
    if values.shape != (n,):
        raise ValueError(f"extra column {name!r} has shape {values.shape}, expected ({n},)")
    if values.dtype.kind in "USO" and any(not str(x) or len(str(x).split()) != 1
                                          for x in values):
        raise ValueError(f"extra column {name!r}: text values must be non-empty and free of "
                         "white space to be written to STAR")
    return values


def write_particles(stack_path, star_path, images, particles):
    """Write ``images`` as one MRC stack and a RELION 3.1 STAR pointing into it.

    Both files are written atomically (temporary name, then rename), the stack first.

    Parameters
    ----------
    stack_path, star_path : str or path-like
    images : array_like of shape (N, B, B)
    particles : Particles
        Metadata of the N images (names are replaced).

    Returns
    -------
    Particles
        A copy with ``image_names = "NNNNNN@<stack relative to the STAR's folder>"``,
        ``box_px = B`` and ``root`` = the STAR's folder.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (N, B, B), got {images.shape}")
    if len(images) != len(particles):
        raise ValueError(f"{len(images)} images but {len(particles)} particles")
    stack_path, star_path = os.fspath(stack_path), os.fspath(star_path)
    root = os.path.dirname(os.path.abspath(star_path))
    rel = os.path.relpath(os.path.abspath(stack_path), root)
    write_mrc(stack_path, images, pixel_size_a=particles.pixel_size_a, stack=True)
    new = replace(particles, image_names=stack_image_names(len(images), rel),
                  box_px=int(images.shape[-1]), root=root)
    write_particles_star(star_path, new)
    return new
