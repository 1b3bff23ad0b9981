"""The resolution a reference map supports, and the resolutions an alignment runs at.

An alignment goes coarse to fine (as RELION's auto-refine goes from global to local
sampling): the correlation search runs on images and map downsampled to the resolution the
reference supports, then the local refinement of each pose runs on a finer box, with
frequencies up to what the reference and the data support.

:func:`estimate_map_resolution` reads that resolution off the map alone: its radially
averaged power spectrum, shell by shell from the lowest frequency, until the power

1. falls into the noise: within a factor :data:`NOISE_FACTOR` of the floor, the median power
   of the shells beyond Nyquist (the corners of the Fourier cube, where a map holds noise,
   or nothing after a low-pass filter);
2. drops off a low-pass edge: more than :data:`EDGE_DROP` times below the shell before;
3. is numerically nothing: :data:`EMPTY_DROP` times below the strongest shell; or
4. is hardly stronger in the map's particle than in its solvent: the shell's power per voxel
   inside the particle's envelope is within :data:`SOLVENT_FACTOR` of that in the corners
   outside the box's inscribed sphere (:func:`solvent_contrast`), where a particle that fits
   its box has no density and an unfiltered reconstruction has the same noise as inside.
   Such a map's power is flat beyond its resolution (its noise), so rules 1-3 would take it
   at Nyquist.

The last shell before is the estimate (Nyquist when none stops). An unfiltered map computed
from a model, or one whose high frequencies are flat signal, is taken at Nyquist: with
nothing in its corners, one map cannot tell a flat signal from flat noise inside a mask, and
the search errs on the side of detail.

:func:`search_resolution` turns the one option every face shares, ``--target-resolution``
(``"auto"``, ``"full"`` or a number of Angstrom; default :data:`~.defaults.TARGET_RESOLUTION`),
into the two resolutions of an alignment (:class:`SearchResolution`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .defaults import FULL_RESOLUTION, TARGET_RESOLUTION

__all__ = ["estimate_map_resolution", "check_map_values", "solvent_contrast",
           "parse_target_resolution", "SearchResolution", "search_resolution", "training_input",
           "NOISE_FACTOR", "EDGE_DROP", "EMPTY_DROP", "SOLVENT_FACTOR", "REFINE_MARGIN"]

#: a shell whose power is within this factor of the floor is noise (signal ~ noise)
NOISE_FACTOR = 2.0
#: a fall of the power by this factor from one shell to the next is a low-pass edge
#: (amplitude 10x): natural spectra fall by at most ~10x per shell (measured on 8zpm,
#: the 70S ribosome, TRPV1, 3j9g and the phantom at 48-64 px)
EDGE_DROP = 100.0
#: power this far below the strongest shell is numerically nothing (amplitude 1e-5)
EMPTY_DROP = 1e10
#: a shell whose power per voxel inside the particle's envelope is within this factor of that
#: in the solvent corners holds no more signal than noise there: signal-to-noise 1, an FSC of
#: 0.71 against the truth, a half-map FSC of 1/3 (docs/benchmarks_accuracy.md, "A
#: reconstruction as the reference": as accurate as the full-resolution search, 9x faster)
SOLVENT_FACTOR = 2.0
#: shells below this one are never taken for noise by the solvent rule (the masks' own
#: spectra mix the lowest shells)
_SOLVENT_FIRST_SHELL = 2
#: the sphere of :func:`solvent_contrast` ends this far (voxels) inside the box's inscribed
#: sphere, where the corners begin; each falls to 0 over this width (voxels) from there
_SOLVENT_INSET_PX = 2.0
_SOLVENT_EDGE_PX = 3.0
#: the particle's envelope (:func:`_envelope`): the map blurred by a Gaussian of this fraction
#: of the box, kept where at least this fraction of its peak
_ENVELOPE_BLUR = 1.0 / 32.0
_ENVELOPE_LEVEL = 0.1
#: the local refinement runs up to this factor of the frequency the reference supports, at
#: most Nyquist, never coarser than the search (docs/benchmarks_accuracy.md, "Search
#: resolution": on 8zpm and the 70S ribosome it beat refining on the search box, and the full
#: box did no better)
REFINE_MARGIN = 1.25
_MIN_BOX = 8


def shell_power(volume: np.ndarray) -> np.ndarray:
    """Radially averaged power ``|F(k)|**2`` of a cube, per integer shell (shell 0: the mean
    removed). Shells reach the corners of the Fourier cube (``~ sqrt(3) * B / 2``). A float32
    transform, summed plane by plane: memory about that of the map."""
    import scipy.fft

    vol = np.asarray(volume, dtype=np.float32)
    n = vol.shape[0]
    spectrum = scipy.fft.rfftn(vol - np.float32(vol.mean(dtype=np.float64)))
    k = np.fft.fftfreq(n) * n
    plane = k[:, None] ** 2 + (np.fft.rfftfreq(n) * n)[None, :] ** 2  # (ky, kx)
    weight = np.full(plane.shape, 2.0)  # rfft: each column but the first (and last) twice
    weight[:, 0] = 1.0
    if n % 2 == 0:
        weight[:, -1] = 1.0
    weight = weight.ravel()
    size = int(np.ceil(np.sqrt(3.0) * (n // 2 + 1))) + 2
    total, count = np.zeros(size), np.zeros(size)
    for z in range(n):
        shell = np.rint(np.sqrt(k[z] ** 2 + plane)).astype(np.int64).ravel()
        values = spectrum[z].ravel()
        power = values.real.astype(np.float64) ** 2 + values.imag.astype(np.float64) ** 2
        total += np.bincount(shell, power * weight, minlength=size)
        count += np.bincount(shell, weight, minlength=size)
    last = int(np.flatnonzero(count)[-1]) + 1
    return total[:last] / count[:last]


def solvent_contrast(volume) -> np.ndarray:
    """Per shell, the power per voxel of a cube inside its particle's envelope (within the
    box's inscribed sphere) over that in the corners outside the sphere (soft edges): about
    1 where the map holds noise as much in its solvent as in its particle, large where it
    holds a particle's signal and little else; ``inf`` for shells with nothing in the
    corners. The corners' mean is removed first (a flat solvent level is not noise). The
    envelope is drawn from the map blurred (:func:`_envelope`), so the shells below about
    ``1 / (2 pi _ENVELOPE_BLUR)`` (5) carry its selection and read above 1 on noise.

    Parameters
    ----------
    volume : ndarray of shape (B, B, B)

    Returns
    -------
    ndarray
        One ratio per shell of :func:`shell_power`.
    """
    vol = np.asarray(volume, dtype=np.float32)
    n = vol.shape[0]
    axis = np.arange(n, dtype=np.float32) - n // 2
    # the distance past the sphere's edge in edge widths, then each mask from it in place
    past = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    past -= np.float32(n / 2.0 - _SOLVENT_INSET_PX)
    past /= np.float32(_SOLVENT_EDGE_PX)
    corners = np.clip(past, 0.0, 1.0)
    level = np.float32(np.sum(vol * corners, dtype=np.float64) / corners.sum())
    noise = _masked_power(vol, level, corners)
    del corners
    np.negative(past, out=past)
    particle = _masked_power(vol, level, _envelope(vol, level, np.clip(past, 0.0, 1.0, out=past)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = particle / noise
    ratio[noise <= 0] = np.inf
    return ratio


def _envelope(vol, level, sphere) -> np.ndarray:
    """The particle's soft envelope inside ``sphere``: where the map blurred over
    :data:`_ENVELOPE_BLUR` of the box is at least :data:`_ENVELOPE_LEVEL` of its peak, blurred
    as much again (``sphere`` itself where that holds nothing). Its noise per voxel is the
    sphere's, its signal the particle's undiluted by the solvent around it."""
    from scipy.ndimage import gaussian_filter

    sigma = max(1.0, _ENVELOPE_BLUR * vol.shape[0])
    blurred = np.abs(gaussian_filter(vol - level, sigma))
    blurred *= sphere
    top = float(blurred.max())
    if top <= 0:
        return sphere
    envelope = gaussian_filter((blurred >= _ENVELOPE_LEVEL * top).astype(np.float32), sigma)
    envelope *= sphere
    return envelope if envelope.sum() > 0 else sphere


def _masked_power(vol, level, mask) -> np.ndarray:
    """:func:`shell_power` of ``(vol - level) * mask``, per voxel of the mask."""
    masked = vol - level
    masked *= mask
    return shell_power(masked) / np.mean(np.square(mask, dtype=np.float64))


def check_map_values(volume, name: str = "the reference map") -> None:
    """ValueError naming ``name`` when the map holds NaN or infinite values or is constant
    (nothing to train from or align against): the one statement of the rule, asked by the
    resolution estimate, the training, the class maps and the command line (before any
    work)."""
    vol = np.asarray(volume)
    if not np.all(np.isfinite(vol)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.ptp(vol) == 0:
        raise ValueError(f"{name} is constant: it holds no structure to align against")


def estimate_map_resolution(volume, pixel_size_a: float, *, name: str = "the map") -> float:
    """The resolution ``volume`` supports, in Angstrom (rules in the module docstring).

    Parameters
    ----------
    volume : ndarray of shape (B, B, B)
        A reference map, ``B >= 8``.
    pixel_size_a : float
        Its pixel size.
    name : str
        The map in the user's words, for the messages.

    Returns
    -------
    float
        ``B * pixel_size_a / k`` of the last signal shell ``k``: between Nyquist
        (``2 * pixel_size_a``) and the box (``B * pixel_size_a``).

    Raises
    ------
    ValueError
        Naming ``name``: not a cube of at least 8 voxels, a pixel size that is not positive,
        values that are not finite, a constant map, or no shell above the noise floor.
    """
    vol = np.asarray(volume)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"{name} must be a cube (B, B, B), got shape {vol.shape}")
    if vol.shape[0] < _MIN_BOX:
        raise ValueError(f"{name} is {vol.shape[0]} voxels wide; at least {_MIN_BOX} are "
                         "needed to estimate its resolution")
    try:
        good = np.isfinite(pixel_size_a) and pixel_size_a > 0
    except TypeError:
        good = False
    if not good:
        raise ValueError(f"the pixel size of {name} must be > 0, got {pixel_size_a!r}")
    check_map_values(vol, name)
    n = vol.shape[0]
    nyquist = n // 2
    with np.errstate(divide="ignore"):
        level = np.log10(shell_power(vol))
    floor = np.median(level[nyquist + 1:])
    top = np.max(level[1:])
    contrast = solvent_contrast(vol)
    last = 0
    for k in range(1, nyquist + 1):
        if (level[k] <= floor + np.log10(NOISE_FACTOR) or level[k] < top - np.log10(EMPTY_DROP)
                or (k > 1 and level[k] < level[k - 1] - np.log10(EDGE_DROP))
                or (k >= _SOLVENT_FIRST_SHELL and contrast[k] < SOLVENT_FACTOR)):
            break
        last = k
    if last == 0:
        raise ValueError(f"{name} has no frequency above its noise floor (its lowest "
                         "frequencies are as weak as its corners): is it a map of noise?")
    return float(n * pixel_size_a / last)


def parse_target_resolution(value, *, name: str = "--target-resolution"):
    """``"auto"``, ``"full"`` or a positive float from what a user typed (or the core's
    ``None``, taken as ``"full"``); ``0`` is ``"full"`` too. ValueError naming ``name``."""
    if value is None:
        return FULL_RESOLUTION
    if isinstance(value, SearchResolution):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in (TARGET_RESOLUTION, FULL_RESOLUTION):
            return word
        try:
            value = float(word)
        except ValueError:
            raise ValueError(f"{name} must be auto, full or a resolution in Angstrom, got "
                             f"{value!r}") from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be auto, full or a resolution in Angstrom, got "
                         f"{value!r}") from None
    if number == 0:
        return FULL_RESOLUTION
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be auto, full (or 0) or a positive resolution in "
                         f"Angstrom, got {value!r}")
    return number


@dataclass(frozen=True)
class SearchResolution:
    """The resolutions an alignment runs at (Angstrom; ``None``: the full box).

    Attributes
    ----------
    search_a : float or None
        The gallery search.
    refine_a : float or None
        The local refinement: never coarser than ``search_a``.
    source : {"estimated", "given", "full"}
        Where ``search_a`` comes from: the map (``"auto"``), the user, or the full box.
    estimate_a : float or None
        :func:`estimate_map_resolution` of the reference (None when not needed).
    """

    search_a: float | None
    refine_a: float | None
    source: str
    estimate_a: float | None = None

    def describe(self) -> str:
        """One line for a summary: the two resolutions and why."""
        def words(value):
            return "full resolution" if value is None else f"{value:.3g} A"

        why = {"estimated": "estimated from the reference map", "given": "given",
               "full": "full resolution asked for"}[self.source]
        if self.source == "estimated" and self.estimate_a is not None:
            why += f": {self.estimate_a:.3g} A"  # at Nyquist or coarser
        return f"search at {words(self.search_a)} ({why}), refinement at {words(self.refine_a)}"


def search_resolution(value, *, volume, pixel_size_a: float,
                      name: str = "--target-resolution") -> SearchResolution:
    """The resolutions of an alignment for ``--target-resolution value``.

    ``"auto"``: the search at :func:`estimate_map_resolution` of ``volume``, never finer
    than the data's Nyquist; a number: there (it must reach Nyquist); ``"full"``/``0``/None:
    the full box. The refinement runs up to :data:`REFINE_MARGIN` times the frequency of
    what the reference supports, at most Nyquist, never coarser than the search.

    Raises
    ------
    ValueError
        Naming ``name`` for a value that is none of those or finer than Nyquist.
    """
    if isinstance(value, SearchResolution):
        return value
    from .projection import nyquist_reaches

    target = parse_target_resolution(value, name=name)
    nyquist = 2.0 * float(pixel_size_a)
    if target == FULL_RESOLUTION:
        return SearchResolution(None, None, "full")
    if target != TARGET_RESOLUTION and not nyquist_reaches(pixel_size_a, target):
        raise ValueError(f"{name} {target:g} A is finer than the data allow: the Nyquist of "
                         f"{pixel_size_a:g} A pixels is {nyquist:g} A")
    estimate = estimate_map_resolution(volume, pixel_size_a, name="the reference map")
    search = estimate if target == TARGET_RESOLUTION else float(target)
    refine = min(search, estimate / REFINE_MARGIN)
    return SearchResolution(_or_full(search, nyquist), _or_full(refine, nyquist),
                            "estimated" if target == TARGET_RESOLUTION else "given", estimate)


def training_input(value, box_px: int, *, name: str = "--target-resolution"):
    """``(target_resolution_a, target_box_px)`` of a
    :class:`~scipion_deepalign.core.cnn.config.TrainConfig` for ``--target-resolution value``:
    ``"auto"``, the network's measured default input box (both None); ``"full"``, the particle
    box; a number, that resolution. ValueError naming ``name`` for any other value."""
    target = parse_target_resolution(value, name=name)
    if target == TARGET_RESOLUTION:
        return None, None
    if target == FULL_RESOLUTION:
        return None, int(box_px)
    return float(target), None


def _or_full(resolution_a: float, nyquist_a: float) -> float | None:
    """``None`` (the full box) at or below Nyquist, else the resolution."""
    return None if resolution_a <= nyquist_a * (1 + 1e-9) else float(resolution_a)
