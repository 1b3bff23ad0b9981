"""Atomic file writes with the permissions an ordinary ``open(path, "w")`` would give.

Every output of the package (STAR, MRC, JSON, models) is written under a temporary name in
the target's folder and renamed over the target, so a crash never leaves a half-written file.
``tempfile.mkstemp`` creates that temporary file with mode 0600 whatever the umask; the file
is therefore given ``0o666 & ~umask`` before the rename, as a plain ``open`` would.
"""
from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager

__all__ = ["atomic_path", "atomic_open", "current_umask", "default_file_mode"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    Linux reports it in ``/proc/self/status``; elsewhere it is read with ``os.umask`` (set and
    restored at once, under a lock).
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` gives a new file."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_path(path, *, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; on success it becomes ``path``.

    Parameters
    ----------
    path : str or path-like
        The final file; its folder must exist (``FileNotFoundError`` naming it otherwise).
    suffix : str, keyword-only
        End of the temporary name (e.g. ``".keras"`` for writers that look at it).

    The caller writes the temporary file by name. On leaving the block normally the file
    gets :func:`default_file_mode` and is renamed over ``path``; on an exception it is
    removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """``open`` for writing through :func:`atomic_path` (same arguments as ``open``)."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
