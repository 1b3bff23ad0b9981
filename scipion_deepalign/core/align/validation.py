"""Input checks of :func:`scipion_deepalign.core.align.align.align_particles`, run before any work.

Every rule raises a ``ValueError`` that names the parameter and says exactly what differs:

* ``images`` is a non-empty ``(N, B, B)`` stack (its shape is checked here; that its values
  are finite is checked as each block is read, so that a memory map is not read twice);
* ``volume`` is ``(B, B, B)`` with the same ``B`` as the images
  (:func:`~..cnn.checks.check_reference_box`);
* ``pixel_size_a`` is positive and, when ``volume_pixel_size_a`` is given, equal to it
  (:func:`~scipion_deepalign.core.defaults.check_pixel_sizes`);
* ``max_shift_px`` is in ``[0, B / 2]``;
* ``symmetry`` is a known point group (:func:`symmetry.normalise_symmetry`);
* ``region_hints`` is ``(N, k)`` integers in ``[0, R)`` and comes with ``centres_deg (R, 2)``;
* ``ctf`` has one entry per particle; ``ctf_mode`` is one of ``defaults.CTF_MODES``;
* steps, ``target_resolution_a``, ``batch_size``, ``block_size``, ``n_best`` and
  ``mask_radius_px`` are positive;
  ``target_resolution_a`` is not finer than Nyquist (``2 * pixel_size_a``, the rule of
  :func:`~.projection.nyquist_reaches`);
* ``device`` is one of ``defaults.DEVICES``.
"""
from __future__ import annotations

import numpy as np

from ..cnn.checks import check_reference_box
from ..defaults import CTF_MODES, DEVICES, MAX_STEP_DEG, check_pixel_sizes
from ..projection import nyquist_reaches

__all__ = ["validate_inputs"]


def _positive(name, value, *, allow_none=True):
    if value is None and allow_none:
        return
    try:
        ok = float(value) > 0 and np.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def validate_inputs(images_shape, volume, *, pixel_size_a, max_shift_px, ctf, symmetry,
                    region_hints, centres_deg, step_deg, psi_step_deg, target_resolution_a,
                    device, batch_size, n_best, ctf_mode, volume_pixel_size_a, mask_radius_px,
                    block_size=1):
    """Check the arguments of ``align_particles`` (rules in the module docstring).

    ``images_shape`` is the shape of the particle stack.

    Returns
    -------
    symmetry : str
        Normalised name.
    region_hints : int ndarray of shape (N, k) or None
    centres_deg : float ndarray of shape (R, 2) or None
    """
    shape = tuple(images_shape)
    if len(shape) != 3 or shape[1] != shape[2] or shape[0] == 0:
        raise ValueError(f"images must be a non-empty stack of square images (N, B, B), "
                         f"got shape {shape}")
    n, box = shape[0], shape[-1]
    check_reference_box(volume.shape, box, name="volume")
    _positive("pixel_size_a", pixel_size_a, allow_none=False)
    if volume_pixel_size_a is not None:
        _positive("volume_pixel_size_a", volume_pixel_size_a)
        check_pixel_sizes([volume_pixel_size_a], ["volume"], pixel_size_a)
    if max_shift_px is None or not 0 <= float(max_shift_px) <= box / 2:
        raise ValueError(f"max_shift_px must be in [0, {box / 2}] (half the {box}-px box), "
                         f"got {max_shift_px!r}")
    for name, value in (("step_deg", step_deg), ("psi_step_deg", psi_step_deg),
                        ("mask_radius_px", mask_radius_px)):
        _positive(name, value)
    if step_deg is not None and not float(step_deg) <= MAX_STEP_DEG:
        raise ValueError(f"step_deg must be at most {MAX_STEP_DEG:g} degrees, got {step_deg}")
    from ..resolution import parse_target_resolution
    target = parse_target_resolution(target_resolution_a, name="target_resolution_a")
    if isinstance(target, float) and not nyquist_reaches(pixel_size_a, target):
        raise ValueError(f"target_resolution_a {target_resolution_a} A is finer than Nyquist "
                         f"({2 * pixel_size_a} A at pixel size {pixel_size_a} A)")
    _positive("batch_size", batch_size, allow_none=False)
    _positive("block_size", block_size, allow_none=False)
    if int(n_best) != n_best or n_best < 1:
        raise ValueError(f"n_best must be a positive integer, got {n_best!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if ctf_mode not in CTF_MODES:
        raise ValueError(f"ctf_mode must be one of {CTF_MODES}, got {ctf_mode!r}")
    if ctf is not None and len(ctf) != n:
        raise ValueError(f"ctf has {len(ctf)} entries but there are {n} images")
    from ..symmetry import normalise_symmetry
    symmetry = normalise_symmetry(symmetry)

    if centres_deg is not None:
        centres_deg = np.asarray(centres_deg, dtype=np.float64)
        if centres_deg.ndim != 2 or centres_deg.shape[1] != 2 or len(centres_deg) == 0:
            raise ValueError(f"centres_deg must have shape (R, 2), got {centres_deg.shape}")
    if region_hints is not None:
        hints = np.asarray(region_hints)
        if hints.ndim == 1:
            hints = hints[:, None]
        if hints.ndim != 2 or hints.shape[0] != n:
            raise ValueError(f"region_hints must have shape (N, k) with N = {n} images, "
                             f"got {np.shape(region_hints)}")
        if not np.issubdtype(hints.dtype, np.integer):
            if not np.all(np.equal(np.mod(hints, 1), 0)):
                raise ValueError("region_hints must be integer region indices")
            hints = hints.astype(np.int64)
        if centres_deg is None:
            raise ValueError("region_hints needs centres_deg (the region centres they index)")
        n_regions = len(centres_deg)
        if hints.min() < 0 or hints.max() >= n_regions:
            raise ValueError(f"region_hints must be in [0, {n_regions}) for {n_regions} regions, "
                             f"got values from {hints.min()} to {hints.max()}")
        region_hints = hints.astype(np.int64)
    return symmetry, region_hints, centres_deg
