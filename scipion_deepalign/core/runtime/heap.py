"""glibc's large-allocation thresholds, put back where TensorFlow pins them.

TensorFlow's generator datasets (Keras's ``fit`` on a ``PyDataset``) call
``mallopt(M_MMAP_THRESHOLD, 128 KiB)`` once in a process (its ``ApplyPython311MemoryPatch``,
seen with gdb in a ``deepalign run``). Setting the threshold also turns glibc's dynamic
threshold off: from then on every array of 128 KiB or more is mapped fresh from the kernel
and unmapped when freed, so each of the alignment's temporary arrays page-faults and zeroes
its pages again. After a training in the same process, the alignment of 2 000 particles took
about 900 000 page faults and 5 s more system time than the same alignment in a process that
had not trained (docs/benchmarks_align.md, "The alignment after a training in the same
process").

:func:`reuse_freed_memory` sets the thresholds where glibc's own dynamic rule ends on a 64-bit
machine (freed arrays up to 32 MiB are reused from the heap; up to 64 MiB free at its top is
kept), which is what a process that never trained works with. Elsewhere than glibc it does
nothing.
"""
from __future__ import annotations

import ctypes
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "reuse_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
#: the ceiling of glibc's dynamic mmap threshold on 64-bit machines (4 MiB * sizeof(long))
MMAP_THRESHOLD = 32 << 20
#: the trim threshold glibc's dynamic rule keeps beside it (twice the mmap threshold)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def reuse_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to :data:`MMAP_THRESHOLD` and
    :data:`TRIM_THRESHOLD`; returns whether they were set (False off glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
