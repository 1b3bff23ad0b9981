"""MRC maps and image stacks (through :mod:`mrcfile`), read safely and written atomically.

Validation rules
----------------
Every reader applies these rules, one ``ValueError`` (or ``FileNotFoundError``) per broken
rule, always naming the file:

1. **Missing file** -> ``FileNotFoundError("MRC file not found: <path>")``.
2. **Truncated or corrupt file** (header shorter than 1024 bytes, unknown data mode, data
   block shorter than the header announces, ...) -> ``ValueError("<path>: not a readable MRC
   file (<mrcfile's reason>)")``.
3. **Old-style header** (no ``MAP`` ID string or an unrecognised machine stamp, as written by
   old RELION/Xmipp versions): the file is read in mrcfile's permissive mode after a
   ``UserWarning`` naming the file; its header pixel size (often a placeholder 1.0) should
   not be trusted.
4. **Wrong dimensionality**: :func:`read_volume` wants cubic 3D data and refuses a single
   image, a stack of non-cubic shape or a volume stack; :func:`read_mrc_stack` wants 2D data
   (a stack of one) or 3D data with square images and refuses a 4D volume stack or
   non-square images. A stack of ``N`` images of ``N x N`` pixels cannot be told from a
   volume by its shape (MRC headers in the wild do not mark stacks reliably), so it is
   accepted by both.

Pixel sizes are in Angstrom; a header voxel size of 0 is reported as ``None``.
"""
from __future__ import annotations

import os
import warnings

import mrcfile
import numpy as np

from ..runtime.atomic import atomic_path

__all__ = ["read_mrc", "read_mrc_stack", "read_volume", "read_mrc_header", "write_mrc",
           "write_mrc_stack_chunks"]

# mrcfile messages that mean "old-style but readable" rather than corrupt.
_OLD_STYLE_REASONS = ("Map ID string not found", "Unrecognised machine stamp")


def _check_exists(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MRC file not found: {path}")
    return path


def _open_mmap(path: str):
    """Open ``path`` read-only with mrcfile.mmap, falling back to permissive mode (rule 3)."""
    try:
        return mrcfile.mmap(path, mode="r")
    except ValueError as exc:
        reason = str(exc)
        if not any(r in reason for r in _OLD_STYLE_REASONS):
            if "mmap length" in reason:  # numpy's words for a short data block
                reason = (f"data block truncated: the file has {os.path.getsize(path)} bytes, "
                          "fewer than its header announces")
            raise ValueError(f"{path}: not a readable MRC file ({reason})") from exc
    except Exception as exc:  # mrcfile raises various errors on garbage
        raise ValueError(f"{path}: not a readable MRC file ({exc})") from exc
    warnings.warn(f"{path}: old-style MRC header ({reason}); reading it in permissive "
                  "mode, its header pixel size may be a placeholder", UserWarning, stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile repeats the same complaint as warnings
        try:
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable MRC file ({exc})") from exc
    if mrc.data is None:
        mrc.close()
        raise ValueError(f"{path}: not a readable MRC file (data block missing, truncated or "
                         "of an unknown mode)")
    return mrc


def _pixel_size(mrc) -> float | None:
    size = float(mrc.voxel_size.x)
    return size if size > 0 else None


def read_mrc_header(path) -> dict:
    """Shape, dtype and pixel size of an MRC file without reading its data.

    Returns
    -------
    dict
        ``{"shape": tuple, "dtype": numpy.dtype, "pixel_size_a": float or None,
        "data_offset": int}`` (``data_offset`` in bytes, for :class:`numpy.memmap`).
    """
    path = _check_exists(path)
    with _open_mmap(path) as mrc:
        return {"shape": tuple(mrc.data.shape), "dtype": mrc.data.dtype,
                "pixel_size_a": _pixel_size(mrc),
                "data_offset": int(mrc.header.nbytes + mrc.extended_header.nbytes)}


def read_mrc(path) -> tuple[np.ndarray, float | None]:
    """Data and pixel size of any MRC file (2D image, stack or volume), as float32.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    data : ndarray of shape (Y, X), (N, Y, X) or (Z, Y, X), float32
    pixel_size_a : float or None
        Header voxel size along x in Angstrom, ``None`` when the header says 0.
    """
    path = _check_exists(path)
    with _open_mmap(path) as mrc:
        return np.array(mrc.data, dtype=np.float32), _pixel_size(mrc)


def read_volume(path) -> tuple[np.ndarray, float | None]:
    """A cubic 3D map (rule 4).

    Returns
    -------
    volume : ndarray of shape (B, B, B), float32, indexed ``[z, y, x]``
    pixel_size_a : float or None
    """
    data, pixel_size_a = read_mrc(path)
    if data.ndim != 3:
        kind = "a single 2D image" if data.ndim == 2 else f"{data.ndim}D data (a volume stack)"
        raise ValueError(f"{path}: a 3D volume was expected but the file holds {kind}, "
                         f"shape {data.shape}")
    if not data.shape[0] == data.shape[1] == data.shape[2]:
        raise ValueError(f"{path}: a cubic 3D volume was expected but the data has shape "
                         f"{data.shape} (a stack of {data.shape[0]} images?)")
    return data, pixel_size_a


def read_mrc_stack(path, *, mmap=False) -> tuple[np.ndarray, float | None]:
    """A stack of square images (rule 4); a 2D image counts as a stack of one.

    Parameters
    ----------
    path : str or path-like
    mmap : bool, optional
        Return mrcfile's read-only :class:`numpy.memmap` in the file's own dtype instead of
        loading the whole stack as float32 (for stacks larger than memory).

    Returns
    -------
    images : ndarray of shape (N, B, B)
        float32, or the file's dtype when ``mmap`` is true.
    pixel_size_a : float or None
    """
    path = _check_exists(path)
    with _open_mmap(path) as mrc:  # mrcfile's memory map outlives the closed file
        data, pixel_size_a = mrc.data, _pixel_size(mrc)
    shape = data.shape
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"{path}: an image stack was expected but the file holds "
                         f"{len(shape)}D data (a volume stack), shape {shape}")
    if data.shape[1] != data.shape[2]:
        raise ValueError(f"{path}: images must be square, the stack has images of "
                         f"{data.shape[1]} x {data.shape[2]} pixels")
    if not mmap:
        data = np.array(data, dtype=np.float32)
    return data, pixel_size_a


def _check_pixel_size(path, pixel_size_a) -> None:
    if pixel_size_a is not None and not pixel_size_a > 0:
        raise ValueError(f"pixel_size_a for {path} must be positive, got {pixel_size_a}")


def write_mrc(path, data, *, pixel_size_a, stack=None) -> None:
    """Write an image, stack or volume as float32 MRC, atomically.

    The file is written under a temporary name in the same folder and renamed, so a crash
    never leaves a half-written ``path``.

    Parameters
    ----------
    path : str or path-like
    data : array_like of shape (Y, X), (N, Y, X) or (Z, Y, X)
    pixel_size_a : float or None
        Voxel size in Angstrom written to the header (``None`` writes 0, unknown).
    stack : bool, optional
        Mark 3D data as an image stack (space group 0) rather than a volume. Default:
        true when ``path`` ends in ``.mrcs``.
    """
    path = os.fspath(path)
    data = np.asarray(data, dtype=np.float32)
    if data.ndim not in (2, 3):
        raise ValueError(f"data for {path} must be 2D or 3D, got shape {data.shape}")
    _check_pixel_size(path, pixel_size_a)
    if stack is None:
        stack = path.endswith(".mrcs")
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(data)
        if data.ndim == 3:
            if stack:
                mrc.set_image_stack()
            else:
                mrc.set_volume()
        mrc.voxel_size = float(pixel_size_a or 0.0)


def write_mrc_stack_chunks(path, n, box, chunks, *, pixel_size_a) -> None:
    """Write an ``(n, box, box)`` float32 stack from ``chunks``, atomically, one chunk in
    memory at a time (for stacks larger than memory).

    ``chunks`` yields ``(K, box, box)`` arrays in order, ``n`` images in all; the header's
    statistics are accumulated chunk by chunk. ``ValueError`` naming ``path`` when a chunk
    has another image size or the chunks do not add up to ``n`` (nothing is left at
    ``path`` then).
    """
    path = os.fspath(path)
    _check_pixel_size(path, pixel_size_a)
    n, box = int(n), int(box)
    lo, hi, total, squares, start = np.inf, -np.inf, 0.0, 0.0, 0
    with atomic_path(path) as tmp, mrcfile.new_mmap(tmp, shape=(n, box, box), mrc_mode=2,
                                                   overwrite=True) as mrc:
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32)
            if chunk.ndim != 3 or chunk.shape[1:] != (box, box):
                raise ValueError(f"{path}: images {start + 1}.. are {chunk.shape[1:]} px, "
                                 f"the stack's are {(box, box)}")
            if start + len(chunk) > n:
                raise ValueError(f"{path}: more than the {n} images announced")
            mrc.data[start:start + len(chunk)] = chunk
            start += len(chunk)
            if chunk.size:
                lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
                total += float(chunk.sum(dtype=np.float64))
                squares += float(np.square(chunk, dtype=np.float64).sum())
        if start != n:
            raise ValueError(f"{path}: {start} images written, {n} announced")
        mrc.set_image_stack()
        mrc.voxel_size = float(pixel_size_a or 0.0)
        if start:
            size = float(n) * box * box
            mean = total / size
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = lo, hi, mean
            mrc.header.rms = np.sqrt(max(squares / size - mean * mean, 0.0))
