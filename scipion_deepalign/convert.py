"""Conversion between Scipion objects and the core's arrays: the ONLY place where a Scipion
``Transform`` meets a core pose.

Scipion's projection alignment (``ALIGN_PROJ``)
-----------------------------------------------
A core pose is ``(rot, tilt, psi)`` in degrees and a RELION-style shift ``s = (sx, sy)`` in
pixels (see :mod:`scipion_deepalign.core.geometry`). With ``A = euler_to_matrix(angles)`` the
particle is the projection along ``A`` translated by ``-s``; as a homogeneous map from volume
coordinates to particle-image coordinates this is ``F = [[A, -s], [0, 1]]`` (``s`` padded
with ``sz = 0``).

For ``ALIGN_PROJ`` Scipion (Xmipp and RELION plugins alike) stores the **inverse** of ``F``::

    M = F^-1 = [[A.T, A.T @ s],
                [0,   1      ]]

so the rotation block is the transpose of the ZYZ matrix and ``M[:3, 3]`` is the shift rotated
back into the map frame, not the shift itself. Going back: ``A = M[:3, :3].T`` and
``s = A @ M[:3, 3]`` (its z component is 0 for a projection pose). This equals the Xmipp
plugin's ``matrixFromGeometry(shifts, angles, inverseTransform=True)``; the test suite checks it
against ``pwem.convert.transformations`` and ``pwem.emlib.Euler_angles2matrix``.
``Transform.getEulerAngles()`` / ``getShifts()`` use other conventions: never use them for poses.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from .core.geometry import euler_to_matrix, matrix_to_euler
from .core.particles import (
    DEFAULT_AMPLITUDE_CONTRAST,
    DEFAULT_CS_MM,
    DEFAULT_VOLTAGE_KV,
    OPTICS_FIELDS,
    CTFParams,
    Particles,
    stack_image_names,
)

__all__ = [
    "pose_to_matrix",
    "matrix_to_pose",
    "set_particle_pose",
    "poses_at_sampling",
    "read_set_poses",
    "item_class_ids",
    "ctf_from_particles",
    "set_to_core",
    "volume_to_core",
    "STACK_EXTENSIONS_MRC",
]

#: image file endings read by core.io (mrcfile) (others go through pwem's ImageHandler)
STACK_EXTENSIONS_MRC = (".mrc", ".mrcs", ".st", ".map")


def pose_to_matrix(angles_deg, shifts_px) -> np.ndarray:
    """Scipion ``ALIGN_PROJ`` matrices of core poses (see the module docstring).

    Parameters
    ----------
    angles_deg : array_like of shape (..., 3)
        ``(rot, tilt, psi)`` in degrees.
    shifts_px : array_like of shape (..., 2)
        RELION-style ``(shift_x, shift_y)`` in pixels.

    Returns
    -------
    ndarray of shape (..., 4, 4)
        ``[[A.T, A.T @ s], [0, 1]]``.
    """
    angles = np.asarray(angles_deg, dtype=np.float64)
    shifts = np.asarray(shifts_px, dtype=np.float64)
    if shifts.shape[-1] != 2:
        raise ValueError(f"shifts_px must have shape (..., 2), got {shifts.shape}")
    a = euler_to_matrix(angles)
    batch = np.broadcast_shapes(a.shape[:-2], shifts.shape[:-1])
    a = np.broadcast_to(a, batch + (3, 3))
    s3 = np.zeros(batch + (3,))
    s3[..., :2] = shifts
    m = np.zeros(batch + (4, 4))
    m[..., :3, :3] = np.swapaxes(a, -1, -2)
    m[..., :3, 3] = np.einsum("...ji,...j->...i", a, s3)  # A.T @ s
    m[..., 3, 3] = 1.0
    return m


def matrix_to_pose(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Core pose of Scipion ``ALIGN_PROJ`` matrices, inverse of :func:`pose_to_matrix`.

    Parameters
    ----------
    matrix : array_like of shape (..., 4, 4)

    Returns
    -------
    angles_deg : ndarray of shape (..., 3)
    shifts_px : ndarray of shape (..., 2)
        Any out-of-plane component of the shift (nonzero only for matrices that are not
        projection poses) is dropped.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (4, 4):
        raise ValueError(f"matrix must have shape (..., 4, 4), got {m.shape}")
    a = np.swapaxes(m[..., :3, :3], -1, -2)
    shifts = np.einsum("...ij,...j->...i", a, m[..., :3, 3])
    return matrix_to_euler(a), shifts[..., :2]


def set_particle_pose(particle, angles_deg, shifts_px) -> None:
    """Give a Scipion particle the projection pose ``(angles_deg (3,), shifts_px (2,))``.

    The containing set must be marked with ``setAlignmentProj()`` by the caller.
    """
    from pwem.objects import Transform

    particle.setTransform(Transform(pose_to_matrix(angles_deg, shifts_px)))


def poses_at_sampling(particles, sampling_a) -> tuple[np.ndarray, np.ndarray]:
    """``(angles_deg (N, 3), shifts_px (N, 2))`` of core ``particles`` with the shifts in
    pixels of ``sampling_a`` (the Scipion set's sampling; the STAR file may have another
    pixel size). Particles without shifts get zero shifts; ValueError without angles.
    """
    if particles.angles_deg is None:
        raise ValueError("the particles have no angles")
    shifts = (particles.shifts_px if particles.shifts_px is not None
              else np.zeros((len(particles), 2)))
    return particles.angles_deg, shifts * (particles.pixel_size_a / float(sampling_a))


def read_set_poses(set_of_particles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item ids and poses of a SetOfParticles with projection alignment.

    Returns
    -------
    ids : ndarray of shape (N,) int
    angles_deg : ndarray of shape (N, 3)
    shifts_px : ndarray of shape (N, 2)

    Raises
    ------
    ValueError
        If the set has no projection alignment or an item has no transform.
    """
    if not set_of_particles.hasAlignmentProj():
        raise ValueError("set_of_particles has no projection alignment (ALIGN_PROJ)")
    ids, matrices = [], []
    for particle in set_of_particles.iterItems():
        transform = particle.getTransform()
        if transform is None:
            raise ValueError(f"particle {particle.getObjId()} of set_of_particles has no pose")
        ids.append(particle.getObjId())
        matrices.append(transform.getMatrix())
    if not ids:
        return np.zeros(0, int), np.zeros((0, 3)), np.zeros((0, 2))
    angles, shifts = matrix_to_pose(np.array(matrices))
    return np.asarray(ids, dtype=np.int64), angles, shifts


def item_class_ids(particles) -> dict[int, int]:
    """``{Scipion item id: class id}`` of core ``particles`` read from a ``deepalign`` STAR.

    The class id is RELION's 1-based ``rlnClassNumber`` unchanged (class ``k`` = the k-th
    reference map), which is also Scipion's ``Particle.getClassId()`` and the ``objId`` of its
    ``Class3D``; items are those of :func:`set_to_core`'s item id column. ValueError when a
    column is absent.
    """
    from .core.io import columns

    if columns.ITEM_ID_COLUMN not in particles.extra:
        raise ValueError(f"no {columns.ITEM_ID_COLUMN} column (not converted by set_to_core)")
    ids = np.asarray(particles.extra[columns.ITEM_ID_COLUMN]).astype(np.int64)
    classes = columns.class_numbers(particles.extra) + 1  # the column's 1-based numbers
    return {int(i): int(k) for i, k in zip(ids, classes)}


def ctf_from_particles(particles, acquisition=None) -> CTFParams | None:
    """Core CTF parameters of an iterable of Scipion particles (None if any lacks a CTF).

    Parameters
    ----------
    particles : iterable of pwem.objects.Particle
    acquisition : pwem.objects.Acquisition, optional
        Voltage, Cs and amplitude contrast of particles whose own acquisition lacks them
        (Scipion keeps one per particle, e.g. one per RELION optics group); defaults to the
        first particle's acquisition.

    Voltage, Cs and amplitude contrast are floats when every particle has the same, else
    arrays with each particle's own (see :class:`CTFParams`).
    """
    du, dv, dang, phase = [], [], [], []
    own = []  # each particle's (voltage, Cs, Q), None where its acquisition lacks one
    first = None
    for particle in particles:
        first = first or particle
        ctf = particle.getCTF() if particle.hasCTF() else None
        if ctf is None:
            return None
        du.append(ctf.getDefocusU())
        dv.append(ctf.getDefocusV())
        dang.append(ctf.getDefocusAngle())
        phase.append(ctf.getPhaseShift() or 0.0)
        own.append(_acquisition_values(particle.getAcquisition()))
    if first is None:
        return None
    fallback = _acquisition_values(acquisition if acquisition is not None
                                   else first.getAcquisition())
    defaults = (DEFAULT_VOLTAGE_KV, DEFAULT_CS_MM, DEFAULT_AMPLITUDE_CONTRAST)
    fallback = [v if v is not None else d for v, d in zip(fallback, defaults)]
    values = np.array([[v if v is not None else f for v, f in zip(row, fallback)]
                       for row in own], dtype=np.float64)  # (N, 3)
    optics = {name: (float(col[0]) if np.all(col == col[0]) else col)
              for name, col in zip(OPTICS_FIELDS, values.T)}
    return CTFParams(defocus_u_a=du, defocus_v_a=dv, defocus_angle_deg=dang,
                     phase_shift_deg=phase if any(phase) else None, **optics)


def _acquisition_values(acq):
    """``(voltage_kv, cs_mm, amplitude_contrast)`` of a Scipion Acquisition (None: unset)."""
    if acq is None:
        return None, None, None
    return tuple(None if v is None else float(v) for v in
                 (acq.getVoltage(), acq.getSphericalAberration(), acq.getAmplitudeContrast()))


def _read_locations(locations) -> np.ndarray:
    """The images at Scipion ``(index, filename)`` locations, ``ndarray (N, B, B) float32``.

    MRC stacks are read by :func:`scipion_deepalign.core.io.read_mrc_stack` (validated,
    memory-mapped, one open per file); other formats go through pwem's ImageHandler.
    """
    from .core.io import read_mrc_stack

    images = [None] * len(locations)
    by_file = OrderedDict()
    for i, (index, filename) in enumerate(locations):
        by_file.setdefault(_strip_suffix(filename), []).append((i, index))
    for filename, items in by_file.items():
        if not os.path.exists(filename):
            raise ValueError(f"image file of set_of_particles not found: {filename}")
        if filename.lower().endswith(STACK_EXTENSIONS_MRC):
            data, _ = read_mrc_stack(filename, mmap=True)
            for i, index in items:
                images[i] = np.array(data[max(index, 1) - 1], dtype=np.float32)
            del data
        else:
            from pwem.emlib.image import ImageHandler

            handler = ImageHandler()
            for i, index in items:
                images[i] = np.asarray(handler.read((index, filename)).getData(), np.float32)
    if not images:
        return np.zeros((0, 0, 0), np.float32)
    return np.stack(images)


def _strip_suffix(filename: str) -> str:
    # Scipion may append ':mrcs' / ':mrc' to force a format
    return filename.split(":")[0] if ":" in os.path.basename(filename) else filename


def set_to_core(set_of_particles, out_dir, *, stack_name="particles.mrcs",
                star_name="particles.star", extra_attributes=None) -> Particles:
    """Write a SetOfParticles as ONE ``.mrcs`` stack and a RELION 3.1 STAR file.

    The images are copied a chunk at a time (:func:`~scipion_deepalign.core.io.read_chunk`),
    so memory does not grow with the size of the set; the stack is written atomically.

    Poses (when the set has projection alignment) and CTF (when every particle has one) go
    into the STAR file; the Scipion item ids go to the extra column
    :data:`~scipion_deepalign.core.io.columns.ITEM_ID_COLUMN` so results can be matched back to
    the items.

    Parameters
    ----------
    set_of_particles : pwem.objects.SetOfParticles
    out_dir : str
        Folder for ``stack_name`` and ``star_name`` (created if missing).
    extra_attributes : dict of str to str, optional
        Item attributes to copy into STAR columns, ``{attribute: column}``, e.g.
        ``{"_deepalign_region1": columns.REGION_COLUMN % 1}``; every item must have them.

    Returns
    -------
    Particles
        The metadata written, ``root = out_dir``.

    Raises
    ------
    ValueError
        If the set is empty or has no sampling rate.
    """
    from .core.io import columns, write_particles_star

    n = set_of_particles.getSize()
    if not n:
        raise ValueError("set_of_particles is empty")
    pixel_size_a = set_of_particles.getSamplingRate()
    if not pixel_size_a:
        raise ValueError("set_of_particles has no sampling rate")
    os.makedirs(out_dir, exist_ok=True)
    items = [p.clone() for p in set_of_particles.iterItems()]
    ids = np.array([p.getObjId() for p in items], dtype=np.int64)
    box = _write_set_stack(os.path.join(out_dir, stack_name), [p.getLocation() for p in items],
                           pixel_size_a)
    angles = shifts = None
    if set_of_particles.hasAlignmentProj():
        matrices = [p.getTransform().getMatrix() for p in items]
        angles, shifts = matrix_to_pose(np.array(matrices))
    extra = {columns.ITEM_ID_COLUMN: ids}
    for attribute, column in (extra_attributes or {}).items():
        values = [getattr(p, attribute, None) for p in items]
        if any(v is None for v in values):
            raise ValueError(f"some particles of set_of_particles lack attribute {attribute}")
        extra[column] = np.array([v.get() for v in values])
    ctf = None
    if set_of_particles.hasCTF():
        ctf = ctf_from_particles(items, set_of_particles.getAcquisition())
    particles = Particles(
        image_names=stack_image_names(len(items), stack_name),
        pixel_size_a=float(pixel_size_a),
        box_px=box,
        angles_deg=angles,
        shifts_px=shifts,
        ctf=ctf,
        extra=extra,
        root=str(out_dir),
    )
    write_particles_star(os.path.join(out_dir, star_name), particles)
    return particles


def _write_set_stack(path, locations, pixel_size_a) -> int:
    """Copy the images at ``locations`` into one MRC stack, a memory-sized chunk at a time
    (a set of 10^5 particles never sits in memory); the box."""
    from .core.io import read_chunk, write_mrc_stack_chunks

    box = int(_read_locations(locations[:1]).shape[-1])
    step = read_chunk(box)
    chunks = (_read_locations(locations[start:start + step])
              for start in range(0, len(locations), step))
    write_mrc_stack_chunks(path, len(locations), box, chunks, pixel_size_a=pixel_size_a)
    return box


def volume_to_core(volume, out_path) -> tuple[int, float]:
    """Write a Scipion Volume as a plain MRC map for the core.

    Returns
    -------
    (box_px, pixel_size_a) : (int, float)
    """
    from .core.io import read_mrc, write_mrc

    filename = _strip_suffix(volume.getFileName())
    if not os.path.exists(filename):
        raise ValueError(f"volume file not found: {filename}")
    pixel_size_a = float(volume.getSamplingRate())
    if filename.lower().endswith(STACK_EXTENSIONS_MRC):
        data, _ = read_mrc(filename)
    else:
        from pwem.emlib.image import ImageHandler

        data = np.asarray(ImageHandler().read(volume).getData(), np.float32)
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise ValueError(f"volume {filename} must be a cube, got shape {data.shape}")
    write_mrc(out_path, data, pixel_size_a=pixel_size_a)
    return int(data.shape[-1]), pixel_size_a
