"""Several ``--volume`` maps, one class per particle: what ``deepalign align`` adds for them.

* :func:`read_class_maps` -- the maps, checked against each other and the particles (box,
  pixel size) with the file named, before any search; :func:`training_references` -- the
  same, as the (K, B, B, B) stack ``deepalign train`` teaches one network of K classes;
* :func:`align_against_maps` -- one map: :func:`~..core.align.align.align_particles` as
  always; several: :func:`~..core.classes.assign.align_classes`;
* :func:`write_class_columns`, :func:`summarise_classes` -- ``rlnClassNumber`` (1-based, the
  i-th ``--volume``), its probability, and the class sizes and comparisons per class (with
  ``deepalign run``, the class fractions the network's outputs gave beside the ones assigned).
"""
from __future__ import annotations

import numpy as np

from ..core import defaults
from ..core.io import columns
from .common import CLIError

__all__ = ["read_class_maps", "training_references", "align_against_maps",
           "write_class_columns", "summarise_classes"]


def read_class_maps(paths, *, box_px: int, pixel_size_a: float):
    """``(volumes, pixel_sizes)`` of the ``--volume`` files, CLIError naming a misfit one
    (box or pixel size against the particles', or, with several, against each other) or an
    empty one (constant, or not finite), before any work."""
    from ..core.cnn.checks import check_reference_box
    from ..core.defaults import check_pixel_sizes
    from ..core.io import read_volume
    from ..core.resolution import check_map_values

    volumes, pixels = [], []
    for path in paths:
        try:
            volume, pixel = read_volume(path)
        except ValueError as exc:
            raise CLIError(f"--volume: {exc}") from None
        try:
            check_reference_box(volume.shape, box_px, name=path)
            check_map_values(volume, path)
        except ValueError as exc:
            raise CLIError(f"--volume {exc}") from None
        volumes.append(volume)
        pixels.append(pixel)
    try:  # with the checks above, every rule of class_references: cheap, before any work
        check_pixel_sizes(pixels, list(paths), pixel_size_a)
    except ValueError as exc:
        raise CLIError(f"--volume {exc} (resample the map, or give the particles' pixel "
                       "size with --pixel-size)") from None
    return volumes, pixels


def training_references(paths, *, box_px: int, pixel_size_a: float):
    """The ``--volume`` maps scaled alike (:func:`~..core.classes.class_references`), shape
    (K, B, B, B): what a network of K classes is trained from (and fingerprinted by)."""
    from ..core.classes import class_references

    volumes, pixels = read_class_maps(paths, box_px=box_px, pixel_size_a=pixel_size_a)
    return class_references(volumes, pixel_sizes_a=pixels, names=list(paths),
                            pixel_size_a=pixel_size_a)


def align_against_maps(images, volumes, pixel_sizes, *, names, class_search=None, **options):
    """``(AlignmentResult, ClassAlignment or None)``: the poses against one map, or each
    particle's class and its pose against several (``options``: ``align_particles``')."""
    if len(volumes) == 1:
        from ..core.align.align import align_particles

        return align_particles(images, volumes[0], volume_pixel_size_a=pixel_sizes[0],
                               **options), None
    from ..core.classes import align_classes

    classes = align_classes(images, volumes, volume_pixel_sizes_a=pixel_sizes, names=names,
                            class_search=class_search, **options)
    return classes.alignment, classes


def write_class_columns(particles, classes) -> None:
    """``rlnClassNumber`` and the class probability on ``particles.extra``."""
    columns.set_class_columns(particles.extra, classes.classes, classes.probability)


def summarise_classes(summary, classes, names, *, estimated=None) -> None:
    """Class sizes (with each class's map) and comparisons per class into ``summary``; with
    ``estimated`` (the fractions estimated from the network's outputs before alignment,
    :func:`~..core.cnn.joint.estimate_class_fractions`), those beside the fractions the
    alignment assigned."""
    sizes = classes.class_sizes()
    n = max(1, int(sizes.sum()))
    summary.add("classes", "; ".join(
        f"{k + 1} ({name}): {size} ({100 * size / n:.1f} %)"
        for k, (name, size) in enumerate(zip(names, sizes))))
    if estimated is not None:
        summary.add("class fractions (network estimate -> assigned)", ", ".join(
            f"{k + 1}: {e:.3f} -> {size / n:.3f}"
            for k, (e, size) in enumerate(zip(estimated, sizes))))
    if classes.class_search:
        summary.add("class search", classes.class_search)
    if classes.mean_map_search:
        summary.add("classes searched", "one search against the classes' mean map, every "
                                        "class compared at its poses, the pose searched again "
                                        f"in the {defaults.CLASS_MEAN_SECOND_CLASSES} best "
                                        "classes' maps")
    else:
        summary.add("comparisons per class", ", ".join(
            f"{k + 1}: {c}" for k, c in enumerate(classes.n_comparisons_per_class)))
        searched = np.isfinite(classes.scores).sum(axis=1)  # -inf: a class not predicted
        summary.add("classes searched per particle", f"{float(np.mean(searched)):.2f} of "
                                                     f"{classes.scores.shape[1]}")
    summary.add("class probability", f"median {float(np.median(classes.probability)):.3f}")
