"""The K reference maps of a several-class alignment: checked against each other, each on one
scale.

Rules, each with its own message naming the map (its file name when the caller gives one):

1. at least one map;
2. every map a cube of the first map's box;
3. every known pixel size the same as the first known one (:func:`~..defaults.same_pixel_size`),
   and as the particles' when given;
4. no map is constant or holds non-finite values (:func:`~..resolution.check_map_values`).

Each map is then scaled to zero mean and unit standard deviation over its box, so that maps of
different mass (a complex with and without a subunit) enter the search on one scale. The
search's score does not need it: :mod:`..align.matching` correlates masked, zero-mean,
unit-norm band spectra, so a reference's score does not change when the map is multiplied by a
constant or has one added; the scaling keeps the maps comparable for whatever else reads them
(training images, reconstructions to compare with).
"""
from __future__ import annotations

import numpy as np

from ..defaults import check_pixel_sizes
from ..resolution import check_map_values

__all__ = ["class_references"]


def class_references(volumes, *, pixel_sizes_a=None, names=None,
                     pixel_size_a: float | None = None) -> np.ndarray:
    """The checked, scale-normalised maps of K classes.

    Parameters
    ----------
    volumes : sequence of ndarray of shape (B, B, B)
        One map per class, class ``k`` being ``volumes[k]``.
    pixel_sizes_a : sequence of (float or None), optional
        Each map's pixel size (Å) as its file gives it (None: unknown, not checked).
    names : sequence of str, optional
        What to call each map in messages (its file name); default ``"map 1"``, ...
    pixel_size_a : float, optional
        The particles' pixel size, which every known map pixel size must equal.

    Returns
    -------
    ndarray of shape (K, B, B, B), float32
        Each map with zero mean and unit standard deviation.

    Raises
    ------
    ValueError
        For the first broken rule of the module docstring, naming the map.
    """
    volumes = list(volumes)
    if not volumes:
        raise ValueError("at least one reference map is needed")
    k = len(volumes)
    names = [f"map {i + 1}" for i in range(k)] if names is None else [str(n) for n in names]
    pixels = [None] * k if pixel_sizes_a is None else list(pixel_sizes_a)
    if len(names) != k or len(pixels) != k:
        raise ValueError(f"{k} maps but {len(names)} names and {len(pixels)} pixel sizes")
    first = np.asarray(volumes[0])
    _check_cube(first, names[0])
    box = first.shape[0]
    check_pixel_sizes(pixels, names, pixel_size_a)
    out = np.empty((k, box, box, box), dtype=np.float32)
    for i, (volume, name) in enumerate(zip(volumes, names)):
        volume = np.asarray(volume, dtype=np.float64)
        _check_cube(volume, name)
        if volume.shape[0] != box:
            raise ValueError(f"{name}: box {volume.shape[0]} px differs from {names[0]}'s "
                             f"{box} px (every class map needs the same box)")
        check_map_values(volume, name)
        out[i] = (volume - volume.mean()) / volume.std()
    return out


def _check_cube(volume, name) -> None:
    if volume.ndim != 3 or not volume.shape[0] == volume.shape[1] == volume.shape[2]:
        raise ValueError(f"{name}: a cubic 3D map was expected, got shape {volume.shape}")
