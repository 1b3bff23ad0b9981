"""Training of the regional classifiers (``deepalign train``), as a protocol and as the
mixin that :class:`~.protocol_refine.DeepAlignProtRefine` reuses."""
import os
from enum import Enum

import pyworkflow.protocol.params as params

from .. import constants as cts
from ..core import defaults
from ..core.cnn.model_folder import ModelFolder
from ..objects import DeepAlignModel
from .protocol_base import DeepAlignProtBase
from .train_params import define_train_params

__all__ = ["TrainSteps", "DeepAlignProtTrain"]


class TrainSteps:
    """Form section, steps, checks and summary of the training (mixin).

    The protocol using it has ``inputTrainingParticles`` and ``symmetryGroup`` parameters
    and derives from :class:`DeepAlignProtBase`.
    """

    # ------------------------------------------------------------- params
    def _defineTrainParams(self, form, *, condition=None):
        """Training parameters (:func:`.train_params.define_train_params`)."""
        define_train_params(form, condition=condition)

    # ------------------------------------------------------------- steps
    def _trainFilenames(self):
        return {"train_dir": self._getExtraPath("train"),
                "train_star": self._getExtraPath("train", "particles.star"),
                "train_reference": self._getExtraPath("train", "reference.mrc"),
                "model_dir": self._getExtraPath("model")}

    def _trainingSource(self):
        return defaults.TRAINING_SOURCES[self.trainingSource.get()]

    def _networkKind(self):
        return cts.NETWORK_KINDS[self.networkKind.get()]

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
        if self._networkKind() == "shared":
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
                "--target-resolution", self._targetResolution(),
                "--epochs", self.numberOfEpochs.get(),
                "--batch-size", self.batchSize.get(),
                "--positives", self.positivesPerRegion.get(),
                "--network", self._networkKind(),
                "--loss", defaults.LOSSES[self.lossFunction.get()],  # the core's name
                "--learning-rate", self.learningRate.get(),
                "--min-particles", self.minParticlesPerRegion.get(),
                "--images-per-epoch", self.imagesPerEpoch.get(),
                "--noise-ramp-epochs", self.noiseRampEpochs.get(),
                "--head", defaults.HEADS[self.networkHead.get()],
                "--label-softness", self.labelSoftness.get()]
        if self._networkKind() == "shared":
            args += ["--trunk", defaults.TRUNKS[self.networkTrunk.get()]]
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
        from ..core.cnn import checks

        source = self._trainingSource()
        train_set = self.inputTrainingParticles.get()
        errors = []
        if source != "particles" and self.inputVolume.get() is None:
            errors.append(f"Training from {source} needs the reference volume.")
        if source != "particles" and self._networkKind() != "shared":
            errors.append(f"Training from {source} trains the shared network: choose the "
                          "shared network, or train from particles.")
        if train_set is None:
            if source == "projections" and self._projectionParticles() is not None:
                return errors  # the particles to align give the CTFs and the noise
            return errors + ["Choose the training particles."]
        errors += self._emptySetErrors(training=self.inputTrainingParticles)
        volume = self.inputVolume.get()
        if source != "particles" and volume is not None:
            errors += self._geometryMismatch("reference volume", volume, "training particles",
                                             train_set)
        if source != "projections" and not train_set.hasAlignmentProj():
            errors.append("The training particles have no 3D projection alignment "
                          "(angles): align them first (e.g. RELION, cryoSPARC, Xmipp), or "
                          "train from projections of the reference volume.")
        try:  # the rules of deepalign train and of the core (core/cnn/checks.py)
            checks.check_spacing(self.regionSpacingDeg.get(), name="Region spacing")
        except ValueError as exc:
            errors.append(f"{exc}.")
        pixel, box = train_set.getSamplingRate(), train_set.getXDim()
        if pixel and box:
            try:
                self._networkInput(box, pixel)
            except ValueError as exc:
                errors.append(f"{exc}.")
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
        return ModelFolder(self._getFileName("model_dir")).near_chance_warnings()

    def _fewParticlesWarnings(self):
        """The regions wizard's rule and words (:func:`~..core.cnn.checks.regions_preview`), for
        the regional networks (the shared network skips no region)."""
        from ..core.cnn.checks import regions_preview

        train_set = self.inputTrainingParticles.get()
        if train_set is None or self._networkKind() == "shared":
            return []
        try:
            preview = regions_preview(self.regionSpacingDeg.get(), self.symmetryGroup.get(),
                                      n_particles=train_set.getSize(),
                                      min_particles_per_region=self.minParticlesPerRegion.get())
        except (ValueError, TypeError):
            return []
        return [preview.message()] if preview.too_few_particles else []

    # ------------------------------------------------------------- info
    def _trainingReport(self, model_dir):
        """Lines on trained regions, validation accuracy and time (empty before training):
        the model folder's numbers (:func:`~..core.cnn.summary.training_summary`)."""
        from ..core.cnn.summary import training_summary

        report = training_summary(model_dir)
        if not report["n_networks"]:
            return []
        skipped = report["skipped_regions"]
        lines = [f"Networks trained: {report['n_networks']}"
                 + (f" (regions skipped for too few particles: {skipped})" if skipped else "")]
        if "accuracy_mean" in report:
            lines.append(f"Validation accuracy: mean {report['accuracy_mean']:.3f}, min "
                         f"{report['accuracy_min']:.3f}")
        if "training_source" in report:
            lines.append(f"Trained from {report['training_source']}.")
        lines += [f"WARNING: {m}" for m in report["warnings"]]
        if "seconds_mean" in report:
            lines.append(f"Training time per network: {report['seconds_mean']:.1f} s "
                         f"(total {report['seconds_total']:.0f} s)")
        return lines

    def _targetResolution(self):
        """The form's target resolution as ``--target-resolution`` reads it (empty: auto)."""
        value = self.targetResolutionA.get()
        return defaults.TARGET_RESOLUTION if value in (None, "") else str(value)

    def _networkInput(self, box_px, pixel_size_a):
        """``(box, pixel size)`` of the network input, by the rules of ``deepalign train``
        (ValueError in the form's words)."""
        from ..core.cnn.checks import input_geometry
        from ..core.resolution import training_input

        resolution, box = training_input(self._targetResolution(), box_px,
                                         name="Target resolution")
        return input_geometry(box_px, pixel_size_a, target_resolution_a=resolution,
                              target_box_px=box, resolution_name="Target resolution")

    def _geometrySummary(self):
        train_set = self.inputTrainingParticles.get()
        try:
            box, pixel = self._networkInput(train_set.getXDim(), train_set.getSamplingRate())
            n_regions = self._numberOfRegions()
        except (ValueError, TypeError, AttributeError):
            return []
        return [f"Network input: {box} px at {pixel:.3g} A/px ({n_regions} regions)"]


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
