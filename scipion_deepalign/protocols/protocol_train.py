"""Training of the regional classifiers (``deepalign train``), as a protocol and as the
mixin that :class:`~.protocol_refine.DeepAlignProtRefine` reuses."""
import glob
import json
import os
from enum import Enum

import numpy as np
import pyworkflow.protocol.params as params

from .. import constants as cts
from ..core import defaults
from ..core.cnn.history import best_validation_accuracy, near_chance_warnings
from ..objects import DeepAlignModel
from .protocol_base import DeepAlignProtBase

__all__ = ["TrainSteps", "DeepAlignProtTrain"]


class TrainSteps:
    """Form section, steps, checks and summary of the training (mixin).

    The protocol using it has ``inputTrainingParticles`` and ``symmetryGroup`` parameters
    and derives from :class:`DeepAlignProtBase`.
    """

    # ------------------------------------------------------------- params
    def _defineTrainParams(self, form, *, condition=None):
        """Training parameters; defaults from the core's ``TrainConfig`` and ``defaults``.

        Parameters that only the regional network uses carry a condition on ``networkKind``
        (joined with ``condition``, the refine protocol's ``trainModel``).
        """
        regional = _both(condition, f"networkKind == {cts.REGIONAL}")
        shared = _both(condition, f"networkKind != {cts.REGIONAL}")
        form.addParam("trainingSource", params.EnumParam, condition=condition,
                      default=defaults.TRAINING_SOURCES.index(
                          defaults.train_default("training_source")),
                      choices=list(defaults.TRAINING_SOURCES), label="Train from",
                      help="projections (default): labelled images made from the reference "
                           "volume for every batch, at random angles, with the particles' own "
                           "CTFs and their measured noise; no pre-aligned subset is needed. "
                           "particles: the pre-aligned training particles (the paper's way; "
                           "their angles may be partly wrong). both: each batch mixes "
                           "projections with pre-aligned particles. Measured in "
                           "docs/benchmarks_accuracy.md.")
        form.addParam("regionSpacingDeg", params.FloatParam, default=defaults.REGION_SPACING_DEG,
                      condition=condition, label="Region spacing (deg)",
                      help="Angular distance between neighbouring region centres on the "
                           "projection sphere; the network learns which region a particle "
                           "comes from (the shared network has one output per region, the "
                           "regional networks one classifier each). 30 deg gives 42 regions "
                           "for c1; fewer with symmetry. Sane values: 5 to 90 deg.")
        form.addParam("targetResolutionA", params.FloatParam, default=8.0, condition=condition,
                      label="Target resolution (Å)",
                      help="Particles are Fourier-cropped so that Nyquist reaches this "
                           "resolution (smaller images, faster training); must be at least "
                           "twice the pixel size. The wizard shows the box it gives.")
        form.addParam("numberOfEpochs", params.IntParam, default=defaults.train_default("epochs"),
                      condition=condition, label="Max epochs",
                      help="Maximum passes over the training data per network; training stops "
                           "earlier when the validation loss has not improved for a few epochs "
                           "(the best weights are kept).")
        network = form.addGroup("Network", condition=condition,
                                expertLevel=params.LEVEL_ADVANCED)
        network.addParam("networkKind", params.EnumParam,
                         default=cts.NETWORK_KINDS.index(defaults.train_default("network")),
                         condition=condition, choices=list(cts.NETWORK_KINDS),
                         expertLevel=params.LEVEL_ADVANCED, label="Network",
                         help="shared (default): one network with a shared trunk and one "
                              "output per region, the more accurate and faster to train in our "
                              "benchmarks; regional: one binary classifier per region (the "
                              "paper's), trained in parallel steps, one per GPU.")
        network.addParam("lossFunction", params.EnumParam,
                         default=cts.LOSSES.index(defaults.train_default("loss")),
                         condition=condition, choices=cts.LOSS_CHOICES,
                         expertLevel=params.LEVEL_ADVANCED, label="Loss",
                         help="Binary cross-entropy (default) gave the better region accuracy; "
                              "mean absolute error is what Xmipp's code used and does not train "
                              "the shared network.")
        network.addParam("learningRate", params.FloatParam,
                         default=defaults.train_default("learning_rate"), condition=condition,
                         expertLevel=params.LEVEL_ADVANCED, label="Learning rate",
                         help="Step size of the Adam optimiser (the paper's 0.002 by default; "
                              "Xmipp's code used 0.001).")
        network.addParam("networkHead", params.EnumParam,
                         default=defaults.HEADS.index(defaults.train_default("head")),
                         choices=list(defaults.HEADS), condition=shared,
                         expertLevel=params.LEVEL_ADVANCED,
                         label="Output of the shared network",
                         help="softmax: one probability distribution over the regions, trained "
                              "with labels softened towards neighbouring regions (calibrated "
                              "probabilities); sigmoid: one independent probability per "
                              "region.")
        network.addParam("labelSoftness", params.FloatParam,
                         default=defaults.train_default("label_softness"), condition=shared,
                         expertLevel=params.LEVEL_ADVANCED, label="Label softness",
                         help="Width of the softened labels of the softmax output, as a "
                              "fraction of the region spacing (0: one-hot labels).")
        schedule = form.addGroup("Training schedule", condition=condition,
                                 expertLevel=params.LEVEL_ADVANCED)
        schedule.addParam("imagesPerEpoch", params.IntParam,
                          default=defaults.train_default("images_per_epoch"), condition=shared,
                          expertLevel=params.LEVEL_ADVANCED, label="Images per epoch",
                          help="Training images of the shared network per epoch (new "
                               "projections, or augmented particles).")
        schedule.addParam("batchSize", params.IntParam,
                          default=defaults.train_default("batch_size"), condition=condition,
                          expertLevel=params.LEVEL_ADVANCED, label="Batch size",
                          help="Images per training batch (half from the region, half from "
                               "elsewhere). Lower it if the GPU runs out of memory.")
        schedule.addParam("positivesPerRegion", params.IntParam,
                          default=defaults.train_default("positives_per_region"),
                          condition=condition, expertLevel=params.LEVEL_ADVANCED,
                          label="Augmented positives per region",
                          help="Rotated/shifted copies of a region's particles seen per epoch "
                               "(as many negatives), so an epoch costs the same whatever the "
                               "number of training particles.")
        schedule.addParam("minParticlesPerRegion", params.IntParam,
                          default=defaults.train_default("min_particles_per_region"),
                          condition=regional, expertLevel=params.LEVEL_ADVANCED,
                          label="Min particles per region",
                          help="Regional networks only: regions with fewer training particles "
                               "get no network (their probability is 0 at prediction).")
        schedule.addParam("regionsPerStep", params.IntParam, default=1, condition=regional,
                          expertLevel=params.LEVEL_ADVANCED, label="Regions per step",
                          help="Regional networks only: regions trained by one step (one "
                               "process, one GPU). 1 spreads the work most; more saves process "
                               "start-up time.")

    # ------------------------------------------------------------- steps
    def _trainFilenames(self):
        return {"train_dir": self._getExtraPath("train"),
                "train_star": self._getExtraPath("train", "particles.star"),
                "train_reference": self._getExtraPath("train", "reference.mrc"),
                "model_dir": self._getExtraPath("model")}

    def _trainingSource(self):
        return defaults.TRAINING_SOURCES[self.trainingSource.get()]

    def _trainingSetGiven(self):
        return self.inputTrainingParticles.get() is not None

    def _trainingStar(self):
        """The training particles, or (projections, no training set) the particles to
        align, which give the CTFs and the noise."""
        if self._trainingSetGiven():
            return self._getFileName("train_star")
        return self._getFileName("input_star")

    def _numberOfRegions(self):
        from ..core.regions import count_regions

        return count_regions(self.regionSpacingDeg.get(), self.symmetryGroup.get())

    def _regionChunks(self):
        if cts.NETWORK_KINDS[self.networkKind.get()] == "shared":
            return [[]]  # one step trains the shared network
        regions = list(range(1, self._numberOfRegions() + 1))
        size = max(1, self.regionsPerStep.get())
        return [regions[i:i + size] for i in range(0, len(regions), size)]

    def _insertTrainSteps(self, convert_step=None):
        """Serial conversion (unless ``convert_step``, a step that already converted the
        training set), then one parallel step per chunk of regions; returns their ids."""
        convert = convert_step
        if convert is None:
            convert = self._insertFunctionStep(self.convertTrainingStep, needsGPU=False)
        return [self._insertFunctionStep(self.trainRegionsStep, chunk,
                                         prerequisites=[convert], needsGPU=self._needsGpu())
                for chunk in self._regionChunks()]

    def convertTrainingStep(self):
        from ..convert import set_to_core, volume_to_core

        if self._trainingSetGiven():
            set_to_core(self.inputTrainingParticles.get(), self._getFileName("train_dir"))
        if self._trainingSource() != "particles":
            os.makedirs(self._getFileName("train_dir"), exist_ok=True)
            volume_to_core(self.inputVolume.get(), self._getFileName("train_reference"))

    def trainRegionsStep(self, regions):
        args = ["--particles", self._trainingStar(),
                "--training-source", self._trainingSource(),
                "--out", self._getFileName("model_dir"),
                "--symmetry", self.symmetryGroup.get(),
                "--spacing", self.regionSpacingDeg.get(),
                "--target-resolution", self.targetResolutionA.get(),
                "--epochs", self.numberOfEpochs.get(),
                "--batch-size", self.batchSize.get(),
                "--positives", self.positivesPerRegion.get(),
                "--network", cts.NETWORK_KINDS[self.networkKind.get()],
                "--loss", cts.LOSSES[self.lossFunction.get()],  # the core's name
                "--learning-rate", self.learningRate.get(),
                "--min-particles", self.minParticlesPerRegion.get(),
                "--images-per-epoch", self.imagesPerEpoch.get(),
                "--head", defaults.HEADS[self.networkHead.get()],
                "--label-softness", self.labelSoftness.get()]
        if self._trainingSource() != "particles":
            args += ["--volume", self._getFileName("train_reference")]
        if regions:
            args += ["--regions", ",".join(str(r) for r in regions)]
        self._runDeepAlign("train", args)

    def _createModelOutput(self):
        model = DeepAlignModel.fromModelDir(self._getFileName("model_dir"))
        self._defineOutputs(**{DeepAlignProtTrain.outputs.outputModel.name: model})
        if self._trainingSetGiven():
            self._defineSourceRelation(self.inputTrainingParticles, model)
        if self._trainingSource() != "particles":
            self._defineSourceRelation(self.inputVolume, model)
        return model

    # ------------------------------------------------------------- checks
    def _validateTraining(self):
        from ..core.projection import downsampled_geometry
        from ..core.regions import MAX_SPACING_DEG, MIN_SPACING_DEG

        source = self._trainingSource()
        train_set = self.inputTrainingParticles.get()
        errors = []
        if source != "particles" and self.inputVolume.get() is None:
            errors.append(f"Training from {source} needs the reference volume.")
        if source != "particles" and cts.NETWORK_KINDS[self.networkKind.get()] != "shared":
            errors.append(f"Training from {source} trains the shared network: choose the "
                          "shared network, or train from particles.")
        if train_set is None:
            if source == "projections" and self._projectionParticles() is not None:
                return errors  # the particles to align give the CTFs and the noise
            return errors + ["Choose the training particles."]
        errors += self._emptySetErrors(training=self.inputTrainingParticles)
        if source != "projections" and not train_set.hasAlignmentProj():
            errors.append("The training particles have no 3D projection alignment "
                          "(angles): align them first (e.g. RELION, cryoSPARC, Xmipp), or "
                          "train from projections of the reference volume.")
        spacing = self.regionSpacingDeg.get()
        if spacing is None or not MIN_SPACING_DEG <= spacing <= MAX_SPACING_DEG:
            errors.append(f"Region spacing must be between {MIN_SPACING_DEG:g} and "
                          f"{MAX_SPACING_DEG:g} deg, got {spacing}.")
        pixel, box = train_set.getSamplingRate(), train_set.getXDim()
        if pixel and box:
            try:
                downsampled_geometry(box, pixel, self.targetResolutionA.get())
            except ValueError:
                errors.append(f"Target resolution {self.targetResolutionA.get():g} A cannot "
                              f"be reached with {pixel:g} A pixels (Nyquist "
                              f"{2 * pixel:g} A): choose at least {2 * pixel:g} A.")
        for name in ("numberOfEpochs", "batchSize", "positivesPerRegion", "regionsPerStep",
                     "minParticlesPerRegion"):
            if getattr(self, name).get() < 1:
                errors.append(f"{self.getParam(name).label.get()} must be at least 1.")
        return errors

    def _projectionParticles(self):
        """Particles that may stand in for the training set (None in the Train protocol)."""
        return None

    def _trainingWarnings(self):
        return self._trainedNearChance() + self._fewParticlesWarnings()

    def _trainedNearChance(self):
        """After training: the networks whose held-out accuracy is near chance."""
        self._createFilenameTemplates()
        model_dir = self._getFileName("model_dir")
        trained = [h for h in self._readHistories(model_dir) if not h.get("skipped")]
        return near_chance_warnings({h["region"]: h for h in trained},
                                    self._modelRegions(model_dir))

    @staticmethod
    def _readHistories(model_dir):
        histories = []
        for path in sorted(glob.glob(os.path.join(model_dir, "history_*.json"))):
            with open(path) as fh:
                histories.append(json.load(fh))
        return histories

    def _fewParticlesWarnings(self):
        train_set = self.inputTrainingParticles.get()
        try:
            n_regions = self._numberOfRegions()
        except (ValueError, TypeError):
            return []
        if train_set is None or cts.NETWORK_KINDS[self.networkKind.get()] == "shared":
            return []
        per_region = train_set.getSize() / n_regions
        if per_region < 2 * self.minParticlesPerRegion.get():
            return [f"Only {per_region:.0f} training particles per region on average "
                    f"({train_set.getSize()} for {n_regions} regions): regions with fewer "
                    f"than {self.minParticlesPerRegion.get()} get no network. Use more "
                    "particles or a larger spacing."]
        return []

    # ------------------------------------------------------------- info
    def _trainingReport(self, model_dir):
        """Lines on trained regions, validation accuracy and time (empty before training)."""
        histories = self._readHistories(model_dir)
        trained = [h for h in histories if not h.get("skipped")]
        skipped = [h.get("region") for h in histories if h.get("skipped")]
        if not trained:
            return []
        lines = [f"Networks trained: {len(trained)}"
                 + (f" (regions skipped for too few particles: {skipped})" if skipped else "")]
        acc = [best_validation_accuracy(h) for h in trained if h.get("val_accuracy")]
        if acc:
            lines.append(f"Validation accuracy: mean {np.mean(acc):.3f}, min {np.min(acc):.3f}")
        if trained and trained[0].get("training_source"):
            lines.append(f"Trained from {trained[0]['training_source']}.")
        lines += [f"WARNING: {m}" for m in near_chance_warnings(
            {h["region"]: h for h in trained}, self._modelRegions(model_dir))]
        secs = [h["seconds"] for h in trained if "seconds" in h]
        if secs:
            lines.append(f"Training time per network: {np.mean(secs):.1f} s "
                         f"(total {np.sum(secs):.0f} s)")
        return lines

    @staticmethod
    def _modelRegions(model_dir):
        from ..core.cnn.config import read_model_config

        try:
            return int(read_model_config(model_dir)["n_regions"])
        except (ValueError, KeyError, OSError):
            return 1

    def _geometrySummary(self):
        from ..core.projection import downsampled_geometry

        train_set = self.inputTrainingParticles.get()
        try:
            box, pixel = downsampled_geometry(train_set.getXDim(), train_set.getSamplingRate(),
                                              self.targetResolutionA.get())
            n_regions = self._numberOfRegions()
        except (ValueError, TypeError, AttributeError):
            return []
        return [f"Network input: {box} px at {pixel:.3g} A/px ({n_regions} regions)"]


def _both(*conditions):
    """``"a and b"`` of the conditions that are not None (None when none is)."""
    given = [f"({c})" for c in conditions if c]
    return " and ".join(given) or None


class DeepAlignProtTrain(TrainSteps, DeepAlignProtBase):
    """Train DeepAlign's regional classifiers on particles with known angles.

    The projection sphere (its asymmetric unit) is cut into regions; a CNN per region learns
    to tell its particles from the rest. The trained model is an output that the predict,
    align and refine protocols can reuse.
    """

    _label = "train"

    class outputs(Enum):
        outputModel = DeepAlignModel

    _possibleOutputs = outputs

    # ------------------------------------------------------------- params
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputTrainingParticles", params.PointerParam,
                      pointerClass="SetOfParticles", important=True,
                      label="Training particles",
                      help="Training from particles: a subset (about 10%) of the particles "
                           "already aligned in 3D by another method. Training from "
                           "projections: any particles of the data set, no angles needed "
                           "(they give the CTFs and the noise that the projections get).")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume",
                      allowsNull=True, label="Reference volume",
                      help="Needed to train from projections (or both): the map the "
                           "alignment will use, same box and pixel size as the particles.")
        self._defineSymmetryParam(form)
        form.addSection(label="Training")
        self._defineTrainParams(form)
        self._defineComputeParams(form)

    # ------------------------------------------------------------- steps
    def _createFilenameTemplates(self):
        self._updateFilenamesDict(self._trainFilenames())

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        trained = self._insertTrainSteps()
        self._insertFunctionStep(self.createOutputStep, prerequisites=trained, needsGPU=False)

    def createOutputStep(self):
        self._createModelOutput()

    # ------------------------------------------------------------- info
    def _validate(self):
        return self._symmetryErrors() + self._validateTraining()

    def _warnings(self):
        return self._trainingWarnings()

    def _summary(self):
        self._createFilenameTemplates()
        lines = self._trainingReport(self._getFileName("model_dir"))
        if not lines:
            return ["Training not finished yet."] + self._geometrySummary()
        return lines + self._geometrySummary()

    def _methods(self):
        if not self.hasAttribute("outputModel"):
            return []
        model = self.outputModel
        source = self._trainingSource()
        data = (f"{self.inputTrainingParticles.get().getSize()} aligned particles"
                if source == "particles" else f"projections of the reference volume ({source})")
        return [f"Regional CNNs (DeepAlign, [{cts.CITE_DEEPALIGN}]) were trained on {data} "
                f"for {model.getNumberOfRegions()} regions {model.getSpacingDeg():g} deg "
                f"apart (symmetry {model.getSymmetry()})."]
