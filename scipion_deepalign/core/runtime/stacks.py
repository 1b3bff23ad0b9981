"""Particle stacks held in memory or read on demand.

A *stack* is an ndarray ``(N, B, B)``, a memory map, or any object with ``len()`` whose
slices ``stack[i:j]`` are ``(j - i, B, B)`` arrays (:class:`.io.ParticleImages` reads them
from memory-mapped files). The alignment and the network's preprocessing read a stack a
block at a time, so that memory does not grow with the number of particles.
"""
from __future__ import annotations

import numpy as np

__all__ = ["RowStack", "as_stack", "stack_shape"]


def stack_shape(images) -> tuple:
    """``(N, B, B)`` of a stack: its ``shape``, else read from its first image."""
    if getattr(images, "shape", None) is not None:
        return tuple(images.shape)
    n = len(images)
    first = np.asarray(images[0:1]) if n else np.asarray(images)
    return (n,) + tuple(first.shape[1:])


class _ShapedStack:
    """A stack without a ``shape`` attribute, given its shape."""

    def __init__(self, images, shape):
        self._images, self.shape = images, tuple(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self._images[index])


def as_stack(images):
    """``images`` as a stack with ``shape``, ``len()`` and slices, without reading it:
    ndarrays, memory maps and shaped stacks as they are, lists as arrays, others wrapped."""
    if isinstance(images, (list, tuple)):
        return np.asarray(images)
    if getattr(images, "shape", None) is not None:
        return images
    return _ShapedStack(images, stack_shape(images))


class RowStack:
    """Rows ``rows`` of a stack, as a stack: ``view[i:j]`` reads ``stack[rows[i:j]]``."""

    def __init__(self, images, rows):
        self._images, self._rows = images, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self._rows),) + tuple(stack_shape(images)[1:])

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self._images[self._rows[index]])
