"""Choice between numpy (CPU) and cupy (GPU) arrays, with a lazy cupy import.

cupy is optional (``pip install scipion-em-deepalign[gpu]``). On a machine without a usable GPU
``import cupy`` may succeed while every array operation raises, so the GPU is *probed* (a tiny
array operation inside ``try/except Exception``) before it is chosen.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ..defaults import DEVICES

__all__ = ["cpu_threads", "get_array_module", "gpu_available", "to_numpy",
           "is_out_of_memory"]

logger = logging.getLogger(__name__)


_GPU_PROBE: dict = {}  # cached result of the probe: {"ok": bool, "why": str}


def _probe_gpu() -> tuple[bool, str]:
    """Whether cupy imports and can run an array operation, and why not."""
    if "ok" not in _GPU_PROBE:
        try:
            import cupy
            x = cupy.arange(4, dtype=cupy.float32)
            float((x * 2).sum())  # forces a kernel launch and a copy back
            _GPU_PROBE.update(ok=True, why="")
        except Exception as exc:  # ImportError, CUDA driver/runtime errors, ...
            _GPU_PROBE.update(ok=False, why=f"{type(exc).__name__}: {exc}")
    return _GPU_PROBE["ok"], _GPU_PROBE["why"]


def cpu_threads() -> int:
    """Threads this process may use for its own CPU loops: ``OMP_NUM_THREADS`` when set (the
    protocols and ``--jobs`` set it for each child, as for BLAS), else the cores it may run
    on."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def gpu_available() -> bool:
    """True when cupy is installed and a GPU answers a tiny computation."""
    return _probe_gpu()[0]


def get_array_module(device: str = "auto"):
    """Array module for ``device``: ``numpy`` or ``cupy``.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        ``"auto"`` takes cupy when a GPU answers, numpy otherwise; ``"cpu"`` always numpy;
        ``"gpu"`` requires a working cupy.

    Returns
    -------
    module
        ``numpy`` or ``cupy``. The choice is logged at INFO level.

    Raises
    ------
    ValueError
        If ``device`` is not one of :data:`~scipion_deepalign.core.defaults.DEVICES`.
    RuntimeError
        If ``device="gpu"`` and no GPU is usable (the message says why).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        logger.info("deepalign backend: numpy (CPU), as requested")
        return np
    ok, why = _probe_gpu()
    if ok:
        import cupy
        logger.info("deepalign backend: cupy (GPU)")
        return cupy
    if device == "gpu":
        raise RuntimeError(
            "device='gpu' was requested but no GPU is usable through cupy "
            f"({why}); install cupy for your CUDA (pip install 'cupy-cuda12x<14') "
            "or use device='cpu'")
    logger.info("deepalign backend: numpy (CPU); no usable GPU (%s)", why)
    return np


def to_numpy(x) -> np.ndarray:
    """``x`` as a numpy array (copies from the GPU when ``x`` is a cupy array)."""
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for host or GPU out-of-memory errors (numpy ``MemoryError``, cupy's OOM errors)."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return "OutOfMemory" in name or "out of memory" in str(exc).lower()
