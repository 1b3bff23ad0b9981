"""The one way this package compiles its CPU loops (numba)."""
from __future__ import annotations

import numba

__all__ = ["compiled"]


def compiled(function):
    """``numba.njit(nogil=True)``, cached on disk where numba finds a writable folder (the
    package's ``__pycache__`` or the user's cache); otherwise compiled in each process."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # numba: no locator available (read-only install, no home)
        return numba.njit(nogil=True)(function)
