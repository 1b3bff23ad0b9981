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
        return (f"Images of {self.box_px} px at {self.pixel_size_a:.3g} A/px are used as "
                f"{self.new_box_px} px at {self.new_pixel_size_a:.3g} A/px "
                f"(factor {self.factor:.2f}, Nyquist {self.nyquist_a:.3g} A).")


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

    @property
    def particles_per_region(self) -> float | None:
        """Mean training particles per region (None when ``n_particles`` is unknown)."""
        if self.n_particles is None:
            return None
        return self.n_particles / self.n_regions

    def message(self) -> str:
        text = (f"A spacing of {self.spacing_deg:g} deg with symmetry {self.symmetry} gives "
                f"{self.n_regions} region(s), one network each.")
        if self.n_particles is not None:
            text += (f" With {self.n_particles} training particles that is about "
                     f"{self.particles_per_region:.0f} per region.")
        return text


def regions_preview(spacing_deg: float, symmetry: str = "c1", *,
                    n_particles: int | None = None) -> RegionsPreview:
    """Number of regions for a spacing and symmetry (:func:`core.regions.count_regions`).

    Parameters
    ----------
    spacing_deg : float
        Angular distance between region centres, in degrees (> 0).
    symmetry : str
        Point group (``c1``, ``c4``, ``d2``, ``i``...).
    n_particles : int, optional
        Number of training particles, to report how many fall in each region on average.

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
                          None if n_particles is None else int(n_particles))
