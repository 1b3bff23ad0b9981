"""The network path of ``deepalign classify --cnn`` (issue 25): each iteration's particles are
searched in the (class, region) pairs a network of the K class maps predicts.

:class:`ClassNetwork` gives an iteration its pairs (:meth:`ClassNetwork.predict_pairs`):

1. it trains the joint class x region network (:mod:`..cnn.joint`, the network of
   ``deepalign run --volume A --volume B``) on projections of the iteration's K references,
   the particles lending their noise and CTFs (:func:`~..cnn.train.train_regions`), into that
   iteration's model folder. The first network (no previous iteration's network) trains for
   ``config.epochs``; every later one **fine-tunes** the previous iteration's network: it
   starts from its weights (``start_from``) and trains
   :data:`~..defaults.CLASSIFY_FINETUNE_EPOCHS` epochs (``finetune_epochs``), without the
   noise ramp, on projections of the new, FSC-filtered class maps;
2. it predicts each particle's joint probabilities and takes its most probable pairs
   (:func:`~..cnn.pairs.select_pairs`, under the uniform class prior the network was trained
   with, the rule of ``deepalign run``).

:func:`.iterate.classify` then aligns each particle in its pairs only
(:func:`.regional.align_class_pairs`, with its significance fallback over every class).

Resuming: a model folder whose fingerprint matches (same maps, options and start model,
:mod:`..cnn.fingerprint`) is reused, not trained again, so an iteration killed after its
training reuses its network; finished iterations are not run again at all
(:mod:`.classify_folder`). With one starting map and K classes, the first iteration is the
random start (no network); the second trains the first network.

The network learns from the maps unmasked (the particles hold the whole structure); a focus
mask applies to the search only.

Imports Keras only when a network is trained or used.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import numpy as np

from ..defaults import CLASSIFY_FINETUNE_EPOCHS, REGION_SPACING_DEG, TOP_K
from .references import class_references

__all__ = ["ClassNetwork", "NetworkStep"]


@dataclass
class NetworkStep:
    """One iteration's network and the pairs it predicted.

    Attributes
    ----------
    pairs : ClassPairs
    centres_deg : ndarray of shape (R, 2)
        The model's region centres.
    model_dir : str
    seconds : float
        Training (or, reused, checking the folder).
    epochs : int
        Epochs the network trained in this iteration (its history).
    fine_tuned_from : str or None
        The previous iteration's model folder it started from (None: from scratch).
    reused : bool
        The folder held this network already (a resumed iteration): nothing trained.
    predict_seconds : float
    class_accuracy : float or None
        Held-out projections whose most probable class is theirs (its history).
    """

    pairs: object
    centres_deg: np.ndarray
    model_dir: str
    seconds: float
    epochs: int
    fine_tuned_from: str | None
    reused: bool
    predict_seconds: float = 0.0
    class_accuracy: float | None = None

    def report(self) -> dict:
        """JSON-ready numbers of the iteration's network."""
        return {"model_dir": self.model_dir, "train_seconds": round(self.seconds, 3),
                "epochs": self.epochs, "fine_tuned_from": self.fine_tuned_from,
                "reused": self.reused, "predict_seconds": round(self.predict_seconds, 3),
                "class_accuracy": self.class_accuracy,
                "pairs_per_particle": float(np.mean((self.pairs.classes >= 0).sum(axis=1)))}


@dataclass
class ClassNetwork:
    """How :func:`.iterate.classify` trains and uses the class network (module docstring).

    Attributes
    ----------
    config : TrainConfig
        The first network's training (``network="shared"``, ``training_source=
        "projections"``; its ``pixel_size_a`` filled in when missing).
    model_dir : callable
        ``model_dir(iteration) -> folder`` of an iteration's network (1-based).
    spacing_deg : float
    top_k : int
        Pairs per particle, or the most with ``search.probability_mass``.
    finetune_epochs : int
        Epochs of each later network, from the previous one's weights.
    search : SearchOptions, optional
        The pair selection (``probability_mass``, ``max_regions``) and the search's options.
    """

    config: object
    model_dir: object
    spacing_deg: float = REGION_SPACING_DEG
    top_k: int = TOP_K
    finetune_epochs: int = CLASSIFY_FINETUNE_EPOCHS
    search: object = None

    def __post_init__(self):
        if int(self.finetune_epochs) < 1:
            raise ValueError(f"finetune_epochs must be at least 1, got {self.finetune_epochs}")
        if int(self.top_k) < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")

    def previous_model(self, iteration: int):
        """The folder of iteration ``iteration - 1``'s network, or None (none trained)."""
        if iteration <= 1:
            return None
        from ..cnn.model_folder import ModelFolder

        folder = ModelFolder(self.model_dir(iteration - 1))
        return str(folder.path) if folder.shared_model_path.exists() else None

    def predict_pairs(self, images, maps, *, iteration: int, pixel_size_a: float,
                      symmetry: str, ctf=None) -> NetworkStep:
        """Train (or fine-tune, or reuse) iteration ``iteration``'s network on ``maps`` and
        predict every particle's (class, region) pairs.

        Parameters
        ----------
        images : array_like of shape (N, B, B)
            The particles: their noise and CTFs make the projections, and they are predicted.
        maps : ndarray of shape (K, B, B, B)
            The iteration's references (unmasked).
        iteration : int
            1-based; its network goes to ``model_dir(iteration)``.
        pixel_size_a : float
        symmetry : str
        ctf : CTFParams, optional
        """
        from .. import cnn
        from ..cnn.model_folder import ModelFolder

        start = self.previous_model(iteration)
        config = replace(self.config, pixel_size_a=self.config.pixel_size_a or pixel_size_a)
        if start is not None:  # a few epochs from the previous weights, no curriculum
            config = replace(config, epochs=int(self.finetune_epochs), noise_ramp_epochs=0)
        folder = self.model_dir(iteration)
        t0 = time.perf_counter()
        report = cnn.train_regions(images, None, out_dir=folder, symmetry=symmetry,
                                   spacing_deg=self.spacing_deg, config=config,
                                   reference=class_references(maps, pixel_size_a=pixel_size_a),
                                   ctf=ctf, start_from=start)
        seconds = time.perf_counter() - t0
        history = report.histories.get("shared")
        if history is None:  # reused: the history the folder holds
            with open(ModelFolder(folder).shared_history_path) as handle:
                history = json.load(handle)
        t0 = time.perf_counter()
        k = len(maps)
        joint = cnn.predict_probabilities(images, folder, pixel_size_a=pixel_size_a,
                                          chunk_size=cnn.progress_chunk(len(images)))
        pairs = cnn.search_pairs(joint, k, self.search, top_k=self.top_k)
        centres, _, _ = ModelFolder(folder).read_regions()
        return NetworkStep(pairs=pairs, centres_deg=centres, model_dir=str(folder),
                           seconds=seconds, epochs=len(history.get("loss", [])),
                           fine_tuned_from=start,
                           reused=report.model_reused,
                           predict_seconds=time.perf_counter() - t0,
                           class_accuracy=history.get("class_accuracy"))
