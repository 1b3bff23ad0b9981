"""The oracle stages of ``bench_classes.py``: each particle classed by the higher normalised
correlation with two maps projected at given poses (by default the true maps at the true
poses: the best any method can do on that noise), and its controls (the true maps
low-passed, ``deepalign classify``'s class maps, ``classify``'s poses)."""
from __future__ import annotations

import time

import numpy as np
from classes_maps import BOX, PIXEL_A

__all__ = ["stage_oracle", "stage_oracle_lowpass", "stage_oracle_class_maps",
           "stage_oracle_found_poses"]


def stage_oracle(b) -> dict:
    """Every particle against both true maps at its true pose, shift and CTF: the class of the
    higher normalised correlation inside the particle disc."""
    return _oracle(b, "oracle.npy")


def stage_oracle_lowpass(b) -> dict:
    """The oracle with the true maps low-passed to the references' resolution
    (``--reference-resolution``): the best any method can do on that noise with maps of that
    resolution (class maps reconstructed from these particles reach about as far)."""
    return dict(_oracle(b, "oracle_lowpass.npy", resolution_a=b.args.reference_resolution),
                resolution_a=b.args.reference_resolution)


def stage_oracle_class_maps(b) -> dict:
    """The oracle with ``deepalign classify``'s final class maps instead of the true maps (at
    the true poses): what the reconstructed maps' noise costs."""
    from scipion_deepalign.core.io import read_volume

    maps = [read_volume(str(b.work / "classify" / f"class_{k:03d}.mrc"))[0] for k in (1, 2)]
    return _oracle(b, "oracle_class_maps.npy", maps=maps)


def stage_oracle_found_poses(b) -> dict:
    """The oracle at ``deepalign classify``'s poses instead of the true ones (with the true
    maps): what the pose errors cost."""
    from classes_report import image_index

    from scipion_deepalign.core.classes.classify_folder import ClassifyFolder
    from scipion_deepalign.core.io import read_particles_star

    found = read_particles_star(str(b.work / "classify" / ClassifyFolder.STAR),
                                datadir=str(b.input))
    order = np.argsort(image_index(found.image_names))
    return _oracle(b, "oracle_found_poses.npy", poses=found.subset(order))


def _oracle(b, name: str, resolution_a=None, maps=None, poses=None) -> dict:
    """Each particle's class by the higher normalised correlation inside the particle disc
    with ``maps`` (default the true maps, low-passed to ``resolution_a`` where given)
    projected at ``poses`` (default the true poses, shifts and CTFs)."""
    from scipion_deepalign.core.defaults import PARTICLE_RADIUS_BOX_FRACTION
    from scipion_deepalign.core.imageops import circular_mask, low_pass_volume
    from scipion_deepalign.core.io import load_particle_images, read_particles_star, read_volume
    from scipion_deepalign.core.simulate import clean_particle_images

    start = time.perf_counter()
    truth = read_particles_star(str(b.sim / "particles.star")) if poses is None else poses
    parts = read_particles_star(str(b.star))
    _, images = load_particle_images(parts, np.arange(len(parts.image_names)))
    disc = circular_mask(BOX, PARTICLE_RADIUS_BOX_FRACTION * BOX)
    x = images[:, disc] - images[:, disc].mean(axis=1, keepdims=True)
    if maps is None:
        maps = [read_volume(str(b.sim / f"true_{label}.mrc"))[0] for label in ("A", "B")]
        if resolution_a:
            maps = [low_pass_volume(m, pixel_size_a=PIXEL_A, resolution_a=resolution_a)
                    for m in maps]
    scores = []
    for volume in maps:
        model = clean_particle_images(volume, truth)
        y = model[:, disc] - model[:, disc].mean(axis=1, keepdims=True)
        scores.append((x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1)))
    classes = np.argmax(np.stack(scores, axis=1), axis=1)
    out = b.work / name
    np.save(out, classes)
    return {"seconds": time.perf_counter() - start, "classes_npy": str(out)}
