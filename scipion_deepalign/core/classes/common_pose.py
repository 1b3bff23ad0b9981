"""The class decided at one pose: every class's map compared with the particle at the same pose.

Each class's search (:func:`~.assign.align_classes`, :func:`~.regional.align_class_pairs`)
finds its own best pose, and the best score over many poses carries a share of noise fitted
by the search: that share, not the maps, decides a particle whose classes differ little. So,
after the searches, :func:`decide_at_common_pose` projects every class's map at *one* pose, the
pose of the best search score, with the particle's CTF and shift, and compares each with the
particle by the normalised correlation ``cc_k`` inside the particle's disc (as the benchmark's
oracle does at the true pose, ``benchmarks/classes_oracle.py``). What then differs between
the classes is the maps alone.

The class probability follows from the same numbers: for white noise, the least-squares fit of
``a_k y_k`` (the model image, any scale ``a_k``) to the particle ``x`` (zero mean in the disc
of ``n`` pixels) leaves ``|x|^2 (1 - cc_k^2)``, so with the noise variance estimated from the
best fit, ``sigma^2 = |x|^2 (1 - max cc^2) / n``, the log-likelihood of class ``k`` is
``n cc_k^2 / (2 (1 - max cc^2))`` up to a constant; the probabilities are its softmax over the
classes (equal priors: the classes are told apart on the data alone). Measured on the
benchmark's 80/20 mixture: particles given 0.9-0.99 were right for 0.935, 0.99 and above for
0.998 (docs/benchmarks_classes.md, "One pose for every class"). That holds for maps the
user gives; class maps reconstructed from the particles themselves (``deepalign classify``)
hold each particle's own noise, which the likelihood counts as evidence: there the
probability is over-confident (mean 0.99 against 0.90-0.97 classed right, measured).
"""
from __future__ import annotations

import numpy as np

from ..ctf import apply_ctf, ctf_images
from ..defaults import mask_radius_or_default_px
from ..imageops import circular_mask
from ..projection import VolumeSpectrum
from ..simulate import model_images

__all__ = ["common_pose_correlations", "class_posteriors", "decide_at_common_pose"]

#: particles compared at once (their images and K model images are held)
_BLOCK = 1024


def common_pose_correlations(images, references, angles_deg, shifts_px, *, pixel_size_a,
                             ctf=None, ctf_mode="apply", mask_radius_px=None):
    """Normalised correlation ``(N, K)`` of every particle with every map at its given pose.

    Parameters
    ----------
    images : array_like of shape (N, B, B)
        Particles (an array, a memory map or a stack that slices), read a block at a time.
    references : sequence of K ndarray of shape (B, B, B)
    angles_deg : ndarray of shape (N, 3)
    shifts_px : ndarray of shape (N, 2)
        RELION origins in pixels: the model is the projection translated by ``-shift``.
    pixel_size_a : float
    ctf : CTFParams, optional
        The particles' CTF, applied to the models; ``ctf_mode`` ``"flipped"`` (particles
        phase-flipped before) applies ``|CTF|``, ``"flip"`` flips the particle here and applies
        ``|CTF|`` to the model.
    mask_radius_px : float, optional
        Radius of the disc compared; default the particle radius of the search
        (:func:`~..defaults.mask_radius_or_default_px`).

    Returns
    -------
    ndarray of shape (N, K), float64
    """
    angles_deg = np.asarray(angles_deg, dtype=np.float64)
    shifts_px = np.asarray(shifts_px, dtype=np.float64)
    n, box = len(angles_deg), np.shape(references[0])[-1]
    disc = _particle_disc(box, mask_radius_px)
    spectra = [VolumeSpectrum(np.asarray(ref, dtype=np.float32)) for ref in references]
    out = np.zeros((n, len(references)))
    for start in range(0, n, _BLOCK):
        rows = np.arange(start, min(n, start + _BLOCK))
        x = np.asarray(images[rows[0]:rows[-1] + 1], dtype=np.float32)
        weight = None
        if ctf is not None:
            weight = ctf_images(box, pixel_size_a, ctf.subset(rows))
            if ctf_mode == "flip":
                x = apply_ctf(x, np.sign(weight))
            if ctf_mode in ("flip", "flipped"):
                weight = np.abs(weight)
        x = _zero_mean_in(x, disc)
        for k, spectrum in enumerate(spectra):
            y = _zero_mean_in(model_images(spectrum, angles_deg[rows], ctf_weight=weight,
                                           shifts_px=shifts_px[rows]), disc)
            out[rows, k] = (x * y).sum(axis=1) / np.sqrt(
                np.maximum((x * x).sum(axis=1) * (y * y).sum(axis=1), 1e-30))
    return out


def _particle_disc(box_px: int, mask_radius_px=None) -> np.ndarray:
    """The pixels compared: the disc of the particle's radius (bool ``(B, B)``)."""
    return circular_mask(box_px, mask_radius_or_default_px(box_px, mask_radius_px))


def _zero_mean_in(images, disc) -> np.ndarray:
    """The pixels of ``images`` inside ``disc``, ``(n, pixels)`` float64, zero mean each."""
    values = np.asarray(images, dtype=np.float64)[:, disc]
    return values - values.mean(axis=1, keepdims=True)


def class_posteriors(cc, n_pixels: int) -> np.ndarray:
    """Class probabilities ``(N, K)`` from the correlations ``cc`` at one pose (module
    docstring): the softmax of ``n cc_k^2 / (2 (1 - max cc^2))``, equal priors. A model
    that correlates negatively explains nothing (its fit's scale would be negative): 0."""
    cc = np.clip(np.asarray(cc, dtype=np.float64), 0.0, 0.999999)
    best = cc.max(axis=1, keepdims=True)
    log_like = n_pixels * cc ** 2 / (2.0 * (1.0 - best ** 2))
    log_like -= log_like.max(axis=1, keepdims=True)
    weight = np.exp(log_like)
    return weight / weight.sum(axis=1, keepdims=True)


def decide_at_common_pose(images, references, angles_deg, shifts_px, *, pixel_size_a,
                          ctf=None, ctf_mode="apply", mask_radius_px=None):
    """Each particle's class and its probability at the given (common) pose.

    Returns
    -------
    classes : ndarray of shape (N,) int64
        The class of the highest probability (of the highest ``cc``).
    probability : ndarray of shape (N,)
    cc : ndarray of shape (N, K)
        :func:`common_pose_correlations`.
    """
    cc = common_pose_correlations(images, references, angles_deg, shifts_px,
                                  pixel_size_a=pixel_size_a, ctf=ctf, ctf_mode=ctf_mode,
                                  mask_radius_px=mask_radius_px)
    n_pixels = int(_particle_disc(np.shape(references[0])[-1], mask_radius_px).sum())
    posterior = class_posteriors(cc, n_pixels)
    classes = np.argmax(posterior, axis=1).astype(np.int64)
    return classes, posterior[np.arange(len(classes)), classes], cc
