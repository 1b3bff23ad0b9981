"""Training of the regional classifiers (paper §2.1–2.3), resumable region by region.

Every particle is labelled with its nearest region centre (symmetry-aware,
:func:`~scipion_deepalign.core.regions.assign_regions`). For region ``r`` the positives are
its particles and the negatives all the others; a stratified fraction of the particles is
held out for validation and early stopping. Each model is written atomically as soon as it
is trained, and a later call with the same folder and configuration skips the regions whose
model (or skip record) already exists, so a killed run continues where it stopped and the
Scipion protocol can train each region in its own step, process or GPU.

Regions with fewer than ``min_particles_per_region`` training particles are **skipped** with
a warning and a ``history_NNNN.json`` that records why; prediction gives them probability 0.

Reproducibility: the split, the batches and the weights are seeded from ``config.seed`` and
the region number (``keras.utils.set_random_seed`` before each model; batch ``i`` of epoch
``e`` from ``default_rng((seed, e, i))``), so a region gets the same network whichever
subset of regions a call trains. Two runs on the same CPU machine (TensorFlow 2.21) gave
bit-identical weights. Across machines, thread counts or on a GPU, exact agreement also
needs the backend's deterministic kernels (``TF_DETERMINISTIC_OPS=1`` or
``tf.config.experimental.enable_op_determinism()``; ``torch.use_deterministic_algorithms``),
which the core does not switch on because they are slower.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from ..defaults import REGION_SPACING_DEG
from ..regions import assign_regions, region_centres_deg
from ..resolution import check_map_values
from ..runtime.atomic import atomic_path
from ..runtime.stacks import as_stack
from ..symmetry import normalise_symmetry
from .checks import check_pixel_size, check_reference_box, check_regions, input_geometry
from .config import TrainConfig
from .data import (
    RegionBatches,
    preprocess_images,
    region_validation_data,
    split_by_particle,
)
from .fingerprint import FORMAT_VERSION, training_fingerprint
from .fit import fit_model
from .history import best_region_hit_rate, best_validation_accuracy, near_chance_warnings
from .model import build_regional_model, check_class_output, compile_model
from .model_folder import ModelFolder, write_json_atomic
from .train_shared import train_shared_network

__all__ = ["TrainReport", "train_regions"]

logger = logging.getLogger(__name__)


@dataclass
class TrainReport:
    """What a call of :func:`train_regions` did.

    Attributes
    ----------
    out_dir : str
    network : str
    n_regions : int
    n_classes : int
        Reference maps the network tells apart (1: a region classifier, :mod:`.joint`).
    trained : list of int
        1-based regions trained by this call (all regions when the shared network was).
    reused : list of int
        Regions whose model (or skip record) was already in ``out_dir``.
    too_few : list of int
        Regions skipped for having fewer than ``min_particles_per_region`` particles.
    histories : dict
        Region number (or ``"shared"``) to its history dict, for models trained now.
    seconds : float
    warnings : list of str
        Models whose held-out accuracy is near chance (:func:`near_chance_warnings`).

    ``model_reused`` says whether the whole model was already there (nothing trained).
    """

    out_dir: str
    network: str
    n_regions: int
    n_classes: int = 1
    trained: list = field(default_factory=list)
    reused: list = field(default_factory=list)
    too_few: list = field(default_factory=list)
    histories: dict = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list = field(default_factory=list)

    @property
    def model_reused(self) -> bool:
        """True when the folder held the whole model already and nothing was trained."""
        return bool(self.reused) and not self.trained

    def region_hit_rate(self) -> dict:
        """Held-out region hit rate of each model trained now at its kept epoch
        (:func:`.history.best_region_hit_rate`; the shared network only): ``"shared"`` -> rate.
        """
        return {key: best_region_hit_rate(history) for key, history in self.histories.items()
                if best_region_hit_rate(history) is not None}

    def validation_accuracy(self) -> dict:
        """Held-out accuracy of each model trained now, at its kept epoch
        (:func:`.history.kept_epoch`).

        Returns
        -------
        dict
            Region number (or ``"shared"``) to accuracy; models without validation data are
            left out.
        """
        return {key: best_validation_accuracy(history)
                for key, history in self.histories.items()
                if best_validation_accuracy(history) is not None}


def _check_inputs(images, angles_deg, shifts_px, *, poses_needed=True):
    images = as_stack(images)  # a stack read on demand stays so: it is read in chunks
    if len(images.shape) != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (N, B, B), got {images.shape}")
    if angles_deg is None:
        if poses_needed:
            raise ValueError("the training particles have no poses: training from particles "
                             "needs aligned particles (or train from projections of the "
                             "reference map)")
        return images, None
    angles = np.asarray(angles_deg, dtype=np.float64)
    if angles.ndim != 2 or angles.shape[0] != len(images) or angles.shape[1] not in (2, 3):
        raise ValueError(f"angles_deg must have shape ({len(images)}, 3), got {angles.shape}")
    if not np.all(np.isfinite(angles)):
        raise ValueError("angles_deg holds NaN or infinite values")
    if shifts_px is not None and np.asarray(shifts_px).shape != (len(images), 2):
        raise ValueError(f"shifts_px must have shape ({len(images)}, 2), "
                         f"got {np.asarray(shifts_px).shape}")
    return images, angles


def _check_reference(reference, images, config):
    """The map (B, B, B), or K >= 2 maps (K, B, B, B) for a network of K classes."""
    if config.training_source == "particles":
        return None
    if reference is None:
        raise ValueError(f"training_source {config.training_source!r} needs the reference map")
    ref = np.asarray(reference, dtype=np.float32)
    if ref.ndim == 4 and len(ref) == 1:
        ref = ref[0]
    if ref.ndim == 4 and (config.training_source != "projections"
                          or config.network != "shared"):
        raise ValueError(f"several reference maps train the shared network from projections: "
                         f"got network {config.network!r}, training source "
                         f"{config.training_source!r}")
    for k, volume in enumerate([ref] if ref.ndim == 3 else ref):
        name = "the reference map" if ref.ndim == 3 else f"reference map {k + 1}"
        check_reference_box(volume.shape, images.shape[1], name=name)
        check_map_values(volume, name)
    return ref


def _metadata(config, images, angles, symmetry, spacing_deg, n_regions, input_box, input_px,
              fingerprint):
    digest = hashlib.sha1(b"" if angles is None
                          else np.round(angles, 3).astype(np.float64).tobytes())
    digest.update(str(images.shape).encode())
    return {
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "config": config.to_dict(),
        "symmetry": symmetry,
        "spacing_deg": float(spacing_deg),
        "n_regions": int(n_regions),
        "box_px": int(images.shape[1]),
        "particle_pixel_size_a": float(config.pixel_size_a),
        "input_box_px": int(input_box),
        "input_pixel_size_a": float(input_px),
        "n_particles": int(len(images)),
        "poses_sha1": digest.hexdigest(),
        "keras_backend": keras.backend.backend(),
    }


def _prepare_out_dir(folder: ModelFolder, meta: dict, centres, *, retrain: bool) -> None:
    """A new folder gets ``config.json``; an existing one is reused if its fingerprint
    matches (:meth:`ModelFolder.check_reuse`, which raises otherwise) or, with ``retrain``,
    emptied of its models first."""
    folder.path.mkdir(parents=True, exist_ok=True)
    if folder.config_path.exists():
        if retrain:
            logger.info("model folder %s: retraining over the model it holds", folder.path)
            folder.clear()
        else:
            folder.check_reuse(meta["fingerprint"])
    if not folder.config_path.exists():
        folder.write_config(meta)
    folder.write_regions(centres, symmetry=meta["symmetry"], spacing_deg=meta["spacing_deg"])


def _save_model_atomic(model, path: Path) -> None:
    with atomic_path(path, suffix=".keras") as tmp:  # Keras wants the .keras suffix
        model.save(tmp)


def train_regions(images, angles_deg, *, out_dir, symmetry="c1", spacing_deg=REGION_SPACING_DEG,
                  config: TrainConfig | None = None, shifts_px=None, regions=None,
                  progress=None, reference=None, ctf=None,
                  retrain: bool = False, start_from=None) -> TrainReport:
    """Train the region classifiers, from aligned particles or from the reference map.

    Parameters
    ----------
    images : stack of shape (N, B, B)
        Particles (full size; downsampled as ``config`` says): the aligned training subset,
        or with ``training_source="projections"`` any particles of the data set (they only
        give the noise to match; no poses needed). An ndarray or a stack read on demand
        (:mod:`..stacks`): it is read in chunks and only the network inputs are held.
    angles_deg : ndarray of shape (N, 3) or None
        Their poses ``(rot, tilt, psi)``, see :mod:`scipion_deepalign.core.geometry`; may be
        None with ``training_source="projections"``.
    out_dir : str or Path
        Model folder (layout in :mod:`.model_folder`); created if needed.
    symmetry : str
        Point group; regions cover its asymmetric unit (normalised here: a public entry).
    spacing_deg : float
        Angular spacing of the region centres.
    config : TrainConfig, optional
    shifts_px : ndarray of shape (N, 2), optional
        Known shifts (RELION convention); training images are centred with them.
    regions : sequence of int, optional
        1-based regions to train (all by default); ``network="shared"`` ignores it.
    progress : callable, optional
        Called after every epoch with a dict ``model, position, total, epoch, epochs, logs``.
    reference : ndarray of shape (B, B, B) or (K, B, B, B), optional
        Reference map on the particles' box and pixel size; needed by the ``projections``
        and ``both`` sources. K >= 2 maps (``projections``, shared network) train one network
        of K classes: its output is the class x region output of :mod:`.joint` (one joint
        softmax, or a class head beside the region head: ``config.class_output``), and
        ``config.json`` records ``n_classes`` and ``class_output``.
    ctf : CTFParams, optional
        CTFs of ``images``: the projections get CTFs drawn from them.
    retrain : bool
        Train again over a model already in ``out_dir`` (its files are deleted first).
        Without it a folder whose fingerprint (:mod:`.fingerprint`) matches these data and
        options is reused (nothing is trained again; ``report.model_reused``) or continued
        (regional networks: the missing regions), and one that does not is refused
        (:class:`~.model_folder.ModelMismatch`, naming what differs).
    start_from : str or Path, optional
        Fine-tune: a model folder holding a shared network of the same geometry and classes
        whose weights the training starts from (``network="shared"`` only; ``config.epochs``
        then counts the fine-tuning epochs). Recorded in ``config.json`` and the history
        (``fine_tuned_from``) and in the fingerprint (``start_model``: that folder's
        fingerprint), so a folder fine-tuned from another start is not reused.

    Returns
    -------
    TrainReport
    """
    start = time.perf_counter()
    config = config or TrainConfig()
    poses_needed = config.training_source != "projections" or config.network != "shared"
    images, angles = _check_inputs(images, angles_deg, shifts_px, poses_needed=poses_needed)
    reference = _check_reference(reference, images, config)
    check_pixel_size(config.pixel_size_a, name="config.pixel_size_a")
    symmetry = normalise_symmetry(symmetry)
    n_regions, wanted = check_regions(spacing_deg, symmetry, regions)
    centres = np.asarray(region_centres_deg(spacing_deg, symmetry))
    input_box, input_px = input_geometry(
        images.shape[1], config.pixel_size_a,
        target_resolution_a=config.target_resolution_a, target_box_px=config.target_box_px)
    folder = ModelFolder(out_dir)
    out_dir = folder.path
    fingerprint = training_fingerprint(
        config=config, box_px=images.shape[1], symmetry=symmetry, spacing_deg=spacing_deg,
        reference=reference, ctf=ctf, angles_deg=angles, n_images=len(images))
    start_model = None
    if start_from is not None:
        if config.network != "shared":
            raise ValueError(f"start_from fine-tunes the shared network, not {config.network!r}")
        start_model = ModelFolder(start_from)
        if not start_model.shared_model_path.exists():
            raise ValueError(f"start_from: {start_model.path} holds no trained shared network")
        fingerprint["start_model"] = start_model.fingerprint()
    meta = _metadata(config, images, angles, symmetry, spacing_deg, n_regions, input_box,
                     input_px, fingerprint)
    if start_model is not None:
        meta["fine_tuned_from"] = str(start_model.path)
    meta["n_classes"] = 1 if reference is None or reference.ndim == 3 else len(reference)
    meta["class_output"] = config.class_output_of(meta["n_classes"])
    check_class_output(meta["class_output"], head=config.head, n_classes=meta["n_classes"])
    _prepare_out_dir(folder, meta, centres, retrain=retrain)
    report = TrainReport(out_dir=str(out_dir), network=config.network, n_regions=n_regions,
                         n_classes=meta["n_classes"])

    if config.network == "shared":
        if folder.shared_model_path.exists():
            report.reused = list(range(1, n_regions + 1))
            report.seconds = time.perf_counter() - start
            logger.info("model folder %s: reusing its shared network, trained for the same "
                        "map, geometry, CTF range and options (not retrained)", out_dir)
            return report
        todo = ["shared"]
    else:
        todo = [r for r in wanted if not folder.region_done(r)]
        report.reused = [r for r in wanted if r not in todo]
        if not todo:
            report.seconds = time.perf_counter() - start
            return report

    if todo == ["shared"]:
        history = train_shared_network(
            images, angles, out_dir=out_dir, centres_deg=centres, symmetry=symmetry,
            spacing_deg=spacing_deg, config=config, input_box=input_box, input_px=input_px,
            shifts_px=shifts_px, reference=reference, ctf=ctf,
            fit=lambda model, batches, validation: fit_model(
                model, batches, validation, config, label="shared network",
                progress=progress, shared=True),
            save=_save_model_atomic,
            start_weights=None if start_model is None else start_model.shared_model_path)
        report.trained = list(range(1, n_regions + 1))
        report.histories["shared"] = history
        return _finish(report, start)

    _train_each_region(todo, images, angles, shifts_px, folder=folder, centres=centres,
                       symmetry=symmetry, config=config, input_box=input_box,
                       input_px=input_px, report=report, progress=progress)
    return _finish(report, start)


def _train_each_region(todo, images, angles, shifts_px, *, folder, centres, symmetry, config,
                       input_box, input_px, report, progress) -> None:
    """The per-region binary networks of ``todo`` (1-based), one after another; each is saved
    as soon as it is trained (a killed run resumes with the next one)."""
    n_regions = report.n_regions
    labels, _ = assign_regions(angles, centres, symmetry)
    labels = np.asarray(labels, dtype=int)
    split_rng = np.random.default_rng(config.seed)
    train_idx, val_idx = split_by_particle(labels, config.validation_fraction, split_rng)
    logger.info("preprocessing %d particles to %d px (%.3g A/px)", len(images), input_box,
                input_px)
    x = preprocess_images(images, input_box_px=input_box, shifts_px=shifts_px)
    x_train, y_train = x[train_idx], labels[train_idx]
    x_val, y_val = x[val_idx], labels[val_idx]
    max_shift = config.max_shift_fraction * input_box

    for position, region in enumerate(todo, start=1):
        is_pos = y_train == region - 1
        n_pos = int(is_pos.sum())
        if n_pos < config.min_particles_per_region or n_pos == len(is_pos):
            logger.warning("region %d has %d training particles (< %d): skipped, its "
                           "probability will be 0", region, n_pos,
                           config.min_particles_per_region)
            write_json_atomic(folder.history_path(region), {
                "region": region, "n_particles": n_pos, "seconds": 0.0,
                "skipped": f"fewer than {config.min_particles_per_region} training particles"})
            report.too_few.append(region)
            continue
        logger.info("region %d of %d (%d of %d to train now): %d positives, %d negatives",
                    region, n_regions, position, len(todo), n_pos, len(is_pos) - n_pos)
        t0 = time.perf_counter()
        keras.utils.set_random_seed(config.seed * 10007 + region)
        model = compile_model(build_regional_model(input_box, name=f"region_{region:04d}"),
                              loss=config.loss, learning_rate=config.learning_rate)
        batches = RegionBatches(x_train, is_pos, batch_size=config.batch_size,
                                positives_per_epoch=config.positives_per_region,
                                max_shift_px=max_shift, seed=config.seed * 10007 + region)
        history = fit_model(model, batches, region_validation_data(x_val, y_val == region - 1),
                            config, label=f"region {region}", position=position,
                            total=len(todo), progress=progress)
        history.update(region=region, n_particles=n_pos, seconds=time.perf_counter() - t0)
        write_json_atomic(folder.history_path(region), history)
        _save_model_atomic(model, folder.model_path(region))
        report.trained.append(region)
        report.histories[region] = history


def _finish(report: TrainReport, start: float) -> TrainReport:
    report.warnings = near_chance_warnings(report.histories,
                                           report.n_regions * report.n_classes)
    for message in report.warnings:
        logger.warning(message)
    report.seconds = time.perf_counter() - start
    return report
