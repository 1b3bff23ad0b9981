"""Particle images behind RELION ``index@stack`` names: find and load them.

Names are split and joined only by :func:`~scipion_deepalign.core.particles.split_image_name`
and :func:`~scipion_deepalign.core.particles.join_image_name` (the index is what precedes the
*first* ``@``; the stack path may hold more); every relocation of a name goes through
:func:`relocate_image_names` or :func:`locate_stacks` here. Writing images with their STAR
file is :func:`scipion_deepalign.core.io.star_write.write_particles`.

Where relative stack paths are looked for
-----------------------------------------
RELION names images relative to its project folder (``Extract/job005/particles.mrcs`` in
``Refine3D/job010/run_data.star``); other programs name them relative to the STAR file.
:func:`locate_stacks` tries, for each relative stack and in this order, and keeps the first
folder that holds it:

1. ``datadir``, when given (cryoDRGN's ``--datadir``);
2. the STAR file's folder, then each of its parent folders up to the filesystem root;
3. the current folder.

:attr:`Particles.root` is then the folder the names are relative to. Written STAR files
keep the names relative to that root when they are written inside it (the RELION project
convention, so RELION run from the project folder finds them), and otherwise relative to
their own folder (see :func:`output_root`); either way :func:`locate_stacks` finds them
again from any working folder.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..imageops import finite_rows
from ..particles import join_image_name, split_image_name
from .mrc import read_mrc_stack

__all__ = ["stack_search_dirs", "locate_stacks", "stack_path", "relocate_image_names",
           "output_root", "load_images", "load_particle_images", "ParticleImages",
           "finite_particle_rows", "NonFiniteImagesError", "read_chunk", "READ_CHUNK_BYTES"]

#: Bad particles named in a message before "... and N more".
_SHOWN_BAD = 5
#: Bytes of float32 images read at once by the readers that go through a whole set
#: (ParticleImages users): 4096 images of 64 px, 256 of 256 px. A read holds about three
#: times this (the memory-mapped pages, the gathered copy, the result).
READ_CHUNK_BYTES = 64 * 2**20


def read_chunk(box_px) -> int:
    """Images of ``box_px`` read at once under :data:`READ_CHUNK_BYTES` (at least one)."""
    return max(1, READ_CHUNK_BYTES // (4 * int(box_px) ** 2))


def stack_search_dirs(star_path, datadir=None) -> list[str]:
    """Absolute folders where relative stack paths are looked for, in order (see above)."""
    dirs = [os.path.abspath(datadir)] if datadir else []
    folder = os.path.dirname(os.path.abspath(star_path))
    while True:
        dirs.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    dirs.append(os.getcwd())
    return list(dict.fromkeys(dirs))


def locate_stacks(names, star_path, *, datadir=None) -> tuple[str, list[str]]:
    """The folder the image names are relative to, and the names.

    Parameters
    ----------
    names : list of str
        ``index@stack`` names as written in the STAR file at ``star_path``.
    star_path : str or path-like
    datadir : str, optional
        Folder tried first.

    Returns
    -------
    root : str
        Absolute folder holding the first relative stack found; ``datadir`` (or the STAR's
        folder) when none is found, so that loading later names the missing stack.
    names : list of str
        ``names``, with the stacks found under another folder than ``root`` rewritten
        relative to ``root``.
    """
    dirs = stack_search_dirs(star_path, datadir)
    found = {}
    for stack in dict.fromkeys(split_image_name(n)[1] for n in names):
        if not os.path.isabs(stack):
            found[stack] = next((d for d in dirs if os.path.isfile(os.path.join(d, stack))),
                                None)
    hits = [d for d in found.values() if d is not None]
    root = hits[0] if hits else dirs[0]
    moved = {s: os.path.relpath(os.path.join(d, s), root)
             for s, d in found.items() if d is not None and d != root}
    if moved:
        names = [join_image_name(n, moved.get(split_image_name(n)[1], split_image_name(n)[1]))
                 for n in names]
    return root, list(names)


def stack_path(name, root) -> str:
    """Path of the stack of image ``name`` (relative stacks are joined to ``root``)."""
    stack = split_image_name(name)[1]
    return stack if os.path.isabs(stack) else os.path.join(root, stack)


def output_root(star_path, root) -> str:
    """Folder the image names of a STAR written to ``star_path`` are made relative to.

    ``root`` itself when the STAR goes inside it (RELION project layout), else the STAR's
    own folder.
    """
    folder = os.path.dirname(os.path.abspath(star_path))
    root = os.path.abspath(root)
    inside = os.path.commonpath([folder, root]) == root
    return root if inside else folder


def relocate_image_names(names, root, new_root) -> list[str]:
    """``names`` relative to ``root`` rewritten relative to ``new_root`` (absolute kept)."""
    if os.path.abspath(root) == os.path.abspath(new_root):
        return list(names)
    out = []
    for name in names:
        stack = split_image_name(name)[1]
        if not os.path.isabs(stack):
            stack = os.path.relpath(os.path.join(root, stack), new_root)
        out.append(join_image_name(name, stack))
    return out


class NonFiniteImagesError(ValueError):
    """Some images hold NaN or Inf pixels; ``rows`` are their 0-based particle indices."""

    def __init__(self, message, rows):
        super().__init__(message)
        self.rows = np.asarray(rows, dtype=np.int64)


def _bad_message(particles, rows) -> str:
    shown = ", ".join(f"#{r + 1} {particles.image_names[r]}" for r in rows[:_SHOWN_BAD])
    more = f" and {len(rows) - _SHOWN_BAD} more" if len(rows) > _SHOWN_BAD else ""
    return (f"{len(rows)} of {len(particles)} particle images hold NaN or Inf pixels "
            f"(particle number in the STAR file, image): {shown}{more}")


def _read_images(particles, rows) -> np.ndarray:
    """Images of the particles at 0-based ``rows``, each stack opened once (memory map)."""
    box = int(particles.box_px)
    out = np.empty((len(rows), box, box), dtype=np.float32)
    by_stack: dict[str, list[tuple[int, int]]] = {}
    for k, row in enumerate(rows):
        name = particles.image_names[row]
        by_stack.setdefault(stack_path(name, particles.root), []).append(
            (k, split_image_name(name)[0]))
    for path, pairs in by_stack.items():
        _check_stack_exists(path)
        stack, _ = read_mrc_stack(path, mmap=True)
        ks = np.array([k for k, _ in pairs])
        idxs = np.array([i for _, i in pairs])
        bad = (idxs < 1) | (idxs > len(stack))
        if bad.any():
            raise ValueError(f"{path}: image index {int(idxs[bad][0])} out of range, the "
                             f"stack holds {len(stack)} images (indices are 1-based)")
        if stack.shape[-1] != box:
            raise ValueError(f"{path}: images are {stack.shape[-1]} px but the particles "
                             f"say box_px={box}")
        order = np.argsort(idxs)  # sequential reads of the memory map
        out[ks[order]] = stack[idxs[order] - 1]
        del stack
    return out


def _check_stack_exists(path) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"image stack not found: {path} (relative image names are looked for in the "
            "STAR file's folder, its parent folders and the current folder)")


def _rows(particles, index) -> np.ndarray:
    rows = np.arange(len(particles))
    return rows if index is None else np.atleast_1d(rows[index])


def load_images(particles, index=None) -> np.ndarray:
    """Read the images of ``particles`` (or of ``particles.subset(index)``).

    Stacks are memory-mapped and each is opened once, so selecting a few particles from a
    large stack reads only those images. Every image is checked to be finite.

    Parameters
    ----------
    particles : Particles
        ``image_names`` are ``index@stack`` with 1-based indices; relative stack paths are
        resolved against ``particles.root`` (see :func:`locate_stacks`).
    index : slice, int array or bool mask, optional

    Returns
    -------
    ndarray of shape (N, B, B), float32

    Raises
    ------
    FileNotFoundError
        A stack is missing (the message names it).
    NonFiniteImagesError
        Some images hold NaN or Inf (the message names the first particles, 1-based).
    ValueError
        An index is out of range for its stack, or a stack's box differs from
        ``particles.box_px``.
    """
    return load_particle_images(particles, index)[1]


def load_particle_images(particles, index=None, *, skip_bad=False):
    """Images of ``particles`` (or of ``index``); with ``skip_bad`` non-finite ones dropped.

    Returns
    -------
    rows : ndarray of shape (K,), int
        0-based particles whose images are returned (``particles.subset(rows)``).
    images : ndarray of shape (K, B, B), float32

    Raises
    ------
    NonFiniteImagesError
        Without ``skip_bad``, when an image holds NaN or Inf. With it, dropped particles
        are named in a ``UserWarning`` (``rows`` may then be empty).
    """
    rows = _rows(particles, index)
    images = _read_images(particles, rows)
    good = finite_rows(images)
    if good.all():
        return rows, images
    message = _bad_message(particles, rows[~good])
    if not skip_bad:
        raise NonFiniteImagesError(message, rows[~good])
    warnings.warn(f"{message}; skipping them", UserWarning, stacklevel=2)
    return rows[good], images[good]


class ParticleImages:
    """The images of ``particles``, read on demand: a stack that is never all in memory.

    ``len(stack)``, ``stack.shape`` ``(N, B, B)`` and ``stack[index]`` (a slice, int array
    or mask: :func:`load_images` of those particles, from memory-mapped stacks, checked to
    be finite). For :func:`scipion_deepalign.core.align.align.align_particles`, which reads one
    block at a time. Every stack is checked to exist when the reader is made.
    """

    def __init__(self, particles):
        self.particles = particles
        for path in dict.fromkeys(stack_path(n, particles.root) for n in particles.image_names):
            _check_stack_exists(path)

    def __len__(self) -> int:
        return len(self.particles)

    @property
    def shape(self) -> tuple:
        box = int(self.particles.box_px)
        return (len(self.particles), box, box)

    def __getitem__(self, index) -> np.ndarray:
        return load_images(self.particles, index)


def finite_particle_rows(particles, *, skip_bad=False, chunk=None) -> np.ndarray:
    """0-based rows of the particles whose images are finite, reading ``chunk`` at a time.

    The check that runs before heavy work on a lazily read stack (:class:`ParticleImages`):
    it never holds more than ``chunk`` images (default :func:`read_chunk` of the box).
    Without ``skip_bad`` a non-finite image raises :class:`NonFiniteImagesError` naming the
    particles; with it they are named in one ``UserWarning`` and left out (as
    :func:`load_particle_images`).
    """
    n = len(particles)
    chunk = read_chunk(particles.box_px) if chunk is None else int(chunk)
    good = np.ones(n, dtype=bool)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        good[rows] = finite_rows(_read_images(particles, rows))
    if not good.all():
        bad = np.flatnonzero(~good)
        message = _bad_message(particles, bad)
        if not skip_bad:
            raise NonFiniteImagesError(message, bad)
        warnings.warn(f"{message}; skipping them", UserWarning, stacklevel=2)
    return np.flatnonzero(good)
