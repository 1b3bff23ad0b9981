"""The first split of a classification started from one map: the particles told apart by how
their differences from that map vary (the leading directions of the differences' 3D covariance).

A random first assignment (RELION's start) gives K class maps that differ by noise only; on the
benchmark's easiest mixture the iterations then never found the classes
(docs/benchmarks_classes.md). Here, with every particle's pose against the one map:

1. each particle and its projection of the map (the particle's CTF applied) are cut down to the
   box whose Nyquist is ``resolution_a`` (:func:`~..projection.downsampled_geometry`) and
   masked; the projection, scaled to the particle by least squares, is subtracted: the
   particle's **residual**;
2. the particles are split in two (a **bisection**): the leading direction of their residuals'
   covariance *in 3D* is found by power iteration, each step one projection and one
   reconstruction: each residual's score on its projection of the current direction ``v``
   (the projection unit-norm, so every particle's score has the same noise; centred over the
   particles), then ``v`` <- the reconstruction of the residuals weighted by their scores
   (:func:`..judge.reconstruct.reconstruct`, which divides by the CTFs' sampling weight),
   masked to the particle's sphere (and to the focus mask, if any: focused classification)
   and made orthogonal to the map and unit-norm. It starts from the mean residual (the
   difference itself when the map is one of the states) and stops when ``v`` changes by
   less than :data:`SPLIT_TOLERANCE` or after ``iterations``. The particles' least-squares
   coefficients on ``v`` are then cut in two by a 2-means, each weighted by how much of ``v``
   its CTF passes (its coefficient's inverse noise variance: unweighted, the low-defocus
   particles of the smaller map's class went to the larger);
3. for K > 2 the largest group is bisected again (its own residuals, its own direction) until
   there are K: one direction for all K - 1 splits mixes the classes' differences with the
   variation inside one class (a class whose difference from the map depends on the view),
   and a k-means in that space merged two classes of a three-map phantom mixture that the
   bisections separate (0.53 against 0.99 balanced accuracy, tests/core/classes/test_split.py).

The measurements that chose the defaults are in docs/benchmarks_classes.md ("From one map").
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..ctf import apply_ctf, ctf_images
from ..defaults import (
    CLASSIFY_SPLIT_ITERATIONS,
    CLASSIFY_SPLIT_RESOLUTION,
    PARTICLE_RADIUS_BOX_FRACTION,
)
from ..imageops import circular_mask, fourier_crop, fourier_crop_volume
from ..judge.fsc import soft_sphere_mask
from ..judge.reconstruct import reconstruct
from ..projection import VolumeSpectrum, downsampled_geometry, nyquist_reaches, project
from ..runtime.stacks import stack_shape

__all__ = ["VarianceSplit", "variance_split", "split_words", "kmeans", "SPLIT_TOLERANCE",
           "KMEANS_STARTS"]

#: a bisection's power iteration stops when the direction's cosine with its previous value
#: exceeds ``1 - SPLIT_TOLERANCE``
SPLIT_TOLERANCE = 1e-3
_READ_BLOCK = 4096  # particles read and cut down at once


@dataclass
class VarianceSplit:
    """What :func:`variance_split` found.

    Attributes
    ----------
    classes : ndarray of shape (N,) int64
        0-based first class of each particle.
    scores : ndarray of shape (N, K - 1)
        Every particle's residual on each bisection's direction: least-squares coefficients,
        centred.
    directions : ndarray of shape (K - 1, b, b, b)
        The bisections' directions, in order, unit norm, on the split's box ``b``.
    iterations : int
        Power iterations run (all bisections).
    converged : bool
        Whether every bisection stopped by :data:`SPLIT_TOLERANCE` (else by the limit).
    resolution_a : float
        Nyquist of the split's box.
    box_px : int
    """

    classes: np.ndarray
    scores: np.ndarray
    directions: np.ndarray
    iterations: int
    converged: bool
    resolution_a: float
    box_px: int

    def report(self) -> dict:
        """JSON-ready numbers (sizes per class, 1-based as ``rlnClassNumber``)."""
        k = self.directions.shape[0] + 1
        return {"kind": "variance", "iterations": self.iterations,
                "converged": self.converged, "resolution_a": round(self.resolution_a, 2),
                "box_px": self.box_px,
                "class_sizes": np.bincount(self.classes, minlength=k).tolist()}


def variance_split(images, volume, angles_deg, *, k: int, pixel_size_a: float,
                   shifts_px=None, ctf=None, symmetry: str = "c1",
                   resolution_a: float = CLASSIFY_SPLIT_RESOLUTION,
                   iterations: int = CLASSIFY_SPLIT_ITERATIONS, seed: int = 0,
                   mask=None) -> VarianceSplit:
    """First classes of particles posed against one map (see the module docstring).

    Parameters
    ----------
    images : array_like of shape (N, B, B)
        The particles (an array, a memmap or a loader with ``shape`` and ``[rows]``).
    volume : ndarray of shape (B, B, B)
        The one map the poses were found against.
    angles_deg : ndarray of shape (N, 3)
    k : int
        Classes (>= 2).
    pixel_size_a : float
    shifts_px : ndarray of shape (N, 2), optional
        RELION origin shifts in pixels of ``images``.
    ctf : CTFParams, optional
    symmetry : str
    resolution_a : float
        The split compares residuals up to this resolution (coarser where the pixel does not
        reach it: the full box).
    iterations : int
        Most power iterations of each bisection.
    seed : int
        Seed of the k-means starts.
    mask : ndarray of shape (B, B, B), optional
        Focus mask (0..1): the directions are looked for inside it only.

    Returns
    -------
    VarianceSplit
    """
    if int(k) < 2:
        raise ValueError(f"a split needs at least 2 classes, got {k}")
    if not int(iterations) >= 1:
        raise ValueError(f"the split's iterations must be at least 1, got {iterations}")
    shape = stack_shape(images)
    n, box = shape[0], shape[-1]
    small, pixel = box, float(pixel_size_a)
    if nyquist_reaches(pixel_size_a, resolution_a):
        small, pixel = downsampled_geometry(box, pixel_size_a, resolution_a)
    scale = small / box
    angles = np.asarray(angles_deg, dtype=np.float64)
    shifts = None if shifts_px is None else np.asarray(shifts_px, dtype=np.float64) * scale
    data = _Residuals.of(images, fourier_crop_volume(volume, small) if small != box else volume,
                         angles, shifts, ctf, n=n, box=box, small=small, pixel=pixel,
                         symmetry=symmetry, focus=None if mask is None else _resampled(mask, small))
    groups, directions, done, converged = [np.arange(n)], [], 0, True
    while len(groups) < int(k):  # bisect the largest group
        g = max(range(len(groups)), key=lambda i: len(groups[i]))
        if len(groups[g]) < 2:
            raise ValueError(f"{n} particles cannot make {k} classes")
        best = _bisect(data.subset(groups[g]), iterations=iterations, seed=seed)
        rows = groups.pop(g)
        groups += [rows[best.labels == 0], rows[best.labels == 1]]
        directions.append(best.direction)
        done += best.iterations
        converged = converged and best.converged
    classes = np.zeros(n, dtype=np.int64)
    for label, g in enumerate(sorted(range(len(groups)), key=lambda g: -len(groups[g]))):
        classes[groups[g]] = label
    scores, _ = data.scores(np.stack(directions))
    return VarianceSplit(classes, scores, np.stack(directions), done, converged, 2.0 * pixel,
                         small)


@dataclass
class _Bisection:
    labels: np.ndarray  # (n,) 0 or 1
    direction: np.ndarray
    iterations: int
    converged: bool


def _bisect(data, *, iterations: int, seed: int) -> _Bisection:
    """The particles of ``data`` in two by the leading direction of their residuals'
    covariance (power iteration from their mean residual) and a weighted 2-means of their
    coefficients on it."""
    direction = data.off_map(data.reconstruct(np.ones(len(data.residuals))))[None]
    done, converged = 0, False
    while done < int(iterations):
        coef, weight = data.scores(direction)
        projected = coef * np.sqrt(weight)  # <residual, unit projection>: bounded noise
        projected -= projected.mean(axis=0)
        new = data.off_map(data.reconstruct(projected[:, 0]))[None]
        done += 1
        cosine = abs(float(np.sum(new * direction)))
        direction = new
        if cosine > 1.0 - SPLIT_TOLERANCE:
            converged = True
            break
    coef, weight = data.scores(direction)
    labels = kmeans(coef, 2, weights=weight, seed=seed)
    return _Bisection(labels, direction[0], done, converged)


@dataclass
class _Residuals:
    """The cut-down particles' residuals against their projections of the map, with what
    projecting and reconstructing on the split's box needs."""

    residuals: np.ndarray  # (N, b, b)
    ctf_images: np.ndarray | None  # (N, b, b), fft2 layout
    angles: np.ndarray
    shifts: np.ndarray | None
    ctf: object
    pixel: float
    symmetry: str
    mask: np.ndarray  # (b, b)
    sphere: np.ndarray  # (b, b, b): the particle's sphere (times the focus mask)
    map_direction: np.ndarray  # the map in the sphere, unit norm

    @classmethod
    def of(cls, images, volume, angles, shifts, ctf, *, n, box, small, pixel, symmetry,
           focus=None):
        radius = PARTICLE_RADIUS_BOX_FRACTION * small
        mask = circular_mask(small, radius).astype(np.float32)
        sphere = soft_sphere_mask(small, radius, soft_edge_px=0)
        if focus is not None:
            sphere = sphere * np.clip(np.asarray(focus, dtype=np.float32), 0.0, 1.0)
        ctf_imgs = None if ctf is None else ctf_images(small, pixel, ctf).astype(np.float32)
        spectrum = VolumeSpectrum(np.asarray(volume, dtype=np.float32))
        residuals = np.empty((n, small, small), dtype=np.float32)
        for start in range(0, n, _READ_BLOCK):
            rows = np.arange(start, min(n, start + _READ_BLOCK))
            block = np.asarray(images[rows], dtype=np.float32)
            if small != box:
                block = fourier_crop(block, small)
            block = block * mask
            proj = project(spectrum, angles[rows],
                           shifts_px=None if shifts is None else shifts[rows])
            if ctf_imgs is not None:
                proj = apply_ctf(proj, ctf_imgs[rows])
            proj = proj * mask
            fit = (block * proj).sum(axis=(1, 2)) / np.maximum((proj * proj).sum(axis=(1, 2)),
                                                             1e-20)
            residuals[rows] = block - fit[:, None, None] * proj
        map_direction = np.asarray(volume, dtype=np.float32) * sphere
        map_direction /= max(float(np.linalg.norm(map_direction)), 1e-20)
        return cls(residuals, ctf_imgs, angles, shifts, ctf, pixel, symmetry, mask, sphere,
                   map_direction)

    def subset(self, rows) -> _Residuals:
        """The same, for the particles ``rows`` only."""
        return replace(self, residuals=self.residuals[rows],
                       ctf_images=None if self.ctf_images is None else self.ctf_images[rows],
                       angles=self.angles[rows],
                       shifts=None if self.shifts is None else self.shifts[rows],
                       ctf=None if self.ctf is None else self.ctf.subset(rows))

    def reconstruct(self, weights) -> np.ndarray:
        """The reconstruction of the residuals weighted by ``weights`` (N,), in the sphere."""
        volume = reconstruct(self.residuals * np.asarray(weights, np.float32)[:, None, None],
                             self.angles, shifts_px=self.shifts, ctf=self.ctf,
                             pixel_size_a=self.pixel, symmetry=self.symmetry)
        return volume * self.sphere

    def scores(self, directions):
        """Each residual's least-squares coefficient on its projection of each direction (the
        particle's CTF applied, masked), centred over the particles (weighted), and its weight
        (the projection's squared norm: the coefficient's noise variance is its inverse, so a
        particle whose CTF passes little of the direction weighs little), both ``(N, K - 1)``.
        """
        n = len(self.residuals)
        coef, weight = np.empty((n, len(directions))), np.empty((n, len(directions)))
        for j, direction in enumerate(directions):
            proj = project(direction, self.angles, shifts_px=self.shifts)
            if self.ctf_images is not None:
                proj = apply_ctf(proj, self.ctf_images)
            proj *= self.mask
            weight[:, j] = np.maximum((proj * proj).sum(axis=(1, 2)), 1e-20)
            coef[:, j] = (self.residuals * proj).sum(axis=(1, 2)) / weight[:, j]
        mean = (coef * weight).sum(axis=0) / weight.sum(axis=0)
        return coef - mean, weight

    def off_map(self, direction) -> np.ndarray:
        """``direction`` without its part along the map (inside the sphere and the focus
        mask, so it stays there), unit norm."""
        v = direction.ravel().astype(np.float64)
        m = self.map_direction.ravel().astype(np.float64)
        v = v - (v @ m) * m
        return (v / max(float(np.linalg.norm(v)), 1e-20)).astype(np.float32).reshape(
            direction.shape)


def split_words(split) -> str:
    """``"; first classes ..."``: how a one-map start drew its first classes (an iteration
    report's ``first_split``: :meth:`VarianceSplit.report` or ``{"kind": "random"}``), for
    the command's and the protocol's lines; empty for every other iteration."""
    if not split:
        return ""
    if split["kind"] != "variance":
        return "; first classes at random"
    return (f"; first classes by the variance split ({split['iterations']} power iterations "
            f"at {split['resolution_a']:.0f} A"
            + ("" if split["converged"] else ", not converged") + ")")


def _resampled(mask, small: int) -> np.ndarray:
    """A mask on the split's box by linear interpolation in real space (centre ``B // 2`` to
    ``b // 2``): unlike a Fourier crop it does not ring, so it stays 0 where the mask is 0."""
    from scipy.ndimage import map_coordinates

    mask = np.asarray(mask, dtype=np.float32)
    box = mask.shape[-1]
    if small == box:
        return mask
    axis = (np.arange(small) - small // 2) * (box / small) + box // 2
    grid = np.meshgrid(axis, axis, axis, indexing="ij")
    return map_coordinates(mask, grid, order=1, mode="constant", cval=0.0).astype(np.float32)


#: k-means starts (k-means++, seeded); the grouping of least weighted spread is kept
KMEANS_STARTS = 10


def kmeans(points, k: int, *, weights=None, seed: int = 0, iterations: int = 100,
           starts: int = KMEANS_STARTS) -> np.ndarray:
    """Labels ``(N,)`` of ``points`` ``(N, D)`` in ``k`` groups, the groups numbered by size
    (largest first): Lloyd's iterations from ``starts`` k-means++ starts (seeded), the
    grouping of least (weighted) spread kept. With ``weights`` ``(N, D)`` (each coordinate's
    inverse noise variance) a point joins the centre nearest in its own weighted distance
    and each centre is its points' weighted mean."""
    points = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    n = len(points)
    if n < k:
        raise ValueError(f"{n} particles cannot make {k} classes")
    w = np.ones_like(points) if weights is None else np.asarray(weights, np.float64).reshape(
        points.shape)
    rng = np.random.default_rng([seed, 6])
    best, best_spread = None, np.inf
    for _ in range(max(1, int(starts))):
        labels, spread = _lloyd(points, w, k, rng, iterations)
        if spread < best_spread - 1e-12:
            best, best_spread = labels, spread
    order = np.argsort(-np.bincount(best, minlength=k), kind="stable")
    return np.argsort(order)[best].astype(np.int64)


def _lloyd(points, w, k, rng, iterations):
    """One k-means run from a k-means++ start: labels and their weighted spread."""
    n = len(points)
    centres = [points[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min([(w * (points - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = d2.sum()
        pick = rng.integers(n) if total <= 0 else rng.choice(n, p=d2 / total)
        centres.append(points[pick])
    centres = np.asarray(centres)
    labels = np.full(n, -1)
    for _ in range(int(iterations)):
        distance = (w[:, None] * (points[:, None] - centres[None]) ** 2).sum(axis=2)
        new = np.argmin(distance, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            mine = labels == j
            if np.any(mine):
                centres[j] = (w[mine] * points[mine]).sum(axis=0) / w[mine].sum(axis=0)
    spread = (w * (points - centres[labels]) ** 2).sum()
    return labels, float(spread)
