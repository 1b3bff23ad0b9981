"""The size of a correlation search per particle, as the Align form and its wizard show it.

Counted on the alignment's own geometry (:func:`.search_geometry.search_geometry`: the same
step, in-plane grid and shift window as :meth:`.search.Search.create`) and its global grid
(:func:`.gallery.global_directions_deg`). Pure (no Scipion import): the wizards in
:mod:`scipion_deepalign.wizards` only display it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..particles import positive_float

__all__ = ["SearchCost", "search_cost", "REFINE_CANDIDATE_WORK", "gallery_work", "refine_work"]


#: work of one local-refinement candidate beyond its shift window, per band coefficient, in
#: units of the gallery search's (coefficient x shift) products: the trilinear sampling of the
#: map's spectrum, the reference mask, the normalisation and the cross-spectrum. Measured on
#: 2 CPU cores (500 particles at 64 px, 34 px search and 44 px refinement boxes: 0.33 us per
#: gallery comparison of 461 coefficients x 13 shifts, 40 us per candidate of 778 coefficients
#: x 45 shifts); what weighs the refinement against the search in the alignment's progress
REFINE_CANDIDATE_WORK = 900.0


def gallery_work(comparisons, band_size: int, n_shifts: int) -> float:
    """Work of ``comparisons`` gallery comparisons (:attr:`SearchCost.comparisons`): each a
    GEMM row of ``band_size`` coefficients by ``n_shifts`` shifts."""
    return float(comparisons) * int(band_size) * int(n_shifts)


def refine_work(candidates, band_size: int, n_shifts: int) -> float:
    """Work of ``candidates`` refinement candidates (:attr:`SearchCost.refine_comparisons`)
    on ``band_size`` coefficients and ``n_shifts`` shifts, in :func:`gallery_work`'s units."""
    return float(candidates) * int(band_size) * (int(n_shifts) + REFINE_CANDIDATE_WORK)


@dataclass(frozen=True)
class SearchCost:
    """Size of the correlation search for one particle.

    Attributes
    ----------
    step_deg : float
        Angular step used (``automatic_step``: the default of the alignment,
        :func:`.gallery.default_step_deg` at the particle radius of the search images).
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
    refine : bool
        Whether the local refinement follows.

    A comparison is one (particle, reference direction, in-plane angle): the one definition
    of :func:`.align.align_particles`, the CLI summary and the forms.
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
        """Gallery comparisons per particle, as the alignment counts them
        (``AlignmentResult.n_comparisons``): one per (direction, in-plane angle), each scored
        over all ``n_shifts`` shifts at once."""
        return self.references

    @property
    def refine_comparisons(self) -> int:
        """Candidate poses the local refinement scores per particle (counted apart, as
        ``AlignmentResult.n_refine_comparisons``, which is at most this: a repeated start is
        searched once, a start far below the best not at all); 0 without refinement."""
        from .local_refinement import CANDIDATES_PER_PARTICLE

        return CANDIDATES_PER_PARTICLE if self.refine else 0

    def message(self) -> str:
        how = "chosen"
        if self.automatic_step:
            from ..defaults import GALLERY_STEP_PX

            how = (f"automatic: {GALLERY_STEP_PX[self.refine]:g} px at the particle radius"
                   + (", then local refinement" if self.refine else ""))
        text = (f"Angular step {self.step_deg:.2g} deg ({how}) on {self.search_box_px} px "
                f"images: {self.n_directions_unit} reference directions in the asymmetric "
                f"unit")
        if self.n_directions != self.n_directions_unit:
            text += (f", about {self.n_directions} in the k regions a particle searches at "
                     "most (the probability mass usually takes fewer)")
        text += (f"; x {self.n_inplane} in-plane angles = {self.comparisons:,} comparisons per "
                 f"particle (each over {self.n_shifts} shifts at once)")
        if self.refine_comparisons:
            text += f", then up to {self.refine_comparisons} refinement candidates"
        return text + "."


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
    from .gallery import global_directions_deg
    from .search_geometry import search_geometry

    if not box_px or int(box_px) < 2:
        raise ValueError(f"box_px must be at least 2, got {box_px!r}")
    if step_deg is not None:
        positive_float(step_deg, "step_deg")
    refine = REFINE if refine is None else bool(refine)
    shift = default_max_shift_px(box_px) if max_shift_px is None else float(max_shift_px)
    geometry = search_geometry(int(box_px), pixel_size_a, max_shift_px=shift,
                               target_resolution_a=target_resolution_a, step_deg=step_deg,
                               refine=refine)
    unit = len(global_directions_deg(symmetry, geometry.step_deg))
    directions = unit
    if top_k and n_regions:
        directions = int(np.ceil(unit * min(top_k, n_regions) / n_regions))
    return SearchCost(geometry.step_deg, geometry.automatic_step, geometry.box_px, unit,
                      directions, len(geometry.psi_deg), len(geometry.offsets), refine)
