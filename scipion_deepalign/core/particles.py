"""Plain containers for particle metadata shared by every core module.

Poses follow :mod:`scipion_deepalign.core.geometry` (degrees, ZYZ, RELION shifts in pixels).
Images are never stored here; they travel as ``ndarray of shape (N, Y, X)`` beside these.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["CTFParams", "Particles"]


@dataclass
class CTFParams:
    """Per-particle CTF parameters (RELION names in comments).

    Attributes
    ----------
    defocus_u_a, defocus_v_a : ndarray of shape (N,)
        Defocus in Angstrom, positive underfocus (rlnDefocusU/V).
    defocus_angle_deg : ndarray of shape (N,)
        Astigmatism angle in degrees (rlnDefocusAngle).
    voltage_kv : float
        Acceleration voltage in kV (rlnVoltage).
    cs_mm : float
        Spherical aberration in mm (rlnSphericalAberration).
    amplitude_contrast : float
        Fraction of amplitude contrast (rlnAmplitudeContrast).
    phase_shift_deg : ndarray of shape (N,) or None
        Phase-plate shift in degrees (rlnPhaseShift).
    """

    defocus_u_a: np.ndarray
    defocus_v_a: np.ndarray
    defocus_angle_deg: np.ndarray
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    phase_shift_deg: np.ndarray | None = None

    def __post_init__(self):
        self.defocus_u_a = np.atleast_1d(np.asarray(self.defocus_u_a, dtype=np.float64))
        self.defocus_v_a = np.atleast_1d(np.asarray(self.defocus_v_a, dtype=np.float64))
        self.defocus_angle_deg = np.atleast_1d(
            np.asarray(self.defocus_angle_deg, dtype=np.float64))
        if self.phase_shift_deg is not None:
            self.phase_shift_deg = np.atleast_1d(
                np.asarray(self.phase_shift_deg, dtype=np.float64))

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
    """

    image_names: list
    pixel_size_a: float
    box_px: int
    angles_deg: np.ndarray | None = None
    shifts_px: np.ndarray | None = None
    ctf: CTFParams | None = None
    extra: dict = field(default_factory=dict)
    root: str = "."

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
        )
