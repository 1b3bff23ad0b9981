"""The whole DeepAlign job on simulated data with known poses (``make demo``).

Every step is one core call; this module only chains them and measures the answers
against the truth the simulator recorded. Results go to :class:`DemoResult`; pictures and
the report are written by :mod:`.report`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.align.align import align_particles
from ..core.cnn.config import TrainConfig
from ..core.defaults import REGION_SPACING_DEG, TOP_K, train_default
from ..core.io import write_mrc, write_particles
from ..core.judge.consensus import angular_consensus
from ..core.judge.fsc import fsc_curve
from ..core.judge.reconstruct import reconstruct_half_maps
from ..core.pipeline import run_deepalign
from ..core.regions import assign_regions
from ..core.simulate import make_phantom, simulate_particles
from ..core.symmetry import symmetric_direction_distance_deg

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Size of the demo data set and the DeepAlign settings used on it.

    The defaults fit ``make demo``'s 15 minutes on two CPU cores (measured in
    docs/benchmarks.md): the network is trained as ``deepalign run`` trains it by default (from
    projections of the reference map, :class:`TrainConfig`'s schedule: the training subset is
    then only held out from the scores); the global-search
    baseline is run on ``compare_n`` test particles (DeepAlign on all of them) and both are
    compared there.
    """

    n_particles: int = 3000
    box_px: int = 64
    pixel_size_a: float = 3.0
    snr: float = 0.1
    max_shift_px: float = 3.0
    symmetry: str = "c1"
    train_fraction: float = 0.1
    spacing_deg: float = REGION_SPACING_DEG
    cnn_resolution_a: float = 16.0
    align_resolution_a: float = 12.0
    training_source: str = train_default("training_source")
    epochs: int = train_default("epochs")
    images_per_epoch: int = train_default("images_per_epoch")
    positives_per_region: int = 600
    network: str = "shared"
    min_particles_per_region: int = 5
    top_k: int = TOP_K
    compare_n: int = 600
    step_deg: float | None = None
    seed: int = 0


@dataclass
class MethodResult:
    """Poses of one alignment method for the particles ``index`` and their errors vs truth."""

    name: str
    index: np.ndarray
    angles_deg: np.ndarray
    shifts_px: np.ndarray
    n_comparisons: int
    seconds: float
    error_deg: np.ndarray
    shift_error_px: np.ndarray


@dataclass
class MapResult:
    """A reconstruction judged by its half-map FSC and its FSC against the phantom."""

    label: str
    fsc_halves: object
    fsc_truth: object


@dataclass
class DemoResult:
    config: DemoConfig
    out_dir: Path
    volume: np.ndarray
    images: np.ndarray
    true_angles_deg: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    centres_deg: np.ndarray
    train_report: object
    region_top1: float
    region_topk: float
    region_chance_topk: float
    compare_index: np.ndarray = None
    methods: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)
    consensus: object = None
    timings_s: dict = field(default_factory=dict)
    search_info: dict = field(default_factory=dict)


def _timed(timings, key, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[key] = time.perf_counter() - start
    log.info("%s: %.1f s", key, timings[key])
    return out


def run_demo(out_dir, config: DemoConfig | None = None) -> DemoResult:
    """Simulate, train, predict, align (regional and global), reconstruct and judge.

    Parameters
    ----------
    out_dir : str or Path
        Folder for the data, the model and the results (created if needed).
    config : DemoConfig, optional

    Returns
    -------
    DemoResult
    """
    cfg = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict = {}

    volume = make_phantom(cfg.box_px, symmetry=cfg.symmetry, seed=cfg.seed)
    images, particles = _timed(
        timings, "simulate", simulate_particles, volume, cfg.n_particles,
        pixel_size_a=cfg.pixel_size_a, snr=cfg.snr, ctf=True, max_shift_px=cfg.max_shift_px,
        seed=cfg.seed)
    write_mrc(out / "reference.mrc", volume, pixel_size_a=cfg.pixel_size_a)
    write_particles(out / "particles.mrcs", out / "particles_truth.star", images, particles)
    truth = particles.angles_deg.copy()

    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(cfg.n_particles)
    n_train = max(2, int(round(cfg.train_fraction * cfg.n_particles)))
    train_index, test_index = np.sort(order[:n_train]), np.sort(order[n_train:])

    train_config = TrainConfig(
        pixel_size_a=cfg.pixel_size_a, target_resolution_a=cfg.cnn_resolution_a,
        epochs=cfg.epochs, positives_per_region=cfg.positives_per_region, seed=cfg.seed,
        network=cfg.network, training_source=cfg.training_source,
        images_per_epoch=cfg.images_per_epoch,
        min_particles_per_region=cfg.min_particles_per_region)
    from_particles = cfg.training_source != "projections"
    search = dict(pixel_size_a=cfg.pixel_size_a, max_shift_px=cfg.max_shift_px + 1,
                  ctf=particles.ctf, symmetry=cfg.symmetry, step_deg=cfg.step_deg,
                  target_resolution_a=cfg.align_resolution_a, device="auto")
    deep = run_deepalign(
        images[train_index] if from_particles else None,
        truth[train_index] if from_particles else None, images, volume,
        model_dir=out / "model", spacing_deg=cfg.spacing_deg, top_k=cfg.top_k,
        train_config=train_config,
        train_shifts_px=particles.shifts_px[train_index] if from_particles else None,
        train_ctf=particles.ctf.subset(train_index) if from_particles else None, **search)
    timings.update({f"{k} (DeepAlign)": v for k, v in deep.seconds.items()})
    centres = deep.centres_deg
    true_regions, _ = assign_regions(truth, centres, cfg.symmetry)
    test_hits = deep.regions[test_index] == true_regions[test_index, None]
    region_top1 = float(np.mean(test_hits[:, 0]))
    region_topk = float(np.mean(test_hits.any(axis=1)))

    # The global baseline costs R/k times more per particle: it is run on a random sample of
    # the test particles, and both methods are compared on that same sample.
    rng_compare = np.random.default_rng(cfg.seed + 1)
    compare = np.sort(rng_compare.choice(test_index, min(cfg.compare_n, len(test_index)),
                                         replace=False))
    glob = _timed(timings, "align (global search)", align_particles, images[compare], volume,
                  region_hints=None, centres_deg=centres,
                  **{**search, "ctf": particles.ctf.subset(compare)})
    methods = _methods(cfg, deep, glob, compare, truth, particles, timings)
    maps = _maps(cfg, out, deep, images, truth, particles, volume, timings)

    consensus = angular_consensus(
        [deep.alignment.angles_deg[compare], glob.angles_deg],
        symmetry=cfg.symmetry, max_angle_deg=10.0)

    return DemoResult(
        config=cfg, out_dir=out, volume=volume, images=images, true_angles_deg=truth,
        train_index=train_index, test_index=test_index, centres_deg=centres,
        train_report=deep.train_report, region_top1=region_top1, region_topk=region_topk,
        region_chance_topk=min(1.0, cfg.top_k / len(centres)), compare_index=compare,
        methods=methods, maps=maps,
        consensus=consensus, timings_s=timings, search_info=deep.alignment.info)


def _methods(cfg, deep, glob, compare, truth, particles, timings) -> dict:
    """Errors of DeepAlign (every particle) and of the global search (its sample)."""
    methods = {}
    for name, result, seconds, index in (
            ("DeepAlign", deep.alignment, deep.seconds["align"], np.arange(len(truth))),
            ("Global search", glob, timings["align (global search)"], compare)):
        methods[name] = MethodResult(
            name=name, index=index, angles_deg=result.angles_deg, shifts_px=result.shifts_px,
            n_comparisons=int(result.n_comparisons), seconds=seconds,
            error_deg=symmetric_direction_distance_deg(result.angles_deg, truth[index],
                                                       cfg.symmetry),
            shift_error_px=np.linalg.norm(result.shifts_px - particles.shifts_px[index],
                                          axis=1))
        log.info("%s: %d particles, %d comparisons, %.1f s, median error %.1f deg", name,
                 len(index), result.n_comparisons, seconds, np.median(methods[name].error_deg))
    return methods


def _maps(cfg, out, deep, images, truth, particles, volume, timings) -> dict:
    """Half maps of DeepAlign's poses and of the true poses, their FSCs, the maps written."""
    maps = {}
    for label, angles, shifts in (("DeepAlign", deep.alignment.angles_deg,
                                   deep.alignment.shifts_px),
                                  ("True poses", truth, particles.shifts_px)):
        half1, half2, full = _timed(
            timings, f"reconstruct ({label})", reconstruct_half_maps, images, angles,
            shifts_px=shifts, ctf=particles.ctf, pixel_size_a=cfg.pixel_size_a,
            symmetry=cfg.symmetry, seed=cfg.seed)
        write_mrc(out / f"map_{label.split()[0].lower()}.mrc", full,
                  pixel_size_a=cfg.pixel_size_a)
        maps[label] = MapResult(
            label=label,
            fsc_halves=fsc_curve(half1, half2, pixel_size_a=cfg.pixel_size_a),
            fsc_truth=fsc_curve(full, volume, pixel_size_a=cfg.pixel_size_a))
    return maps
