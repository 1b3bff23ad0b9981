"""What a model was trained for, and whether it serves another data set (train once, align many).

A model folder records, in ``config.json``, a **format version** (:data:`FORMAT_VERSION`) and a
**fingerprint** (:func:`training_fingerprint`): everything that makes its predictions right for
a data set. A later training call on the same folder compares the fingerprint of its own data
with the recorded one (:func:`fingerprint_differences`): equal, the model is reused without
retraining (or, for regional networks, the missing regions are trained); different, it is
refused with the fields that differ. The fields and their rules:

1. ``map_sha1`` -- the reference map the projections were made of (``projections`` and
   ``both`` sources; None for ``particles``): byte-identical values and shape. A network of
   K classes digests the stack of its K maps (:mod:`.joint`), so other maps, another order
   or another number of maps differ.
2. ``training_particles_sha1`` -- the poses (and the stack's shape) of the aligned training
   particles (``particles`` and ``both``; None for ``projections``, whose particles only lend
   their noise and CTFs).
3. ``box_px`` -- the particles' box, equal.
4. ``particle_pixel_size_a`` -- the same pixel size
   (:func:`~scipion_deepalign.core.defaults.same_pixel_size`, the rule of every face).
5. ``symmetry`` and ``spacing_deg`` (the regions), equal.
6. ``ctf`` -- the CTF range (:func:`ctf_range`): the new data's defocus range inside the
   trained one widened by :data:`DEFOCUS_TOLERANCE_A` on each side; voltage, Cs and
   amplitude contrast equal within 1 %; with CTF on one side only, different.
7. ``training`` -- the training options (:class:`~.config.TrainConfig` fields), equal.
   ``class_output`` is left out for one map (it only shapes a network of several); an option
   that an older folder did not record reads as what that folder was trained with
   (:data:`LEGACY_OPTIONS`: ``class_output`` ``"joint"``, the only output before format 3).
8. ``start_model`` -- only in a fine-tuned folder (:func:`~.train.train_regions`'s
   ``start_from``): the fingerprint of the model whose weights the training started from,
   equal (absent on both sides for a network trained from scratch).

The noise level of the new particles is not compared: the network was trained on the
particles' measured noise, and a noisier data set lowers its hit rate rather than making
its answers wrong; the search's significance fallback covers what it misses.

Light module: numpy only.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from ..defaults import same_pixel_size

__all__ = ["FORMAT_VERSION", "DEFOCUS_TOLERANCE_A", "LEGACY_OPTIONS",
           "training_fingerprint", "fingerprint_differences", "ctf_range", "map_digest",
           "poses_digest"]

#: Version of the model folder's layout and config.json. 1: no fingerprint (folders written
#: before train-once-align-many); 2: ``fingerprint`` recorded; 3: ``class_output`` recorded
#: (the class output of a network of several maps, :mod:`.joint`; absent: ``"joint"``).
FORMAT_VERSION = 3
#: defocus a new data set may reach beyond the trained range, on each side (Angstrom)
DEFOCUS_TOLERANCE_A = 1000.0
_OPTICS_TOLERANCE = 0.01
#: TrainConfig fields that are recorded on their own (``particle_pixel_size_a``) or say how
#: training ran, not what it learnt
_NOT_OPTIONS = ("pixel_size_a",)
#: training options added after folders were written, and the value those folders had
LEGACY_OPTIONS = {"class_output": "joint"}


def map_digest(volume) -> str:
    """SHA-1 of a map's float32 values and shape."""
    values = np.ascontiguousarray(volume, dtype=np.float32)
    digest = hashlib.sha1(str(values.shape).encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def poses_digest(angles_deg, n_images: int, box_px: int) -> str:
    """SHA-1 of training poses (rounded to 0.001 deg) and the stack's shape."""
    digest = hashlib.sha1(np.round(np.asarray(angles_deg, np.float64), 3).tobytes())
    digest.update(str((int(n_images), int(box_px), int(box_px))).encode())
    return digest.hexdigest()


def ctf_range(ctf) -> dict | None:
    """The CTF range of a data set: defocus min/max (over U and V, Angstrom) and the
    min/max of voltage (kV), Cs (mm) and amplitude contrast; None without CTF.

    Parameters
    ----------
    ctf : CTFParams or None
    """
    if ctf is None or not len(ctf):
        return None
    defocus = np.concatenate([ctf.defocus_u_a, ctf.defocus_v_a])
    out = {"defocus_min_a": float(defocus.min()), "defocus_max_a": float(defocus.max())}
    for name in ("voltage_kv", "cs_mm", "amplitude_contrast"):
        values = ctf.per_particle(name)
        out[name] = [float(values.min()), float(values.max())]
    return out


def training_fingerprint(*, config, box_px: int, symmetry: str, spacing_deg: float,
                         reference=None, ctf=None, angles_deg=None, n_images: int = 0) -> dict:
    """The fingerprint of a training call (rules in the module docstring).

    Parameters
    ----------
    config : TrainConfig
    box_px : int
        Particle box.
    symmetry : str
        Normalised point group.
    spacing_deg : float
    reference : ndarray of shape (B, B, B) or (K, B, B, B), optional
        The map (or K maps) the projections are made of (ignored by the ``particles``
        source).
    ctf : CTFParams, optional
        CTFs of the training particles (the projections' CTFs are drawn from them).
    angles_deg : ndarray of shape (N, 3), optional
        Poses of the aligned training particles (ignored by the ``projections`` source).
    n_images : int
        Training particles (with ``angles_deg``).

    Returns
    -------
    dict
        JSON-ready.
    """
    source = config.training_source
    options = {k: v for k, v in config.to_dict().items() if k not in _NOT_OPTIONS}
    several = (source != "particles" and reference is not None
               and np.ndim(reference) == 4 and len(reference) > 1)
    if not several:  # one map: the class output shapes nothing
        options.pop("class_output", None)
    return {
        "map_sha1": (map_digest(reference)
                     if source != "particles" and reference is not None else None),
        "training_particles_sha1": (poses_digest(angles_deg, n_images, box_px)
                                    if source != "projections" and angles_deg is not None
                                    else None),
        "box_px": int(box_px),
        "particle_pixel_size_a": (None if config.pixel_size_a is None
                                  else float(config.pixel_size_a)),
        "symmetry": str(symmetry),
        "spacing_deg": float(spacing_deg),
        "ctf": ctf_range(ctf),
        "training": options,
    }


def _close(a, b, tolerance) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=1e-9)


def _ctf_differences(old, new) -> list:
    if old is None or new is None:
        if old is None and new is None:
            return []
        trained = "without CTF" if old is None else "with CTF"
        given = "without CTF" if new is None else "with CTF"
        return [f"CTF (trained {trained}, these particles {given})"]
    out = []
    low = old["defocus_min_a"] - DEFOCUS_TOLERANCE_A
    high = old["defocus_max_a"] + DEFOCUS_TOLERANCE_A
    if new["defocus_min_a"] < low or new["defocus_max_a"] > high:
        out.append(f"defocus range ({new['defocus_min_a']:.0f}-{new['defocus_max_a']:.0f} A "
                   f"outside the trained {old['defocus_min_a']:.0f}-"
                   f"{old['defocus_max_a']:.0f} A)")
    words = {"voltage_kv": ("voltage", "kV"), "cs_mm": ("Cs", "mm"),
             "amplitude_contrast": ("amplitude contrast", "")}
    for name, (word, unit) in words.items():
        if not all(_close(a, b, _OPTICS_TOLERANCE) for a, b in zip(old[name], new[name])):
            out.append(f"{word} ({_span(new[name])}{unit} against the trained "
                       f"{_span(old[name])}{unit})")
    return out


def _span(pair) -> str:
    low, high = pair
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def fingerprint_differences(old: dict, new: dict) -> list:
    """What differs between a recorded fingerprint and a new one, in words: one entry per
    broken rule of the module docstring (empty when the model serves the new data)."""
    out = []
    if old.get("map_sha1") != new.get("map_sha1"):
        out.append("map (the reference map's values differ)")
    if old.get("training_particles_sha1") != new.get("training_particles_sha1"):
        out.append("training particles (other poses or particles)")
    if old.get("box_px") != new.get("box_px"):
        out.append(f"box ({new.get('box_px')} px against the trained {old.get('box_px')} px)")
    pixel_old, pixel_new = old.get("particle_pixel_size_a"), new.get("particle_pixel_size_a")
    if (pixel_old is None) != (pixel_new is None) or (
            pixel_old is not None and not same_pixel_size(pixel_old, pixel_new)):
        out.append(f"pixel size ({pixel_new} A/px against the trained {pixel_old} A/px)")
    if old.get("symmetry") != new.get("symmetry"):
        out.append(f"symmetry ({new.get('symmetry')} against the trained {old.get('symmetry')})")
    if old.get("spacing_deg") != new.get("spacing_deg"):
        out.append(f"region spacing ({new.get('spacing_deg'):g} deg against the trained "
                   f"{old.get('spacing_deg'):g} deg)")
    out += _ctf_differences(old.get("ctf"), new.get("ctf"))
    options_old, options_new = dict(old.get("training") or {}), new.get("training") or {}
    for name, value in LEGACY_OPTIONS.items():
        if name in options_new and name not in options_old:
            options_old[name] = value
    changed = [f"{k} {options_new.get(k)!r} against {options_old.get(k)!r}"
               for k in sorted(set(options_old) | set(options_new))
               if options_old.get(k) != options_new.get(k)]
    if changed:
        out.append("training options (" + ", ".join(changed) + ")")
    if old.get("start_model") != new.get("start_model"):
        out.append("start model (fine-tuned from " + ("another model" if new.get("start_model")
                                                      else "no model") + " than the trained)")
    return out
