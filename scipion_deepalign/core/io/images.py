"""Particle images behind RELION ``index@stack`` names: load them, write them with a STAR."""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from .mrc import read_mrc_stack, write_mrc

__all__ = ["split_image_name", "load_images", "write_particles"]


def split_image_name(name: str) -> tuple[int, str]:
    """``"12@stack.mrcs"`` -> ``(12, "stack.mrcs")`` (1-based); a bare path means image 1."""
    if "@" in name:
        idx, stack = name.split("@", 1)
        try:
            return int(idx), stack
        except ValueError:
            raise ValueError(f"image name {name!r}: the part before '@' must be an "
                             "integer (1-based index)") from None
    return 1, name


def load_images(particles, index=None) -> np.ndarray:
    """Read the images of ``particles`` (or of ``particles.subset(index)``).

    Stacks are memory-mapped and each is opened once, so selecting a few particles from a
    large stack reads only those images.

    Parameters
    ----------
    particles : Particles
        ``image_names`` are ``index@stack`` with 1-based indices; relative stack paths are
        resolved against ``particles.root``.
    index : slice, int array or bool mask, optional

    Returns
    -------
    ndarray of shape (N, B, B), float32

    Raises
    ------
    FileNotFoundError
        A stack is missing (the message names it).
    ValueError
        An index is out of range for its stack, or a stack's box differs from
        ``particles.box_px``.
    """
    names = particles.image_names
    if index is not None:
        names = [names[i] for i in np.atleast_1d(np.arange(len(names))[index])]
    box = int(particles.box_px)
    out = np.empty((len(names), box, box), dtype=np.float32)
    by_stack: dict[str, list[tuple[int, int]]] = {}
    for row, name in enumerate(names):
        idx, stack = split_image_name(name)
        path = stack if os.path.isabs(stack) else os.path.join(particles.root, stack)
        by_stack.setdefault(path, []).append((row, idx))
    for path, pairs in by_stack.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image stack not found: {path}")
        stack, _ = read_mrc_stack(path, mmap=True)
        rows = np.array([r for r, _ in pairs])
        idxs = np.array([i for _, i in pairs])
        bad = (idxs < 1) | (idxs > len(stack))
        if bad.any():
            raise ValueError(f"{path}: image index {int(idxs[bad][0])} out of range, the "
                             f"stack holds {len(stack)} images (indices are 1-based)")
        if stack.shape[-1] != box:
            raise ValueError(f"{path}: images are {stack.shape[-1]} px but the particles "
                             f"say box_px={box}")
        order = np.argsort(idxs)  # sequential reads of the memory map
        out[rows[order]] = stack[idxs[order] - 1]
        del stack
    return out


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
    from .star import write_particles_star

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (N, B, B), got {images.shape}")
    if len(images) != len(particles):
        raise ValueError(f"{len(images)} images but {len(particles)} particles")
    stack_path, star_path = os.fspath(stack_path), os.fspath(star_path)
    root = os.path.dirname(os.path.abspath(star_path))
    rel = os.path.relpath(os.path.abspath(stack_path), root)
    write_mrc(stack_path, images, pixel_size_a=particles.pixel_size_a, stack=True)
    new = replace(particles, image_names=[f"{i:06d}@{rel}" for i in range(1, len(images) + 1)],
                  box_px=int(images.shape[-1]), root=root)
    write_particles_star(star_path, new)
    return new
