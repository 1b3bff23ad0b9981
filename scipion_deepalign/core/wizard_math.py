"""Small computations shown by the GUI wizards (pure; no Scipion import).

Each function validates its inputs and returns plain numbers plus, where useful, a one-line
human explanation; the wizards in :mod:`scipion_deepalign.wizards` only display them.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "shift_angstrom_to_px",
    "shift_px_to_angstrom",
    "DownsamplingPreview",
    "downsampling_preview",
    "RegionsPreview",
    "regions_preview",
    "resolution_for_box",
    "SearchCost",
    "search_cost",
]


def _positive(value, name) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def shift_angstrom_to_px(shift_a: float, pixel_size_a: float) -> float:
    """Shift in pixels of a shift in Angstrom (``shift_a / pixel_size_a``).

    Raises
    ------
    ValueError
        If ``pixel_size_a`` is not positive or ``shift_a`` is negative.
    """
    pixel_size_a = _positive(pixel_size_a, "pixel_size_a")
    if float(shift_a) < 0:
        raise ValueError(f"shift_a must be >= 0, got {shift_a}")
    return float(shift_a) / pixel_size_a


def shift_px_to_angstrom(shift_px: float, pixel_size_a: float) -> float:
    """Shift in Angstrom of a shift in pixels (``shift_px * pixel_size_a``)."""
    pixel_size_a = _positive(pixel_size_a, "pixel_size_a")
    if float(shift_px) < 0:
        raise ValueError(f"shift_px must be >= 0, got {shift_px}")
    return float(shift_px) * pixel_size_a


@dataclass(frozen=True)
class DownsamplingPreview:
    """Image geometry used for training/alignment at a target resolution.

    Attributes
    ----------
    box_px, pixel_size_a : int, float
        Original geometry.
    new_box_px, new_pixel_size_a : int, float
        Geometry after Fourier cropping (from
        :func:`scipion_deepalign.core.projection.downsampled_geometry`).
    nyquist_a : float
        ``2 * new_pixel_size_a``: the best resolution the downsampled images can carry.
    """

    box_px: int
    pixel_size_a: float
    new_box_px: int
    new_pixel_size_a: float
    nyquist_a: float

    @property
    def factor(self) -> float:
        """Downsampling factor ``new_pixel_size_a / pixel_size_a`` (1 means no change)."""
        return self.new_pixel_size_a / self.pixel_size_a

    def message(self) -> str:
        return (f"Images of {self.box_px} px at {self.pixel_size_a:.3g} Å/px are used as "
                f"{self.new_box_px} px at {self.new_pixel_size_a:.3g} Å/px "
                f"(factor {self.factor:.2f}, Nyquist {self.nyquist_a:.3g} Å).")


def downsampling_preview(box_px: int, pixel_size_a: float,
                         target_resolution_a: float) -> DownsamplingPreview:
    """Downsampled box and pixel size for a target resolution (see the projection module).

    Parameters
    ----------
    box_px : int
        Original box side in pixels (> 0).
    pixel_size_a : float
        Original pixel size in Angstrom (> 0).
    target_resolution_a : float
        Resolution to keep, in Angstrom (> 0).

    Raises
    ------
    ValueError
        From :func:`~.projection.downsampled_geometry`, naming the parameter: a box below 2
        px, a pixel size or resolution that is not positive, a target finer than Nyquist.
    """
    from .projection import downsampled_geometry

    new_box, new_pixel = downsampled_geometry(box_px, pixel_size_a, target_resolution_a)
    return DownsamplingPreview(int(box_px), float(pixel_size_a), int(new_box), float(new_pixel),
                               2.0 * float(new_pixel))


@dataclass(frozen=True)
class RegionsPreview:
    """How many regions (one CNN each) a region spacing gives.

    Attributes
    ----------
    spacing_deg : float
    symmetry : str
    n_regions : int
    n_particles : int or None
        Training particles, when known.
    """

    spacing_deg: float
    symmetry: str
    n_regions: int
    n_particles: int | None = None
    min_particles_per_region: int | None = None

    @property
    def particles_per_region(self) -> float | None:
        """Mean training particles per region (None when ``n_particles`` is unknown)."""
        if self.n_particles is None:
            return None
        return self.n_particles / self.n_regions

    @property
    def too_few_particles(self) -> bool:
        """Whether the mean count per region is below the minimum (False when unknown)."""
        per_region = self.particles_per_region
        return (per_region is not None and self.min_particles_per_region is not None
                and per_region < self.min_particles_per_region)

    def message(self) -> str:
        text = (f"A spacing of {self.spacing_deg:g} deg with symmetry {self.symmetry} gives "
                f"{self.n_regions} region(s): the shared network has one output per region, "
                f"the regional networks are one network each.")
        if self.n_particles is not None:
            text += (f" With {self.n_particles} training particles that is about "
                     f"{self.particles_per_region:.0f} per region.")
        if self.too_few_particles:
            text += (f" WARNING: fewer than the minimum of {self.min_particles_per_region} per "
                     "region (regional networks skip such regions; the shared network sees "
                     "few examples of them). Use more particles or a larger spacing; training "
                     "from projections of the reference map avoids the limit.")
        return text


def regions_preview(spacing_deg: float, symmetry: str = "c1", *,
                    n_particles: int | None = None,
                    min_particles_per_region: int | None = None) -> RegionsPreview:
    """Number of regions for a spacing and symmetry (:func:`core.regions.count_regions`).

    Parameters
    ----------
    spacing_deg : float
        Angular distance between region centres, in degrees (> 0).
    symmetry : str
        Point group (``c1``, ``c4``, ``d2``, ``i``...).
    n_particles : int, optional
        Number of training particles, to report how many fall in each region on average.
    min_particles_per_region : int, optional
        Minimum of the training; the message warns when the mean count is below it.

    Raises
    ------
    ValueError
        If ``spacing_deg`` is not positive, ``n_particles`` is negative or the symmetry is
        unknown.
    """
    from .regions import count_regions
    from .symmetry import normalise_symmetry

    spacing_deg = _positive(spacing_deg, "spacing_deg")
    symmetry = normalise_symmetry(symmetry)
    if n_particles is not None and int(n_particles) < 0:
        raise ValueError(f"n_particles must be >= 0, got {n_particles}")
    return RegionsPreview(spacing_deg, symmetry, int(count_regions(spacing_deg, symmetry)),
                          None if n_particles is None else int(n_particles),
                          None if min_particles_per_region is None
                          else int(min_particles_per_region))


def resolution_for_box(box_px: int, pixel_size_a: float, new_box_px: int) -> float:
    """Target resolution (Angstrom) whose downsampled box is ``new_box_px``.

    The inverse of :func:`~.projection.downsampled_geometry`: the Nyquist of ``new_box_px``
    pixels over the same field of view, ``2 * pixel_size_a * box_px / new_box_px``, rounded
    up to 0.01 A so that the form shows a short number that still gives ``new_box_px``.

    Raises
    ------
    ValueError
        If ``new_box_px`` is odd, below 2 or larger than ``box_px``.
    """
    import math

    from .projection import downsampled_geometry

    pixel_size_a = _positive(pixel_size_a, "pixel_size_a")
    if int(new_box_px) != new_box_px or new_box_px % 2 or not 2 <= new_box_px <= box_px:
        raise ValueError(f"new_box_px must be an even number of pixels between 2 and the box "
                         f"({box_px} px), got {new_box_px}")
    resolution = math.ceil(200.0 * pixel_size_a * box_px / new_box_px - 1e-9) / 100.0
    if downsampled_geometry(box_px, pixel_size_a, resolution)[0] != new_box_px:
        resolution = 2.0 * pixel_size_a * box_px / new_box_px  # rounding crossed a box
    return resolution


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
        alignment's default (:data:`.local_refinement.REFINE`).

    Raises
    ------
    ValueError
        For a box below 2 px, a step that is not positive, or the errors of
        ``downsampled_geometry``.
    """
    import numpy as np

    from .defaults import default_max_shift_px
    from .gallery import default_step_deg, psi_grid_deg
    from .local_refinement import REFINE
    from .projection import downsampled_geometry
    from .regions import region_direction_grids

    if not box_px or int(box_px) < 2:
        raise ValueError(f"box_px must be at least 2, got {box_px!r}")
    small = int(box_px)
    if target_resolution_a is not None:
        small = int(downsampled_geometry(box_px, pixel_size_a, target_resolution_a)[0])
    scale = box_px / small
    automatic = step_deg is None
    refine = REFINE if refine is None else bool(refine)
    step = default_step_deg(_RADIUS_BOX_FRACTION * box_px / scale, refine=refine) if automatic \
        else _positive(step_deg, "step_deg")
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
