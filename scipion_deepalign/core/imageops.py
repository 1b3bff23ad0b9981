"""Operations on stacks of square images ``(N, Y, X)``: shifts, rotations, Fourier cropping,
masks and normalisation.

Positions are measured from the box centre ``N // 2`` (see :mod:`scipion_deepalign.core.geometry`),
``x`` along the last axis and ``y`` along the one before. Every function is vectorised over the
stack and returns float32.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "translate_images",
    "rotate_images",
    "fourier_upsample2",
    "fourier_crop",
    "fourier_crop_volume",
    "circular_mask",
    "low_pass_volume",
    "normalise_images",
    "finite_rows",
]

# Images checked at once by finite_rows (bounds its boolean temporary).
_FINITE_BLOCK = 256


def finite_rows(images) -> np.ndarray:
    """``(N,)`` bool: image ``i`` of ``images`` (N, ...) holds only finite values.

    Checked in blocks of images, so the temporary stays small for any stack.
    """
    images = np.asarray(images)
    good = np.ones(len(images), dtype=bool)
    for start in range(0, len(images), _FINITE_BLOCK):
        block = images[start:start + _FINITE_BLOCK]
        good[start:start + _FINITE_BLOCK] = np.isfinite(block).reshape(len(block), -1).all(1)
    return good


def _as_stack(images, name="images") -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, Y, X) or (Y, X), got {arr.shape}")
    return arr


def _per_image(values, n: int, width: int, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if width == 1:
        if v.ndim == 0:
            v = np.full(n, float(v))
        if v.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) or be a scalar, "
                             f"got {np.shape(values)}")
        return v
    if v.shape == (width,):
        v = np.broadcast_to(v, (n, width))
    if v.shape != (n, width):
        raise ValueError(f"{name} must have shape ({n}, {width}) or ({width},), "
                         f"got {np.shape(values)}")
    return v


def translate_images(images, offsets_px) -> np.ndarray:
    """Move the content of each image by a (sub-pixel) offset, by a Fourier phase shift.

    ``out(x) = in(x - offset)``: content at the centre ends up at ``centre + offset``. The shift
    is periodic (what leaves one edge enters the other). A particle with RELION origin ``shift``
    is ``translate_images(projection, -shift)``; ``translate_images(particle, +shift)`` centres it.

    Parameters
    ----------
    images : ndarray of shape (N, Y, X) or (Y, X)
    offsets_px : array_like of shape (N, 2) or (2,)
        ``(offset_x, offset_y)`` in pixels.

    Returns
    -------
    ndarray of shape (N, Y, X), float32
    """
    stack = _as_stack(images)
    n, ny, nx = stack.shape
    off = _per_image(offsets_px, n, 2, "offsets_px")
    ky = np.fft.fftfreq(ny)[None, :, None]
    kx = np.fft.rfftfreq(nx)[None, None, :]
    phase = np.exp(-2j * np.pi * (kx * off[:, 0, None, None] + ky * off[:, 1, None, None]))
    spec = np.fft.rfft2(stack.astype(np.float32, copy=False)) * phase.astype(np.complex64)
    return np.fft.irfft2(spec, s=(ny, nx)).astype(np.float32)


def rotate_images(images, angles_deg, *, order: int = 3) -> np.ndarray:
    """Rotate each image in-plane about its centre ``N // 2``.

    The sign is the one of ``psi``: for any map ``V`` and pose ``(rot, tilt, psi)``,
    ``rotate_images(project(V, (rot, tilt, psi)), alpha) == project(V, (rot, tilt, psi + alpha))``.
    In the mathematical frame (x right, y up, i.e. displayed with row 0 at the bottom) the
    content turns **clockwise** by ``alpha``; displayed with row 0 at the top (``imshow``
    default, y down) it turns counter-clockwise. Formally ``out(x) = in(R(alpha) x)`` with
    ``R(alpha) = [[cos, -sin], [sin, cos]]`` acting on ``(x, y)``.

    Parameters
    ----------
    images : ndarray of shape (N, Y, X) or (Y, X)
    angles_deg : array_like of shape (N,) or scalar
    order : int
        Spline order of the interpolation (scipy.ndimage), 3 by default.

    Returns
    -------
    ndarray of shape (N, Y, X), float32
        Pixels whose source lies outside the box are 0.
    """
    stack = _as_stack(images).astype(np.float32, copy=False)
    n, ny, nx = stack.shape
    ang = np.deg2rad(_per_image(angles_deg, n, 1, "angles_deg"))
    cy, cx = ny // 2, nx // 2
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    yy -= cy
    xx -= cx
    out = np.empty_like(stack)
    for i in range(n):
        c, s = np.cos(ang[i]), np.sin(ang[i])
        src_x = c * xx - s * yy + cx
        src_y = s * xx + c * yy + cy
        out[i] = ndimage.map_coordinates(stack[i], [src_y, src_x], order=order,
                                         mode="grid-constant", cval=0.0)
    return out


def fourier_upsample2(images) -> np.ndarray:
    """Fourier interpolation to twice the sampling: ``out[..., 2 y, 2 x] = in[..., y, x]``.

    Parameters
    ----------
    images : ndarray of shape (N, B, B)

    Returns
    -------
    ndarray of shape (N, 2B, 2B) float32
    """
    import scipy.fft

    images = np.asarray(images, dtype=np.float32)
    m, box = images.shape[0], images.shape[-1]
    spec = scipy.fft.rfft2(images)
    pos = (box + 1) // 2  # non-negative row frequencies; an even box's Nyquist row is negative
    out = np.zeros((m, 2 * box, box + 1), dtype=np.complex64)
    out[:, :pos, : box // 2 + 1] = spec[:, :pos]
    out[:, 2 * box - (box - pos):, : box // 2 + 1] = spec[:, pos:]
    return scipy.fft.irfft2(out, s=(2 * box, 2 * box)) * np.float32(4.0)


def _crop_or_pad_centred(spec: np.ndarray, new_shape) -> np.ndarray:
    """Crop or zero-pad the trailing axes of a centred (DC at n // 2) array, centre kept."""
    out = np.zeros(spec.shape[:spec.ndim - len(new_shape)] + tuple(new_shape), dtype=spec.dtype)
    src, dst = [Ellipsis], [Ellipsis]
    for n_old, n_new in zip(spec.shape[-len(new_shape):], new_shape):
        m = min(n_old, n_new)
        a_old = n_old // 2 - m // 2
        a_new = n_new // 2 - m // 2
        src.append(slice(a_old, a_old + m))
        dst.append(slice(a_new, a_new + m))
    out[tuple(dst)] = spec[tuple(src)]
    return out


#: complex128 spectrum bytes of the images :func:`fourier_crop` transforms at once
_RESIZE_BYTES = 16 * 2**20


def _fourier_resize(data: np.ndarray, new_box: int, ndim: int) -> np.ndarray:
    axes = tuple(range(-ndim, 0))
    old = data.shape[-1]
    spec = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(data, axes=axes), axes=axes), axes=axes)
    spec = _crop_or_pad_centred(spec, (new_box,) * ndim)
    out = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(spec, axes=axes), axes=axes), axes=axes)
    return (out.real * (new_box / old) ** ndim).astype(np.float32)


def _check_box(new_box, name="new_box") -> int:
    if int(new_box) != new_box or new_box < 1:
        raise ValueError(f"{name} must be a positive integer, got {new_box!r}")
    return int(new_box)


def fourier_crop(images, new_box: int) -> np.ndarray:
    """Resample images to ``new_box`` pixels by cropping (or zero-padding) their spectrum.

    Cropping downsamples (pixel size grows by ``old / new``) and low-passes at the new Nyquist;
    padding upsamples by band-limited interpolation. The centre pixel ``N // 2`` stays at the
    centre ``new_box // 2`` and pixel *values* keep their level (the mean is unchanged; the
    integral scales with the pixel area).

    Parameters
    ----------
    images : ndarray of shape (N, B, B) or (B, B)
    new_box : int

    Returns
    -------
    ndarray of shape (N, new_box, new_box), float32
    """
    stack = _as_stack(images)
    if stack.shape[1] != stack.shape[2]:
        raise ValueError(f"images must be square, got {stack.shape}")
    new_box = _check_box(new_box)
    # numpy's FFT works in complex128 with shifted copies (~5x the spectrum): a few hundred
    # images at a time keep that transient small for any stack (8192 images of 64 px at
    # once peaked at ~1.1 GB)
    step = max(1, _RESIZE_BYTES // (16 * max(stack.shape[1], new_box) ** 2))
    if len(stack) <= step:
        return _fourier_resize(stack, new_box, 2)
    out = np.empty((len(stack), new_box, new_box), dtype=np.float32)
    for start in range(0, len(stack), step):
        out[start:start + step] = _fourier_resize(stack[start:start + step], new_box, 2)
    return out


def fourier_crop_volume(volume, new_box: int) -> np.ndarray:
    """Resample a cubic volume to ``new_box`` voxels by cropping (or padding) its spectrum.

    Same rules as :func:`fourier_crop`: centre ``B // 2`` kept at ``new_box // 2``, voxel
    values keep their level.

    Parameters
    ----------
    volume : ndarray of shape (B, B, B)
    new_box : int

    Returns
    -------
    ndarray of shape (new_box, new_box, new_box), float32
    """
    vol = np.asarray(volume)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume must be cubic (B, B, B), got {vol.shape}")
    return _fourier_resize(vol, _check_box(new_box), 3)


def low_pass_volume(volume, *, pixel_size_a: float, resolution_a: float,
                    edge_a: float | None = None) -> np.ndarray:
    """Low-pass filter a map to ``resolution_a`` with a raised-cosine edge.

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
    pixel_size_a : float
    resolution_a : float
        Frequencies up to ``1 / resolution_a`` pass unchanged; a raised-cosine edge then
        falls to 0 over a band of width ``1 / edge_a`` (default: a tenth of the cut-off).
    edge_a : float, optional

    Returns
    -------
    ndarray of the same shape, float32
    """
    vol = np.asarray(volume, dtype=np.float32)
    if not resolution_a > 0 or not pixel_size_a > 0:
        raise ValueError("resolution_a and pixel_size_a must be positive")
    cutoff = 1.0 / float(resolution_a)
    width = cutoff / 10.0 if edge_a is None else 1.0 / float(edge_a)
    kz, ky = (np.fft.fftfreq(n, d=pixel_size_a) for n in vol.shape[:2])
    kx = np.fft.rfftfreq(vol.shape[2], d=pixel_size_a)
    k = np.sqrt(kz[:, None, None] ** 2 + ky[None, :, None] ** 2 + kx[None, None, :] ** 2)
    t = np.clip((k - cutoff) / width, 0.0, 1.0)
    weight = 0.5 * (1.0 + np.cos(np.pi * t))
    return np.fft.irfftn(np.fft.rfftn(vol) * weight, s=vol.shape).astype(np.float32)


def circular_mask(box: int, radius_px: float) -> np.ndarray:
    """Boolean disc of radius ``radius_px`` about the centre ``box // 2``.

    Parameters
    ----------
    box : int
    radius_px : float
        Pixels at distance ``<= radius_px`` from the centre are True.

    Returns
    -------
    ndarray of shape (box, box), bool
    """
    box = _check_box(box, "box")
    if radius_px < 0:
        raise ValueError(f"radius_px must be >= 0, got {radius_px}")
    c = np.arange(box) - box // 2
    return (c[None, :] ** 2 + c[:, None] ** 2) <= radius_px ** 2


def normalise_images(images, *, mask_radius_px: float | None = None) -> np.ndarray:
    """Standard cryo-EM normalisation of each image.

    With ``mask_radius_px``, the mean and standard deviation are those of the *background*, the
    pixels outside the disc of that radius (RELION/Xmipp convention): after normalisation the
    background has mean 0 and std 1. Without it, the whole image gets mean 0 and std 1.
    Constant images are only centred (std taken as 1).

    Parameters
    ----------
    images : ndarray of shape (N, Y, X) or (Y, X)
    mask_radius_px : float, optional

    Returns
    -------
    ndarray of shape (N, Y, X), float32
    """
    stack = _as_stack(images).astype(np.float32, copy=False)
    if mask_radius_px is None:
        sel = stack.reshape(len(stack), -1)
    else:
        if stack.shape[1] != stack.shape[2]:
            raise ValueError(f"images must be square with mask_radius_px, got {stack.shape}")
        outside = ~circular_mask(stack.shape[-1], mask_radius_px)
        if not outside.any():
            raise ValueError(f"mask_radius_px={mask_radius_px} leaves no background pixels in a "
                             f"{stack.shape[-1]} px box")
        sel = stack[:, outside]
    mean = sel.mean(axis=1, dtype=np.float64)
    std = sel.std(axis=1, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return ((stack - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
