"""The model folder: its layout, and every reading of it (one owner).

Layout::

    config.json          what training recorded (:meth:`ModelFolder.read_config`):
                         "format_version" (:data:`~.fingerprint.FORMAT_VERSION`),
                         "fingerprint" (what the model was trained for, :mod:`.fingerprint`:
                         reused for data that match it, refused otherwise), the TrainConfig
                         ("config"), "symmetry" (normalised), "spacing_deg", "n_regions",
                         "n_classes" (reference maps the network tells apart, :mod:`.joint`;
                         absent in older folders: 1), "class_output" (how a network
                         of several maps makes its class x region output: "joint" or
                         "head", :data:`~..defaults.CLASS_OUTPUTS`; absent in folders
                         before format 3: "joint"),
                         "box_px" and "particle_pixel_size_a" (the particles it was trained
                         for), "input_box_px" and "input_pixel_size_a" (the network input),
                         "n_particles", "poses_sha1", "keras_backend"
    regions.star         region centres (io.regions.write_regions_star)
    region_NNNN.keras    one binary classifier per region, NNNN 1-based as in regions.star
    history_NNNN.json    Keras History.history (loss, accuracy, val_loss, val_accuracy) plus
                         "region", "n_particles", "seconds"; a region skipped for having too
                         few particles has only this file, with "skipped" set
    shared.keras         the shared-trunk network instead (network="shared")
    history_shared.json  the same, plus "val_region_hit" (held-out region hit rate per epoch),
                         "best_epoch" (0-based, the weights kept) and "stopped_epoch"

Folders written before "particle_pixel_size_a" was recorded still load: their particle
pixel size is unknown (the ``config`` pixel size when it was given) and the pixel-size check
of :meth:`ModelFolder.check_particles` is skipped with a log line. Folders without
"format_version" (format 1) or "fingerprint" still predict; training on them again is
refused (:meth:`ModelFolder.check_reuse`), since nothing says what they were trained for.

Light module: no Keras, so that the command line and the protocols can read a model folder
before (or without) loading a network.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..defaults import CLASS_OUTPUTS, same_pixel_size
from ..runtime.atomic import atomic_open
from .fingerprint import FORMAT_VERSION, fingerprint_differences
from .history import best_validation_accuracy, near_chance_warnings

__all__ = ["ModelFolder", "ModelGeometry", "ModelMismatch", "FORMAT_VERSION", "CONFIG_FILE",
           "REGIONS_FILE", "SHARED_MODEL", "SHARED_HISTORY",
           "particle_misfit", "model_path", "history_path", "read_model_config",
           "write_json_atomic"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
REGIONS_FILE = "regions.star"
SHARED_MODEL = "shared.keras"
SHARED_HISTORY = "history_shared.json"
_NOT_CHECKED = set()  # folders whose unchecked pixel size was logged (once per process)


def model_path(model_dir, region: int) -> Path:
    """``region_NNNN.keras`` of a 1-based region number."""
    return Path(model_dir) / f"region_{int(region):04d}.keras"


def history_path(model_dir, region: int) -> Path:
    """``history_NNNN.json`` of a 1-based region number."""
    return Path(model_dir) / f"history_{int(region):04d}.json"


def write_json_atomic(path, data) -> None:
    """Write JSON through a temporary file in the same folder and an atomic rename
    (:func:`~scipion_deepalign.core.runtime.atomic.atomic_open`: the umask's permissions)."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=1, sort_keys=True)


def particle_misfit(box_px, pixel_size_a, model_box_px, model_pixel_size_a) -> str | None:
    """THE rule for particles given to a model: what does not fit, or None.

    ``"box"`` when the box differs from the model's particle box (the images are
    Fourier-cropped from it to the network input); ``"pixel size"`` when the pixel size
    is not the same (:func:`~scipion_deepalign.core.defaults.same_pixel_size`). A pixel size
    that is None on either side is not compared.
    """
    if int(box_px) != int(model_box_px):
        return "box"
    if pixel_size_a is None or model_pixel_size_a is None:
        return None
    if not same_pixel_size(pixel_size_a, model_pixel_size_a):
        return "pixel size"
    return None


def read_model_config(model_dir) -> dict:
    """The ``config.json`` of a model folder (ValueError naming the folder if absent)."""
    return ModelFolder(model_dir).read_config()


class ModelMismatch(ValueError):
    """A model folder holds a model trained for other data or options.

    Attributes
    ----------
    path : Path
        The model folder.
    differences : list of str
        What differs, one entry per field (:func:`.fingerprint.fingerprint_differences`).
    """

    def __init__(self, path, differences):
        self.path, self.differences = Path(path), list(differences)
        super().__init__(f"model folder {self.path} holds a model trained for other data or "
                         f"options (differs: {'; '.join(self.differences)}): use another "
                         "folder, or retrain over it")


@dataclass(frozen=True)
class ModelGeometry:
    """What a model was trained for; None where an older folder did not record it.

    Attributes
    ----------
    particle_box_px : int
    particle_pixel_size_a : float or None
    input_box_px : int or None
    input_pixel_size_a : float or None
    symmetry : str
    """

    particle_box_px: int
    particle_pixel_size_a: float | None
    input_box_px: int | None
    input_pixel_size_a: float | None
    symmetry: str


class ModelFolder:
    """A DeepAlign model folder (layout in the module docstring).

    Parameters
    ----------
    path : str or Path
        The folder; nothing is read until asked.
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"ModelFolder({str(self.path)!r})"

    # ------------------------------------------------------------- paths
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def regions_path(self) -> Path:
        return self.path / REGIONS_FILE

    @property
    def shared_model_path(self) -> Path:
        return self.path / SHARED_MODEL

    @property
    def shared_history_path(self) -> Path:
        return self.path / SHARED_HISTORY

    def model_path(self, region: int) -> Path:
        return model_path(self.path, region)

    def history_path(self, region: int) -> Path:
        return history_path(self.path, region)

    # ------------------------------------------------------------- config
    def read_config(self) -> dict:
        """``config.json`` (ValueError naming the folder if absent)."""
        if not self.config_path.is_file():
            raise ValueError(f"model_dir {self.path!s} holds no {CONFIG_FILE}: not a DeepAlign "
                             "model folder, or training never started there")
        with open(self.config_path) as handle:
            return json.load(handle)

    def write_config(self, meta: dict) -> None:
        write_json_atomic(self.config_path, meta)

    def geometry(self, meta: dict | None = None) -> ModelGeometry:
        """Particle and input geometry and symmetry the model was trained for."""
        meta = self.read_config() if meta is None else meta
        pixel = meta.get("particle_pixel_size_a")
        if pixel is None:  # older folder: the TrainConfig's, when it was given
            pixel = (meta.get("config") or {}).get("pixel_size_a")
        input_pixel = meta.get("input_pixel_size_a") if pixel is not None else None
        return ModelGeometry(
            particle_box_px=int(meta["box_px"]),
            particle_pixel_size_a=None if pixel is None else float(pixel),
            input_box_px=None if meta.get("input_box_px") is None else int(meta["input_box_px"]),
            input_pixel_size_a=None if input_pixel is None else float(input_pixel),
            symmetry=str(meta.get("symmetry", "c1")))

    def check_particles(self, box_px: int, pixel_size_a: float | None, *,
                        meta: dict | None = None) -> None:
        """Refuse particles the model cannot take.

        Rules (ValueError naming the model folder):

        1. the particle box is the box the model was trained for (the images are
           Fourier-cropped from it to the network input);
        2. the particle pixel size is the model's (:func:`~..defaults.same_pixel_size`).
           Skipped (with a log line) when either is unknown: ``pixel_size_a`` None, or a
           folder written before the pixel size was recorded.
        """
        geometry = self.geometry(meta)
        model_pixel = geometry.particle_pixel_size_a
        misfit = particle_misfit(box_px, pixel_size_a, geometry.particle_box_px, model_pixel)
        if misfit == "box":
            raise ValueError(
                f"the particles have a {int(box_px)} px box but the model in {self.path} was "
                f"trained on {geometry.particle_box_px} px particles")
        if pixel_size_a is None or model_pixel is None:
            if self.path in _NOT_CHECKED:
                return
            _NOT_CHECKED.add(self.path)
            logger.info("model %s: pixel size %s, particles %s: pixel size not checked",
                        self.path, "not recorded" if model_pixel is None else
                        f"{model_pixel:g} A", "without pixel size" if pixel_size_a is None
                        else f"at {pixel_size_a:g} A/px")
            return
        if misfit == "pixel size":
            raise ValueError(
                f"the particles have {float(pixel_size_a):g} Å/px but the model in {self.path} "
                f"was trained on {model_pixel:g} Å/px particles ({geometry.particle_box_px} "
                "px box): use particles at the model's pixel size, or train a model for "
                "these particles")

    # ------------------------------------------------------------- reuse
    def format_version(self, meta: dict | None = None) -> int:
        """Format of the folder's ``config.json``: 1 for folders written before the version
        was recorded (they load for prediction, but record no fingerprint)."""
        meta = self.read_config() if meta is None else meta
        return int(meta.get("format_version") or 1)

    def fingerprint(self, meta: dict | None = None) -> dict | None:
        """What the model was trained for (:mod:`.fingerprint`); None for older folders."""
        meta = self.read_config() if meta is None else meta
        return meta.get("fingerprint")

    def check_reuse(self, fingerprint: dict, *, meta: dict | None = None) -> None:
        """Refuse to reuse or continue this folder's model for data of ``fingerprint``.

        Raises :class:`ModelMismatch` naming every field that differs
        (:func:`.fingerprint.fingerprint_differences`), or naming the format when the folder
        predates the fingerprint (format 1: nothing to compare with).
        """
        meta = self.read_config() if meta is None else meta
        recorded = self.fingerprint(meta)
        if recorded is None:
            raise ModelMismatch(self.path, [
                f"format (version {self.format_version(meta)} records no fingerprint of what "
                f"it was trained for; version {FORMAT_VERSION} does: it still predicts, but "
                "cannot be checked for reuse)"])
        differences = fingerprint_differences(recorded, fingerprint)
        if differences:
            raise ModelMismatch(self.path, differences)

    def clear(self) -> None:
        """Delete the folder's model files (networks, histories, config.json, regions.star),
        so that it can be trained again; other files are left alone."""
        paths = [self.config_path, self.regions_path, self.shared_model_path]
        paths += list(self.path.glob("history_*.json")) + list(self.path.glob("region_*.keras"))
        for path in paths:
            if path.exists():
                path.unlink()

    # ------------------------------------------------------------- regions
    def read_regions(self):
        """``(centres_deg (R, 2), symmetry, spacing_deg)`` of ``regions.star``."""
        from ..io import read_regions_star

        return read_regions_star(self.regions_path)

    def write_regions(self, centres_deg, *, symmetry: str, spacing_deg: float) -> None:
        """Write ``regions.star`` atomically unless it is there already."""
        from ..io import write_regions_star
        from ..runtime.atomic import atomic_path

        if self.regions_path.exists():
            return
        with atomic_path(self.regions_path, suffix=".star") as tmp:
            write_regions_star(str(tmp), centres_deg, symmetry=symmetry,
                               spacing_deg=spacing_deg)

    # ------------------------------------------------------------- histories
    def _history_records(self) -> dict:
        """Every ``history_*.json``: 1-based region (0 for the shared network) -> content."""
        records = {}
        for path in sorted(self.path.glob("history_*.json")):
            tag = path.stem[len("history_"):]
            records[int(tag) if tag.isdigit() else 0] = json.loads(path.read_text())
        return records

    def histories(self) -> dict:
        """Histories of the networks actually trained: 1-based region (0 for the shared
        network) -> the ``history_*.json`` content (skipped regions left out)."""
        return {key: history for key, history in self._history_records().items()
                if not history.get("skipped")}

    def is_skipped(self, region: int) -> bool:
        """Whether ``region`` was skipped at training for having too few particles."""
        path = self.history_path(region)
        if not path.exists():
            return False
        return bool(json.loads(path.read_text()).get("skipped"))

    def skipped_regions(self) -> list:
        """1-based regions skipped for too few particles."""
        return [key for key, history in self._history_records().items()
                if key and history.get("skipped")]

    def region_done(self, region: int) -> bool:
        """A region is done when its model exists or it was skipped for too few particles."""
        return self.model_path(region).exists() or self.is_skipped(region)

    def trained_regions(self) -> list:
        """1-based regions with a network of their own (regional networks)."""
        return sorted(key for key in self.histories() if key and self.model_path(key).exists())

    def best_accuracy(self) -> dict:
        """Held-out accuracy of each trained network (:func:`.history.best_validation_accuracy`):
        region (0: shared) -> accuracy; networks without validation data left out."""
        accuracy = {key: best_validation_accuracy(h) for key, h in self.histories().items()}
        return {key: value for key, value in accuracy.items() if value is not None}

    def n_regions(self, default: int | None = None) -> int:
        """Number of regions from ``config.json`` (``default`` when unreadable, if given)."""
        try:
            return int(self.read_config()["n_regions"])
        except (ValueError, KeyError, OSError):
            if default is None:
                raise
            return default

    def n_classes(self, meta: dict | None = None) -> int:
        """Classes of the network (``"n_classes"`` of ``config.json``; 1 when not recorded):
        its output has ``n_classes * n_regions`` columns (:mod:`.joint`)."""
        meta = self.read_config() if meta is None else meta
        return int(meta.get("n_classes") or 1)

    def class_output(self, meta: dict | None = None) -> str:
        """How the network makes its class x region output (``"class_output"`` of
        ``config.json``, :data:`~..defaults.CLASS_OUTPUTS`; ``"joint"`` when not recorded).
        ValueError naming the folder for a kind this version does not know."""
        meta = self.read_config() if meta is None else meta
        kind = meta.get("class_output") or "joint"
        if kind not in CLASS_OUTPUTS:
            raise ValueError(f"model folder {self.path} records the class output {kind!r}, "
                             f"which this DeepAlign does not know (it knows "
                             f"{', '.join(CLASS_OUTPUTS)}): a newer DeepAlign wrote it, or "
                             f"{CONFIG_FILE} was edited")
        return kind

    def near_chance_warnings(self) -> list:
        """:func:`.history.near_chance_warnings` of the trained networks."""
        histories = {("shared" if key == 0 else key): h for key, h in self.histories().items()}
        try:
            n_classes = self.n_classes()
        except ValueError:
            n_classes = 1
        return near_chance_warnings(histories, self.n_regions(default=1) * n_classes)
