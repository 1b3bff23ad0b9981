"""What the benchmarks write about the machine they ran on."""
from __future__ import annotations


def backend_words(backend: str) -> str:
    """The alignment's array backend (``numpy``, ``cupy``), with the GPU's name on cupy."""
    if backend != "cupy":
        return f"{backend} backend"
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return f"cupy backend on {name.decode() if isinstance(name, bytes) else name}"
