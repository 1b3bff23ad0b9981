"""Plain containers for particle metadata shared by every core module.

Poses follow :mod:`scipion_deepalign.core.geometry` (degrees, ZYZ, RELION shifts in pixels).
Images are never stored here; they travel as ``ndarray of shape (N, Y, X)`` beside these.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["positive_float", "shift_angstrom_to_px", "shift_px_to_angstrom",
           "CTFParams", "Particles", "split_image_name", "join_image_name", "stack_image_names",
           "OPTICS_FIELDS", "DEFAULT_VOLTAGE_KV", "DEFAULT_CS_MM", "DEFAULT_AMPLITUDE_CONTRAST"]

#: The CTF values that RELION keeps per optics group (a float, or one value per particle).
OPTICS_FIELDS = ("voltage_kv", "cs_mm", "amplitude_contrast")

#: Microscope values assumed when a file or a Scipion acquisition does not give them (the
#: defaults of :class:`CTFParams`, RELION's and pwem's too): 300 kV, Cs 2.7 mm, 10 %
#: amplitude contrast. The one place they are written.
DEFAULT_VOLTAGE_KV = 300.0
DEFAULT_CS_MM = 2.7
DEFAULT_AMPLITUDE_CONTRAST = 0.1


def _name_parts(name) -> tuple[str | None, str]:
    """``"12@a@b.mrcs"`` -> ``("12", "a@b.mrcs")``: the index is before the *first* ``@``."""
    index, sep, stack = str(name).partition("@")
    return (index, stack) if sep else (None, index)


def split_image_name(name: str) -> tuple[int, str]:
    """``"12@stack.mrcs"`` -> ``(12, "stack.mrcs")`` (1-based); a bare path means image 1.

    The one parser of RELION image names in the package; the stack path may hold ``@``.
    """
    index, stack = _name_parts(name)
    if index is None:
        return 1, stack
    try:
        return int(index), stack
    except ValueError:
        raise ValueError(f"image name {name!r}: the part before '@' must be an "
                         "integer (1-based index)") from None


def join_image_name(name: str, stack: str) -> str:
    """``name`` pointing into ``stack`` instead (its index text is kept as written)."""
    index, _ = _name_parts(name)
    return stack if index is None else f"{index}@{stack}"


def stack_image_names(n: int, stack: str) -> list[str]:
    """RELION names of the ``n`` images of ``stack`` in order: ``000001@stack``, ...

    The one writer of image names (1-based, six digits as RELION writes them).
    """
    return [f"{i:06d}@{stack}" for i in range(1, int(n) + 1)]


@dataclass
class CTFParams:
    """Per-particle CTF parameters (RELION names in comments).

    Attributes
    ----------
    defocus_u_a, defocus_v_a : ndarray of shape (N,)
        Defocus in Angstrom, positive underfocus (rlnDefocusU/V).
    defocus_angle_deg : ndarray of shape (N,)
        Astigmatism angle in degrees (rlnDefocusAngle).
    voltage_kv : float or ndarray of shape (N,)
        Acceleration voltage in kV (rlnVoltage).
    cs_mm : float or ndarray of shape (N,)
        Spherical aberration in mm (rlnSphericalAberration).
    amplitude_contrast : float or ndarray of shape (N,)
        Fraction of amplitude contrast (rlnAmplitudeContrast).
    phase_shift_deg : ndarray of shape (N,) or None
        Phase-plate shift in degrees (rlnPhaseShift).

    The three optics values are one float shared by every particle, or one value per
    particle (particles of several optics groups); :meth:`per_particle` gives either as an
    array of N. A scalar stays a float, so one-group data reads as before.
    """

    defocus_u_a: np.ndarray
    defocus_v_a: np.ndarray
    defocus_angle_deg: np.ndarray
    voltage_kv: float = DEFAULT_VOLTAGE_KV
    cs_mm: float = DEFAULT_CS_MM
    amplitude_contrast: float = DEFAULT_AMPLITUDE_CONTRAST
    phase_shift_deg: np.ndarray | None = None

    def __post_init__(self):
        self.defocus_u_a = np.atleast_1d(np.asarray(self.defocus_u_a, dtype=np.float64))
        self.defocus_v_a = np.atleast_1d(np.asarray(self.defocus_v_a, dtype=np.float64))
        self.defocus_angle_deg = np.atleast_1d(
            np.asarray(self.defocus_angle_deg, dtype=np.float64))
        if self.phase_shift_deg is not None:
            self.phase_shift_deg = np.atleast_1d(
                np.asarray(self.phase_shift_deg, dtype=np.float64))
        n = len(self.defocus_u_a)
        for name in OPTICS_FIELDS:
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim == 0:
                setattr(self, name, float(value))
            elif value.shape != (n,):
                raise ValueError(f"CTFParams.{name} must be a number or an array of shape "
                                 f"({n},) (one per particle), got shape {value.shape}")
            else:
                setattr(self, name, value)

    def per_particle(self, name: str) -> np.ndarray:
        """``voltage_kv``, ``cs_mm`` or ``amplitude_contrast`` as an array of shape (N,)."""
        if name not in OPTICS_FIELDS:
            raise ValueError(f"name must be one of {', '.join(OPTICS_FIELDS)}, got {name!r}")
        return np.broadcast_to(np.asarray(getattr(self, name), np.float64), (len(self),))

    def __len__(self) -> int:
        return len(self.defocus_u_a)

    def subset(self, index) -> CTFParams:
        """Parameters of the particles selected by ``index`` (slice, int array or mask)."""
        return replace(
            self,
            defocus_u_a=self.defocus_u_a[index],
            defocus_v_a=self.defocus_v_a[index],
            defocus_angle_deg=self.defocus_angle_deg[index],
            phase_shift_deg=None if self.phase_shift_deg is None else self.phase_shift_deg[index],
            **{name: getattr(self, name) if np.ndim(getattr(self, name)) == 0
               else getattr(self, name)[index] for name in OPTICS_FIELDS},
        )


@dataclass
class Particles:
    """Metadata of N particles: where the images are, their poses, CTF and extra columns.

    Attributes
    ----------
    image_names : list of str, length N
        RELION-style ``"index@stack.mrcs"`` with a 1-based index; stack paths are relative
        to ``root`` unless absolute.
    pixel_size_a : float
        Pixel size of the images in Angstrom.
    box_px : int
        Image side in pixels.
    angles_deg : ndarray of shape (N, 3) or None
        ``(rot, tilt, psi)``, see :mod:`scipion_deepalign.core.geometry`.
    shifts_px : ndarray of shape (N, 2) or None
        ``(shift_x, shift_y)`` in pixels, RELION origin convention.
    ctf : CTFParams or None
    extra : dict of str to ndarray of shape (N,)
        Any other per-particle column (e.g. ``deepalignRegion1``), kept through IO.
    root : str
        Folder that relative stack paths are resolved against.
    optics : dict of str to ndarray of shape (G,), or None
        RELION optics table (``data_optics``), one row per group, every column as read
        (``rlnOpticsGroup``, ``rlnImagePixelSize``, ``rlnVoltage``, beam tilt, ...); written
        back by :func:`scipion_deepalign.core.io.write_particles_star`. None: one group made
        from ``pixel_size_a``, ``box_px`` and ``ctf``.
    optics_group : ndarray of shape (N,), int, or None
        Each particle's ``rlnOpticsGroup`` (a value of ``optics["rlnOpticsGroup"]``).
    """

    image_names: list
    pixel_size_a: float
    box_px: int
    angles_deg: np.ndarray | None = None
    shifts_px: np.ndarray | None = None
    ctf: CTFParams | None = None
    extra: dict = field(default_factory=dict)
    root: str = "."
    optics: dict | None = None
    optics_group: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_names)

    @property
    def has_poses(self) -> bool:
        return self.angles_deg is not None

    def subset(self, index) -> Particles:
        """Particles selected by ``index`` (slice, int array or boolean mask)."""
        idx = np.arange(len(self))[index]
        return replace(
            self,
            image_names=[self.image_names[i] for i in np.atleast_1d(idx)],
            angles_deg=None if self.angles_deg is None else self.angles_deg[idx],
            shifts_px=None if self.shifts_px is None else self.shifts_px[idx],
            ctf=None if self.ctf is None else self.ctf.subset(idx),
            extra={k: np.asarray(v)[idx] for k, v in self.extra.items()},
            optics_group=None if self.optics_group is None else self.optics_group[idx],
        )


def positive_float(value, name: str) -> float:
    """``value`` as a float, or a ``ValueError`` naming ``name`` when it is not > 0."""
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
    pixel_size_a = positive_float(pixel_size_a, "pixel_size_a")
    if float(shift_a) < 0:
        raise ValueError(f"shift_a must be >= 0, got {shift_a}")
    return float(shift_a) / pixel_size_a


def shift_px_to_angstrom(shift_px: float, pixel_size_a: float) -> float:
    """Shift in Angstrom of a shift in pixels (``shift_px * pixel_size_a``)."""
    pixel_size_a = positive_float(pixel_size_a, "pixel_size_a")
    if float(shift_px) < 0:
        raise ValueError(f"shift_px must be >= 0, got {shift_px}")
    return float(shift_px) * pixel_size_a
