"""The geometry of a correlation search, without its arrays: search box, particle radius,
direction step, in-plane grid and shift window.

:meth:`.search.Search.create` builds its search on it, and :func:`.cost.search_cost` (what the
Align form's wizard shows) counts with it, so both give the same step and shifts. Cheap: no
Fourier band, masks or phases are made.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import mask_radius_or_default_px
from .gallery import default_step_deg, psi_grid_deg
from .matching import shift_window

__all__ = ["SearchGeometry", "search_geometry"]


@dataclass(frozen=True)
class SearchGeometry:
    """Where and how finely a search compares particles with references.

    Attributes
    ----------
    box_px, pixel_size_a : int, float
        Search box and its pixel size (after downsampling to the search resolution).
    scale : float
        Original box / search box.
    radius_px : float
        Particle radius in search pixels (the references' mask and the automatic step's).
    step_deg : float
        Direction step of the galleries.
    automatic_step : bool
        Whether ``step_deg`` is the automatic one (:func:`.gallery.default_step_deg`).
    psi_deg : ndarray of shape (P,)
        In-plane grid.
    max_shift_px : float
        Shift disc radius in search pixels.
    offsets : int ndarray of shape (K, 2)
        ``(dy, dx)`` of the shift window (:func:`.matching.shift_window`).
    """

    box_px: int
    pixel_size_a: float
    scale: float
    radius_px: float
    step_deg: float
    automatic_step: bool
    psi_deg: np.ndarray
    max_shift_px: float
    offsets: np.ndarray


def search_geometry(box_px: int, pixel_size_a: float, *, max_shift_px: float,
                    target_resolution_a=None, mask_radius_px=None, step_deg=None,
                    psi_step_deg=None, refine: bool = False) -> SearchGeometry:
    """The geometry of a search on ``box_px`` images (arguments as
    :func:`~.align.align_particles`; ``target_resolution_a`` a number of Å or None for the
    full box; ``refine``: the local refinement follows, so the automatic step is coarser).

    ``mask_radius_px`` None: :func:`~scipion_deepalign.core.defaults.mask_radius_or_default_px`
    of the box.
    """
    small, pixel_small = int(box_px), float(pixel_size_a)
    if target_resolution_a is not None:
        from ..projection import downsampled_geometry

        small, pixel_small = downsampled_geometry(box_px, pixel_size_a, target_resolution_a)
        small = int(small)
    scale = box_px / small
    radius = mask_radius_or_default_px(box_px, mask_radius_px) / scale
    automatic = step_deg is None
    step = default_step_deg(radius, refine=refine) if automatic else float(step_deg)
    psi = psi_grid_deg(step if psi_step_deg is None else float(psi_step_deg))
    shift = float(max_shift_px) / scale
    return SearchGeometry(small, float(pixel_small), scale, radius, step, automatic, psi,
                          shift, shift_window(shift))
