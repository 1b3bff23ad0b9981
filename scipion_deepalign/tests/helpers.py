"""Helpers used only by the tests (kept out of the package's public API).

* :func:`translate_volume` -- a known-answer shift of a map (tests of projection conventions);
* :func:`rodrigues` -- rotation about an axis written out by hand, the independent check of
  the core's use of :class:`scipy.spatial.transform.Rotation`;
* :func:`phase_flip` -- particles phase-flipped as a preprocessing program would (the input of
  the ``"flipped"`` CTF mode);
* :func:`phantom_particles` -- the 32 px phantom and particles simulated from it with CTFs and
  shifts, the set the alignment tests search;
* :func:`phantom_pair` -- the 32 px phantom and the same phantom with its densest blob masked
  away (a compositional change: the two maps of the class tests);
* :func:`numpy_twin` -- numpy under another module name: the code paths written for cupy
  (``xp is not np``), run on the CPU;
* :func:`tiny_region_network` -- a 4-region softmax network of 8 px inputs with its
  ``PyDataset`` of two batches: the training loop's tests (``fit_model``).
"""
from __future__ import annotations

import types

import numpy as np

__all__ = ["translate_volume", "rodrigues", "phase_flip", "phantom_particles", "phantom_pair",
           "numpy_twin", "tiny_region_network"]


def numpy_twin() -> types.ModuleType:
    """numpy under another name: the code paths written for cupy, run on the CPU."""
    twin = types.ModuleType("numpy_twin")
    twin.__dict__.update({k: v for k, v in vars(np).items() if not k.startswith("__")})
    return twin


def tiny_region_network(keras, *, learning_rate: float = 0.01):
    """``(model, batches, x, y)``: a compiled 4-region softmax network of 8 px inputs (SGD at
    ``learning_rate``), a ``PyDataset`` of two batches of 32 random images and their one-hot
    regions ``x`` ``(64, 8, 8, 1)`` and ``y`` ``(64, 4)`` (also usable as held-out data)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 64)]

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x[32 * index:32 * index + 32], y[32 * index:32 * index + 32]

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
                  loss="categorical_crossentropy")
    return model, Batches(), x, y


def translate_volume(volume, offset_xyz_px) -> np.ndarray:
    """Move the content of a volume by ``(dx, dy, dz)`` voxels (Fourier phase shift).

    ``out(r) = in(r - offset)``, periodic.

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
    offset_xyz_px : array_like of shape (3,)
        ``(offset_x, offset_y, offset_z)`` in voxels.

    Returns
    -------
    ndarray of shape (Z, Y, X), float32
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"volume must have shape (Z, Y, X), got {vol.shape}")
    off = np.asarray(offset_xyz_px, dtype=np.float64)
    if off.shape != (3,):
        raise ValueError(f"offset_xyz_px must have shape (3,), got {off.shape}")
    kz = np.fft.fftfreq(vol.shape[0])[:, None, None]
    ky = np.fft.fftfreq(vol.shape[1])[None, :, None]
    kx = np.fft.rfftfreq(vol.shape[2])[None, None, :]
    phase = np.exp(-2j * np.pi * (kx * off[0] + ky * off[1] + kz * off[2]))
    return np.fft.irfftn(np.fft.rfftn(vol) * phase, s=vol.shape).astype(np.float32)


def rodrigues(axis, angle_rad) -> np.ndarray:
    """Rotation by ``angle_rad`` about ``axis`` (right-hand rule), Rodrigues' formula, (3, 3)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * kx + (1.0 - np.cos(angle_rad)) * (kx @ kx)


def phase_flip(images, ctf_imgs) -> np.ndarray:
    """Multiply the spectra of ``images`` by ``sign(CTF)`` (``ctf_imgs`` from
    :func:`scipion_deepalign.core.ctf.ctf_images`)."""
    from scipion_deepalign.core.ctf import apply_ctf

    return apply_ctf(images, np.where(np.asarray(ctf_imgs) < 0, -1.0, 1.0).astype(np.float32))


def phantom_particles(n, *, snr, seed, pixel_size_a=4.0, ctf=True, max_shift_px=2.0):
    """``(volume, images, particles)``: ``n`` particles of the 32 px built-in phantom."""
    from scipion_deepalign.core.simulate import make_phantom, simulate_particles

    volume = make_phantom(32, seed=0)
    images, parts = simulate_particles(volume, n, pixel_size_a=pixel_size_a, snr=snr, ctf=ctf,
                                       max_shift_px=max_shift_px, seed=seed)
    return volume, images, parts


def phantom_pair(box_px: int = 32, *, radius_px: float = 4.0):
    """``(a, b)``: the built-in phantom and the same map with a ball of ``radius_px`` around its
    densest voxel masked away (soft 2 px edge; about 30 % of the mass at 32 px)."""
    from scipion_deepalign.core.simulate import make_phantom

    a = make_phantom(box_px, seed=0)
    centre = np.unravel_index(np.argmax(a), a.shape)
    grid = np.indices(a.shape)
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    return a, (a * np.clip((r - radius_px) / 2.0, 0.0, 1.0)).astype(np.float32)


def write_pair_mixture(folder, n, *, snr, seed, pixel_size_a=4.0, reference_resolution_a=None):
    """A mixture of :func:`phantom_pair`'s maps written for the command line: ``in.star`` with
    ``particles.mrcs`` (CTF, shifts up to 2 px, no poses) and the maps ``A.mrc``, ``B.mrc``
    (low-passed to ``reference_resolution_a`` when given); the true 0-based classes (n,)."""
    from scipion_deepalign.core.classes import simulate_mixture
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import write_mrc, write_particles

    a, b = phantom_pair()
    images, particles, classes = simulate_mixture([a, b], n, pixel_size_a=pixel_size_a, snr=snr,
                                                  ctf=True, max_shift_px=2.0, seed=seed)
    particles.angles_deg = particles.shifts_px = None
    write_particles(folder / "particles.mrcs", folder / "in.star", images, particles)
    for name, volume in (("A.mrc", a), ("B.mrc", b)):
        if reference_resolution_a:
            volume = low_pass_volume(volume, pixel_size_a=pixel_size_a,
                                     resolution_a=reference_resolution_a)
        write_mrc(folder / name, volume, pixel_size_a=pixel_size_a)
    return classes
