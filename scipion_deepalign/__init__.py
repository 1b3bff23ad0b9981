"""Scipion plugin for DeepAlign: 3D angular assignment of cryo-EM particles by regionalised
deep learning (Jimenez-Moreno et al., J. Struct. Biol. 2021).

The numerical core (:mod:`scipion_deepalign.core`) never imports pyworkflow or pwem. The
Scipion ``Plugin`` class lives in :mod:`scipion_deepalign.plugin` and is loaded lazily here,
so that ``import scipion_deepalign.core`` works without Scipion installed.
"""
from .version import __version__

__all__ = ["__version__", "Plugin"]


def __getattr__(name):
    # pyworkflow's Domain does ``module.Plugin()`` after importing this package.
    if name == "Plugin":
        from .plugin import Plugin
        return Plugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
