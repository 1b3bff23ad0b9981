"""The output folder of ``deepalign classify``: THE owner of its layout and of resuming.

::

    FOLDER/it001/class_001.mrc ...   each class's map after iteration 1 (the next references)
    FOLDER/it001/classes.star        the particles: class, probability, pose, half
    FOLDER/it001/model/              with --cnn: the iteration's class network (trained, or
                                     fine-tuned from the previous iteration's; :mod:`.network`)
    FOLDER/it001/iteration.json      the iteration's report and the run's inputs (written
                                     last: an iteration is finished when it exists)
    FOLDER/class_001.mrc ...         the last iteration's maps
    FOLDER/classes.star              the last iteration's particles
    FOLDER/classify.json             every iteration's report, the inputs, why it stopped

Every file is written atomically (:mod:`..io`), so a killed run leaves finished iterations
and at most a partial folder without ``iteration.json``, which a resumed run writes again.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from ..io import (
    columns,
    read_json,
    read_particles_star,
    read_volume,
    write_json,
    write_mrc,
    write_particles_star,
)
from ..runtime.atomic import atomic_path
from .iterate import ClassState

__all__ = ["ClassifyFolder"]

_HALF_COLUMN = "rlnRandomSubset"  # RELION's; read by deepalign reconstruct


class ClassifyFolder:
    """Paths, writing and resuming of a classification folder (layout above).

    Parameters
    ----------
    path : str or path-like
    """

    MAP = "class_{:03d}.mrc"
    STAR = "classes.star"
    ITERATION = "iteration.json"
    REPORT = "classify.json"
    MODEL = "model"

    def __init__(self, path):
        self.path = os.fspath(path)

    def iteration_dir(self, iteration: int) -> str:
        return os.path.join(self.path, f"it{iteration:03d}")

    def model_dir(self, iteration: int) -> str:
        """The model folder of iteration ``iteration``'s network (``deepalign classify --cnn``;
        written before the iteration's ``iteration.json``: a killed iteration reuses it)."""
        return os.path.join(self.iteration_dir(iteration), self.MODEL)

    def map_path(self, k: int, iteration: int | None = None) -> str:
        """Class ``k``'s map (0-based ``k``, 1-based in the name), of an iteration or final."""
        folder = self.path if iteration is None else self.iteration_dir(iteration)
        return os.path.join(folder, self.MAP.format(k + 1))

    def star_path(self, iteration: int | None = None) -> str:
        folder = self.path if iteration is None else self.iteration_dir(iteration)
        return os.path.join(folder, self.STAR)

    @property
    def report_path(self) -> str:
        return os.path.join(self.path, self.REPORT)

    def write_iteration(self, it, particles, *, inputs: dict) -> None:
        """Write iteration ``it`` (:class:`.iterate.ClassIteration`): its maps, its particles
        (``particles``, the input set, with the iteration's poses and class columns) and,
        last, its report with ``inputs``."""
        folder = self.iteration_dir(it.iteration)
        os.makedirs(folder, exist_ok=True)
        for k, volume in enumerate(it.maps):
            write_mrc(self.map_path(k, it.iteration), volume, pixel_size_a=particles.pixel_size_a)
        out = particles.subset(np.arange(len(particles)))
        out.angles_deg, out.shifts_px = it.alignment.angles_deg, it.alignment.shifts_px
        columns.set_class_columns(out.extra, it.classes, it.probability)
        columns.set_alignment_columns(out.extra, score=it.alignment.score,
                                      significance=it.alignment.significance)
        out.extra[_HALF_COLUMN] = np.asarray(it.subsets, dtype=np.int64)
        write_particles_star(self.star_path(it.iteration), out)
        write_json(os.path.join(folder, self.ITERATION), dict(it.report(), inputs=inputs))

    def finished(self) -> list:
        """Reports of the finished iterations, 1, 2, ... up to the first missing one."""
        reports, i = [], 1
        while os.path.isfile(path := os.path.join(self.iteration_dir(i), self.ITERATION)):
            reports.append(read_json(path))
            i += 1
        return reports

    def resume_state(self, *, inputs: dict, n_classes: int):
        """``(reports, ClassState or None)``: what a run of ``inputs`` resumes from.

        Raises
        ------
        ValueError
            When the folder's finished iterations were run on other inputs (naming them).
        """
        reports = self.finished()
        if not reports:
            return [], None
        had = reports[-1].get("inputs", {})
        differ = sorted(key for key in set(had) | set(inputs) if had.get(key) != inputs.get(key))
        if differ:
            raise ValueError(f"{self.path} holds a classification of other inputs (differs: "
                             f"{', '.join(differ)}): use another folder or remove it")
        last = reports[-1]["iteration"]
        maps = np.stack([read_volume(self.map_path(k, last))[0] for k in range(n_classes)])
        extra = read_particles_star(self.star_path(last)).extra
        classes = columns.class_numbers(extra)
        return reports, ClassState(last, classes, maps, reports[-1]["changed_fraction"])

    def write_final(self, reports: list, *, stopped: str, n_classes: int) -> None:
        """The last iteration's maps and particles at the top, and ``classify.json``."""
        last = reports[-1]["iteration"]
        for k in range(n_classes):
            _copy(self.map_path(k, last), self.map_path(k))
        # read and written again, not copied: the image names are relative to the file
        write_particles_star(self.star_path(), read_particles_star(self.star_path(last)))
        write_json(self.report_path, {"iterations": [_without_inputs(r) for r in reports],
                                      "inputs": reports[-1].get("inputs", {}),
                                      "stopped": stopped})


def _copy(source: str, target: str) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _without_inputs(report: dict) -> dict:
    return {key: value for key, value in report.items() if key != "inputs"}
