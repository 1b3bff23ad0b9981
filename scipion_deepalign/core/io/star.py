"""RELION STAR files (through :mod:`emtable`): particles, their images, region tables.

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

Columns are read as text and converted here with numpy (emtable's type guess looks at the
first row only, which breaks on columns such as ``0`` followed by ``0.5``).
"""
from __future__ import annotations

import os
import re
import tempfile
import warnings

import numpy as np
from emtable import Table

from ..particles import CTFParams, Particles
from .images import load_images, split_image_name, write_particles

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
_DATA_LINE = re.compile(r"^data_(\S*)")


# ----------------------------------------------------------------------------- blocks
def read_star_blocks(path) -> dict:
    """All tables of a STAR file as ``{block name: {column: ndarray of str}}``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict of str to dict of str to ndarray of shape (rows,)
        Block names without ``data_`` (``""`` for a bare ``data_``); values are text, see
        :func:`column_values` to convert them.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"STAR file not found: {path}")
    offsets = []
    with open(path) as f:
        while True:
            pos = f.tell()
            line = f.readline()
            if not line:
                break
            m = _DATA_LINE.match(line)
            if m:
                offsets.append((m.group(1), pos))
    if not offsets:
        raise ValueError(f"{path}: not a STAR file (no data_ block)")
    blocks = {}
    with open(path) as f:
        for name, pos in offsets:
            f.seek(pos)
            table = Table()
            try:
                table.readStar(f, tableName=name, guessType=False)
            except Exception as exc:  # emtable raises bare Exceptions on malformed tables
                raise ValueError(f"{path}: cannot parse block data_{name} ({exc})") from exc
            cols = table.getColumnNames()
            rows = list(table)
            blocks[name] = {c: np.array([getattr(r, c) for r in rows], dtype=str)
                            for c in cols}
    return blocks


def column_values(texts) -> np.ndarray:
    """Text values as int64 when all are integers, else float64, else str."""
    texts = np.asarray(texts, dtype=str)
    for dtype in (np.int64, np.float64):
        try:
            return texts.astype(dtype)
        except ValueError:
            pass
    return texts


def _float(block, name, path):
    try:
        return block[name].astype(np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: column {name} is not numeric ({exc})") from exc


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
        vals = _float(optics, col, path)[used]
        if np.ptp(vals) > 1e-6 * abs(vals[0]):
            raise ValueError(f"{path}: optics groups differ in {col} ({sorted(set(vals))}); "
                             "split the particles by optics group first")
        out[key] = float(vals[0])
    for col, key, _default in _CTF_SCALARS:
        if col in optics:
            vals = _float(optics, col, path)[used]
            if np.ptp(vals) > 1e-6 * max(abs(vals[0]), 1e-12):
                warnings.warn(f"{path}: optics groups differ in {col} ({sorted(set(vals))}); "
                              f"using {vals[0]} for all particles", UserWarning, stacklevel=3)
            out[key] = float(vals[0])
    return out


def _column_scalar(block, col, path):
    vals = _float(block, col, path)
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
        angles = np.stack([_float(block, c, path) for c in _ANGLE_COLUMNS], axis=1)
    if "rlnOriginXAngst" in block and "rlnOriginYAngst" in block:
        shifts = np.stack([_float(block, "rlnOriginXAngst", path),
                           _float(block, "rlnOriginYAngst", path)], axis=1) / file_pixel
    elif "rlnOriginX" in block and "rlnOriginY" in block:
        shifts = np.stack([_float(block, "rlnOriginX", path),
                           _float(block, "rlnOriginY", path)], axis=1)
    elif angles is not None:
        shifts = np.zeros((n, 2))

    # CTF
    ctf = None
    if "rlnDefocusU" in block:
        du = _float(block, "rlnDefocusU", path)
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
            defocus_v_a=_float(block, "rlnDefocusV", path) if "rlnDefocusV" in block else du,
            defocus_angle_deg=(_float(block, "rlnDefocusAngle", path)
                               if "rlnDefocusAngle" in block else np.zeros(n)),
            phase_shift_deg=(_float(block, "rlnPhaseShift", path)
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
def _py(v):
    """numpy scalar -> Python scalar, so emtable formats floats with 6 decimals."""
    return v.item() if isinstance(v, np.generic) else v


def _write_table(f, name, columns: dict, *, single_row=False):
    table = Table(columns=list(columns))
    values = [np.asarray(v) for v in columns.values()]
    for i in range(len(values[0])):
        table.addRow(*[_py(v[i]) for v in values])
    table.writeStar(f, tableName=name, singleRow=single_row)


def write_star_blocks(path, blocks: dict, *, single_row=()) -> None:
    """Write ``{block name: {column: values}}`` as a RELION 3.1 STAR file, atomically.

    Column names must be Python identifiers (emtable keeps rows as named tuples).
    """
    path = os.fspath(path)
    for bname, cols in blocks.items():
        for c in cols:
            if not c.isidentifier() or c.startswith("_"):
                raise ValueError(f"STAR column name {c!r} (block {bname}) must be an "
                                 "identifier not starting with '_'")
        lengths = {len(np.atleast_1d(v)) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of block {bname} for {path} differ in length: "
                             f"{sorted(lengths)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            for bname, cols in blocks.items():
                f.write("\n# version 30001\n")
                cols = {c: np.atleast_1d(v) for c, v in cols.items()}
                _write_table(f, bname, cols, single_row=bname in single_row)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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


# ----------------------------------------------------------------------------- regions
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
    centres = np.stack([_float(regions, "rlnAngleRot", path),
                        _float(regions, "rlnAngleTilt", path)], axis=1)[order]
    return (centres, str(general["deepalignSymmetry"][0]),
            float(general["deepalignRegionSpacingDeg"][0]))
