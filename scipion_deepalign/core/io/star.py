"""RELION particle STAR files: read any RELION 3.0/3.1+ layout, write RELION 3.1.

Particles are written as RELION 3.1 (``data_optics`` with one optics group and
``data_particles``). Reading also accepts:

* RELION 3.1+ with several optics groups, provided they share pixel size and box (otherwise
  ``ValueError``); voltage, Cs and amplitude contrast come from the first group used, with a
  warning when the groups used disagree on them;
* RELION 3.0 style, no optics block: shifts from ``rlnOriginX/Y`` in pixels, pixel size from
  ``rlnDetectorPixelSize * 10000 / rlnMagnification`` or the ``pixel_size_a`` argument, box
  from the first image stack's header.

Poses follow :mod:`scipion_deepalign.core.geometry`: ``shifts_px = rlnOriginXAngst /
pixel_size`` with RELION's sign. Every particle column not interpreted here (e.g.
``rlnRandomSubset``, ``rlnMicrographName``, ``deepalignRegion1``, ``deepalignScore``) is kept
in :attr:`Particles.extra` and written back. emtable stores rows as named tuples, so custom
column names work as long as they are Python identifiers (``deepalignRegionProb1`` is);
:func:`write_particles_star` checks this.

Generic table IO lives in :mod:`.starfile`, region tables in :mod:`.regions`, images in
:mod:`.images`; their public names are re-exported here (``io.star`` is the contract).
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..particles import CTFParams, Particles
from .images import load_images, split_image_name, write_particles
from .regions import read_regions_star, write_regions_star
from .starfile import column_values, float_column, read_star_blocks, write_star_blocks

__all__ = ["read_star_blocks", "write_star_blocks", "column_values", "read_particles_star",
           "write_particles_star", "load_images", "write_particles", "split_image_name",
           "write_regions_star", "read_regions_star"]

#: Particle columns interpreted by :func:`read_particles_star` (never put in ``extra``).
_KNOWN_COLUMNS = {
    "rlnImageName", "rlnOpticsGroup", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
    "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginX", "rlnOriginY",
    "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift",
    "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
    "rlnMagnification", "rlnDetectorPixelSize", "rlnImagePixelSize", "rlnImageSize",
}
_ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_CTF_SCALARS = (("rlnVoltage", "voltage_kv", 300.0), ("rlnSphericalAberration", "cs_mm", 2.7),
                ("rlnAmplitudeContrast", "amplitude_contrast", 0.1))


# ----------------------------------------------------------------------------- read
def _particle_block(blocks, path):
    if "particles" in blocks:
        if "rlnImageName" not in blocks["particles"]:
            raise ValueError(f"{path}: data_particles has no rlnImageName column")
        return blocks["particles"]
    for name, block in blocks.items():
        if name != "optics" and "rlnImageName" in block:
            return block
    raise ValueError(f"{path}: no particle table (a data_ block with rlnImageName)")


def _optics_scalars(blocks, particles_block, path):
    """Pixel size, box and CTF scalars from the optics groups that particles use."""
    optics = blocks["optics"]
    groups = column_values(optics["rlnOpticsGroup"]) if "rlnOpticsGroup" in optics else \
        np.arange(1, len(next(iter(optics.values()))) + 1)
    if "rlnOpticsGroup" in particles_block:
        used_ids = np.unique(column_values(particles_block["rlnOpticsGroup"]))
        missing = sorted(set(used_ids.tolist()) - set(groups.tolist()))
        if missing:
            raise ValueError(f"{path}: particles refer to optics groups {missing} that "
                             "data_optics does not define")
        used = np.isin(groups, used_ids)
    else:
        used = np.zeros(len(groups), bool)
        used[0] = True
    out = {}
    for col, key in (("rlnImagePixelSize", "pixel_size_a"), ("rlnImageSize", "box_px")):
        if col not in optics:
            out[key] = None
            continue
        vals = float_column(optics, col, path)[used]
        if np.ptp(vals) > 1e-6 * abs(vals[0]):
            raise ValueError(f"{path}: optics groups differ in {col} ({sorted(set(vals))}); "
                             "split the particles by optics group first")
        out[key] = float(vals[0])
    for col, key, _default in _CTF_SCALARS:
        if col in optics:
            vals = float_column(optics, col, path)[used]
            if np.ptp(vals) > 1e-6 * max(abs(vals[0]), 1e-12):
                warnings.warn(f"{path}: optics groups differ in {col} ({sorted(set(vals))}); "
                              f"using {vals[0]} for all particles", UserWarning, stacklevel=3)
            out[key] = float(vals[0])
    return out


def _column_scalar(block, col, path):
    vals = float_column(block, col, path)
    if np.ptp(vals) > 1e-6 * max(abs(vals[0]), 1e-12):
        warnings.warn(f"{path}: {col} varies between particles; using {vals[0]}",
                      UserWarning, stacklevel=3)
    return float(vals[0])


def read_particles_star(path, *, pixel_size_a=None, box_px=None) -> Particles:
    """Particles (names, poses, CTF, extra columns) from a RELION STAR file.

    Parameters
    ----------
    path : str or path-like
    pixel_size_a : float, optional
        Pixel size in Angstrom; overrides the file (with a warning if they disagree) and is
        required when the file has none (RELION 3.0 without magnification columns).
    box_px : int, optional
        Image side; needed only when the file has no ``rlnImageSize`` and its first image
        stack cannot be opened.

    Returns
    -------
    Particles
        ``root`` is the STAR file's folder. ``angles_deg`` is ``None`` unless all three
        angle columns exist (then ``shifts_px`` defaults to zeros); ``ctf`` is ``None``
        without ``rlnDefocusU``.
    """
    path = os.fspath(path)
    blocks = read_star_blocks(path)
    block = _particle_block(blocks, path)
    n = len(block["rlnImageName"])
    if n == 0:
        raise ValueError(f"{path}: the particle table is empty")
    root = os.path.dirname(os.path.abspath(path))
    scalars = _optics_scalars(blocks, block, path) if "optics" in blocks else {}

    # pixel size
    file_pixel = scalars.get("pixel_size_a")
    if file_pixel is None and {"rlnDetectorPixelSize", "rlnMagnification"} <= set(block):
        file_pixel = (_column_scalar(block, "rlnDetectorPixelSize", path) * 1e4
                      / _column_scalar(block, "rlnMagnification", path))
    if pixel_size_a is not None:
        if not pixel_size_a > 0:
            raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
        if file_pixel is not None and abs(file_pixel - pixel_size_a) > 1e-4 * pixel_size_a:
            warnings.warn(f"{path}: pixel size {file_pixel:.4f} A in the file replaced by "
                          f"pixel_size_a={pixel_size_a}", UserWarning, stacklevel=2)
        file_pixel = float(pixel_size_a)
    if file_pixel is None or not file_pixel > 0:
        raise ValueError(f"{path}: no pixel size (no data_optics rlnImagePixelSize, no "
                         "rlnDetectorPixelSize/rlnMagnification); pass pixel_size_a")

    names = [str(s) for s in block["rlnImageName"]]

    # box
    box = box_px if box_px is not None else scalars.get("box_px")
    if box is None:
        box = _box_from_stack(names[0], root, path)
    box = int(round(box))

    # poses
    angles = shifts = None
    if all(c in block for c in _ANGLE_COLUMNS):
        angles = np.stack([float_column(block, c, path) for c in _ANGLE_COLUMNS], axis=1)
    if "rlnOriginXAngst" in block and "rlnOriginYAngst" in block:
        shifts = np.stack([float_column(block, "rlnOriginXAngst", path),
                           float_column(block, "rlnOriginYAngst", path)], axis=1) / file_pixel
    elif "rlnOriginX" in block and "rlnOriginY" in block:
        shifts = np.stack([float_column(block, "rlnOriginX", path),
                           float_column(block, "rlnOriginY", path)], axis=1)
    elif angles is not None:
        shifts = np.zeros((n, 2))

    # CTF
    ctf = None
    if "rlnDefocusU" in block:
        du = float_column(block, "rlnDefocusU", path)
        kw = {}
        for col, key, default in _CTF_SCALARS:
            if key in scalars:
                kw[key] = scalars[key]
            elif col in block:
                kw[key] = _column_scalar(block, col, path)
            else:
                kw[key] = default
        ctf = CTFParams(
            defocus_u_a=du,
            defocus_v_a=float_column(block, "rlnDefocusV", path) if "rlnDefocusV" in block else du,
            defocus_angle_deg=(float_column(block, "rlnDefocusAngle", path)
                               if "rlnDefocusAngle" in block else np.zeros(n)),
            phase_shift_deg=(float_column(block, "rlnPhaseShift", path)
                             if "rlnPhaseShift" in block else None),
            **kw)

    known = set(_KNOWN_COLUMNS)
    if angles is None:  # partial angle columns (e.g. 2D classes: psi only) stay as extra
        known -= set(_ANGLE_COLUMNS)
    extra = {c: column_values(v) for c, v in block.items() if c not in known}
    return Particles(image_names=names, pixel_size_a=float(file_pixel), box_px=box,
                     angles_deg=angles, shifts_px=shifts, ctf=ctf, extra=extra, root=root)


def _box_from_stack(name, root, star_path):
    from .mrc import read_mrc_header

    _, stack = split_image_name(name)
    stack_path = stack if os.path.isabs(stack) else os.path.join(root, stack)
    if not os.path.isfile(stack_path):
        raise ValueError(f"{star_path}: no rlnImageSize and the first image stack "
                         f"{stack_path} is missing; pass box_px")
    return read_mrc_header(stack_path)["shape"][-1]


# ----------------------------------------------------------------------------- write
def write_particles_star(path, particles: Particles) -> None:
    """Write particles as RELION 3.1 (one optics group), atomically.

    Columns: ``rlnImageName``, ``rlnOpticsGroup``, angles and ``rlnOriginX/YAngst`` when
    poses exist, ``rlnDefocusU/V/Angle`` (+ ``rlnPhaseShift``) when a CTF exists, then every
    column of ``particles.extra``. Image names are written as given (relative to the
    STAR's folder, see :func:`write_particles`).
    """
    n = len(particles)
    if n == 0:
        raise ValueError(f"no particles to write to {path}")
    ctf = particles.ctf
    optics = {
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnImagePixelSize": [float(particles.pixel_size_a)],
        "rlnImageSize": [int(particles.box_px)], "rlnImageDimensionality": [2],
        "rlnVoltage": [float(ctf.voltage_kv) if ctf else 300.0],
        "rlnSphericalAberration": [float(ctf.cs_mm) if ctf else 2.7],
        "rlnAmplitudeContrast": [float(ctf.amplitude_contrast) if ctf else 0.1],
    }
    cols = {"rlnImageName": np.array(particles.image_names, dtype=str),
            "rlnOpticsGroup": np.ones(n, dtype=np.int64)}
    if particles.angles_deg is not None:
        angles = np.asarray(particles.angles_deg, dtype=np.float64).reshape(n, 3)
        for j, c in enumerate(_ANGLE_COLUMNS):
            cols[c] = angles[:, j]
    if particles.shifts_px is not None:
        shifts_a = np.asarray(particles.shifts_px, np.float64).reshape(n, 2) \
            * particles.pixel_size_a
        cols["rlnOriginXAngst"], cols["rlnOriginYAngst"] = shifts_a[:, 0], shifts_a[:, 1]
    if ctf is not None:
        cols["rlnDefocusU"] = ctf.defocus_u_a
        cols["rlnDefocusV"] = ctf.defocus_v_a
        cols["rlnDefocusAngle"] = ctf.defocus_angle_deg
        if ctf.phase_shift_deg is not None:
            cols["rlnPhaseShift"] = ctf.phase_shift_deg
    for c, v in particles.extra.items():
        if c in cols:
            continue
        v = np.asarray(v)
        if v.shape != (n,):
            raise ValueError(f"extra column {c!r} has shape {v.shape}, expected ({n},)")
        if v.dtype.kind in "USO" and any(not str(x) or len(str(x).split()) != 1 for x in v):
            raise ValueError(f"extra column {c!r}: text values must be non-empty and free of "
                             "white space to be written to STAR")
        cols[c] = v
    write_star_blocks(path, {"optics": optics, "particles": cols})
