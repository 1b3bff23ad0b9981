"""The size of a correlation search per particle, as the Align form and its wizard show it.

Pure (no Scipion import): the wizards in :mod:`scipion_deepalign.wizards` only display it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..particles import positive_float

__all__ = ["SearchCost", "search_cost"]


#: particle radius as a fraction of the box, as :func:`~.align.align_particles` assumes
#: without a mask (for the automatic angular step)
_RADIUS_BOX_FRACTION = 0.45


@dataclass(frozen=True)
class SearchCost:
    """Size of the correlation search for one particle.

    Attributes
    ----------
    step_deg : float
        Angular step used (``automatic_step``: the default of the alignment, one pixel at the
        particle radius of the search images, two before a local refinement).
    search_box_px : int
        Box of the images compared (after downsampling to the search resolution).
    n_directions_unit : int
        Reference directions in the whole asymmetric unit (a global search).
    n_directions : int
        Directions searched per particle: the unit's share of ``top_k`` of ``n_regions``
        regions (the same as ``n_directions_unit`` without regions).
    n_inplane : int
        In-plane angles per direction.
    n_shifts : int
        Integer shifts within the maximum shift, at the search sampling.
    """

    step_deg: float
    automatic_step: bool
    search_box_px: int
    n_directions_unit: int
    n_directions: int
    n_inplane: int
    n_shifts: int
    refine: bool = False

    @property
    def references(self) -> int:
        """Reference images (direction x in-plane angle) each particle is compared with."""
        return self.n_directions * self.n_inplane

    @property
    def comparisons(self) -> int:
        """References x shifts: correlation values computed per particle."""
        return self.references * self.n_shifts

    def message(self) -> str:
        how = "chosen"
        if self.automatic_step:
            how = ("automatic: two pixels at the particle radius, then local refinement"
                   if self.refine else "automatic: one pixel at the particle radius")
        text = (f"Angular step {self.step_deg:.2g} deg ({how}) on {self.search_box_px} px "
                f"images: {self.n_directions_unit} reference directions in the asymmetric "
                f"unit")
        if self.n_directions != self.n_directions_unit:
            text += f", about {self.n_directions} in the regions searched per particle"
        return text + (f"; x {self.n_inplane} in-plane angles = {self.references:,} "
                       f"references, x {self.n_shifts} shifts = {self.comparisons:,} "
                       "comparisons per particle.")


def search_cost(box_px: int, pixel_size_a: float, *, symmetry: str = "c1",
                step_deg: float | None = None, target_resolution_a: float | None = None,
                max_shift_px: float | None = None, top_k: int | None = None,
                n_regions: int | None = None, refine: bool | None = None) -> SearchCost:
    """How many references and comparisons an angular step means for each particle.

    Parameters
    ----------
    box_px, pixel_size_a : int, float
        Particle geometry.
    symmetry : str
    step_deg : float or None
        None: the alignment's automatic step.
    target_resolution_a : float or None
        Search resolution (images downsampled first), None for the full box.
    max_shift_px : float or None
        In input pixels; None: the alignment's default (:func:`.defaults.default_max_shift_px`).
    top_k, n_regions : int or None
        Regions searched per particle and regions of the model (None: a global search).
    refine : bool or None
        Whether the local refinement follows (the automatic step is then coarser); None: the
        alignment's default (:data:`~scipion_deepalign.core.defaults.REFINE`).

    Raises
    ------
    ValueError
        For a box below 2 px, a step that is not positive, or the errors of
        ``downsampled_geometry``.
    """
    import numpy as np

    from ..defaults import REFINE, default_max_shift_px
    from ..projection import downsampled_geometry
    from ..regions import region_direction_grids
    from .gallery import default_step_deg, psi_grid_deg

    if not box_px or int(box_px) < 2:
        raise ValueError(f"box_px must be at least 2, got {box_px!r}")
    small = int(box_px)
    if target_resolution_a is not None:
        small = int(downsampled_geometry(box_px, pixel_size_a, target_resolution_a)[0])
    scale = box_px / small
    automatic = step_deg is None
    refine = REFINE if refine is None else bool(refine)
    step = default_step_deg(_RADIUS_BOX_FRACTION * box_px / scale, refine=refine) if automatic \
        else positive_float(step_deg, "step_deg")
    unit = len(region_direction_grids(np.zeros((1, 2)), symmetry, step)[0])
    directions = unit
    if top_k and n_regions:
        directions = int(np.ceil(unit * min(top_k, n_regions) / n_regions))
    shift = default_max_shift_px(box_px) if max_shift_px is None else float(max_shift_px)
    radius = int(np.floor(shift / scale))
    offsets = np.arange(-radius, radius + 1)
    n_shifts = int(np.sum(offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (shift / scale) ** 2))
    return SearchCost(float(step), automatic, small, unit, directions,
                      len(psi_grid_deg(step)), max(n_shifts, 1), refine)
