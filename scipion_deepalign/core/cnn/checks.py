"""Cheap checks of a training, and the network input geometry: no Keras.

Every face asks these before any work, so a rule is written once: the command line
(``cli/train.py``, before TensorFlow is imported), the core (:func:`.train.train_regions`)
and the protocols' ``_validate``. Each check raises ``ValueError`` naming the parameter;
``name`` lets a face put its own word for it (``"--spacing"``, ``"Region spacing"``).

Rules:

1. the particles' pixel size is a positive number (the model records it);
2. the region spacing is the regions' rule (:func:`~..regions.check_spacing`, [5, 90] deg);
3. the spacing gives at least 2 regions for the symmetry, and the regions asked for exist;
4. the network input is at least :data:`MIN_INPUT_BOX_PX` and at most the particle box,
   and a target resolution is not finer than Nyquist (:func:`~..projection.nyquist_reaches`);
5. a reference map has the particles' box.

:func:`regions_preview` says, before any work, how many regions a spacing gives and whether
the training particles are few per region (the regions wizard and the Train form's warning).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..particles import positive_float
from ..projection import downsampled_geometry, nyquist_reaches
from ..regions import check_spacing, count_regions
from ..symmetry import normalise_symmetry
from .config import DEFAULT_INPUT_BOX_PX

__all__ = ["MIN_INPUT_BOX_PX", "check_pixel_size", "check_spacing", "check_regions",
           "input_geometry", "check_reference_box", "RegionsPreview", "regions_preview"]

#: smallest network input side
MIN_INPUT_BOX_PX = 8


def check_pixel_size(pixel_size_a, *, name: str = "pixel_size_a") -> float:
    """Rule 1: the particles' pixel size (Å/px), a positive finite number."""
    try:
        value = float(pixel_size_a)
    except (TypeError, ValueError):
        value = np.nan
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be the particles' pixel size in Å/px (a positive "
                         f"number), got {pixel_size_a!r}")
    return value


def check_regions(spacing_deg, symmetry: str, regions=None, *, spacing_name="spacing_deg",
                  regions_name="regions") -> tuple[int, list]:
    """Rules 2 and 3.

    Parameters
    ----------
    spacing_deg : float
    symmetry : str
        Normalised point group.
    regions : sequence of int, optional
        1-based regions asked for (all by default).

    Returns
    -------
    (n_regions, wanted) : (int, list of int)
    """
    spacing = check_spacing(spacing_deg, name=spacing_name)
    n_regions = count_regions(spacing, symmetry)
    if n_regions < 2:
        raise ValueError(f"{spacing_name} {spacing_deg:g} gives {n_regions} region for "
                         f"symmetry {symmetry}; at least 2 are needed to classify: use a "
                         "smaller spacing")
    wanted = list(range(1, n_regions + 1)) if regions is None else [int(r) for r in regions]
    bad = [r for r in wanted if not 1 <= r <= n_regions]
    if bad:
        raise ValueError(f"{regions_name} {bad} out of range: there are {n_regions} regions "
                         "(1-based)")
    return n_regions, wanted


def input_geometry(box_px: int, pixel_size_a: float, *, target_resolution_a=None,
                   target_box_px=None, resolution_name="target_resolution_a",
                   box_name="target_box_px") -> tuple[int, float]:
    """Rule 4: side and pixel size of the network input.

    Parameters
    ----------
    box_px : int
        Side of the particle images.
    pixel_size_a : float
        Their pixel size in Angstrom.
    target_resolution_a : float, optional
        Resolution to keep (downsampling rule of ``projection.downsampled_geometry``).
    target_box_px : int, optional
        Input side given directly (used instead of ``target_resolution_a``); at most
        ``box_px``. Neither given: :data:`~.config.DEFAULT_INPUT_BOX_PX` (or the box when
        smaller).
    resolution_name, box_name : str
        The words for the two options in the messages.

    Returns
    -------
    (input_box_px, input_pixel_size_a) : (int, float)
    """
    box_px = int(box_px)
    pixel_size_a = check_pixel_size(pixel_size_a)
    if target_box_px is not None:
        target_box_px = int(target_box_px)
        if not MIN_INPUT_BOX_PX <= target_box_px <= box_px:
            raise ValueError(f"{box_name} must be between {MIN_INPUT_BOX_PX} and the particle "
                             f"box {box_px}, got {target_box_px}")
        return target_box_px, pixel_size_a * box_px / target_box_px
    if target_resolution_a is None:  # neither given: the measured default input box
        new_box = min(box_px, DEFAULT_INPUT_BOX_PX)
        return new_box, pixel_size_a * box_px / new_box
    try:
        target = float(target_resolution_a)
    except (TypeError, ValueError):
        target = np.nan
    if not target > 0:
        raise ValueError(f"{resolution_name} must be a positive number of Å, "
                         f"got {target_resolution_a!r}")
    if not nyquist_reaches(pixel_size_a, target):
        raise ValueError(f"{resolution_name} {target:g} A cannot be reached with "
                         f"{pixel_size_a:g} A pixels (Nyquist {2 * pixel_size_a:g} A): "
                         f"choose at least {2 * pixel_size_a:g} A")
    new_box, new_pixel = downsampled_geometry(box_px, pixel_size_a, target)
    if new_box < MIN_INPUT_BOX_PX:
        raise ValueError(f"{resolution_name} {target_resolution_a} A leaves a {new_box} px "
                         f"input box; the network needs at least {MIN_INPUT_BOX_PX} px")
    return int(new_box), float(new_pixel)


def check_reference_box(reference_shape, box_px: int, *, name: str = "the reference map"):
    """Rule 5: the reference map is a cube on the particles' box (the one statement of the
    rule: the training, the alignment and the command line's ``--volume`` ask it)."""
    shape = tuple(int(s) for s in reference_shape)
    if len(shape) != 3 or len(set(shape)) != 1:
        raise ValueError(f"{name} must be a cube (B, B, B), got shape {shape}")
    if shape[0] != int(box_px):
        raise ValueError(f"{name}: box {shape[0]} px differs from the particle box "
                         f"{int(box_px)} px: resample one of them first")


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
    spacing_deg = positive_float(spacing_deg, "spacing_deg")
    symmetry = normalise_symmetry(symmetry)
    if n_particles is not None and int(n_particles) < 0:
        raise ValueError(f"n_particles must be >= 0, got {n_particles}")
    return RegionsPreview(spacing_deg, symmetry, int(count_regions(spacing_deg, symmetry)),
                          None if n_particles is None else int(n_particles),
                          None if min_particles_per_region is None
                          else int(min_particles_per_region))
