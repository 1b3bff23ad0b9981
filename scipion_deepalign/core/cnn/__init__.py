"""Regional CNN classifiers of DeepAlign (Keras 3, any backend).

Public API: :class:`TrainConfig`, :func:`train_regions` / :class:`TrainReport`,
:func:`predict_regions`, :func:`predict_probabilities`, :func:`load_models`, the model
builders in :mod:`.model`, and the class x region output of a network of several maps
(:func:`class_probabilities`, :func:`region_marginal`, :mod:`.joint`) and its searched pairs
(:func:`select_pairs`, :mod:`.pairs`).
The names are loaded lazily, so that ``import
scipion_deepalign.core.cnn.config`` (file names, options) does not import Keras.
"""
import importlib

_EXPORTS = {
    "TrainConfig": "config", "TrainReport": "train", "train_regions": "train",
    "predict_regions": "predict", "predict_probabilities": "predict", "load_models": "predict",
    "build_regional_model": "model", "build_shared_model": "model", "compile_model": "model",
    "kernel_sizes": "model", "top_k_regions": "predict", "progress_chunk": "predict",
    "select_pairs": "pairs",
    "search_pairs": "pairs", "top_pairs": "pairs", "search_top_pairs": "pairs",
    "class_probabilities": "joint", "region_marginal": "joint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
