"""The one-form DeepAlign path: train (or reuse a model) -> predict -> align."""
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles
from pwem.protocols import ProtRefine3D

from ..objects import DeepAlignModel
from .protocol_align import AlignSteps
from .protocol_base import DeepAlignProtBase
from .protocol_predict import PredictSteps, _modelGeometryErrors
from .protocol_train import TrainSteps

__all__ = ["DeepAlignProtRefine"]


class DeepAlignProtRefine(TrainSteps, AlignSteps, PredictSteps, DeepAlignProtBase, ProtRefine3D):
    """Angular assignment of a whole data set with DeepAlign in one protocol.

    Regional CNNs are trained on a pre-aligned subset (or a trained model is reused), the
    top-k regions of every particle are predicted, and angles and shifts are assigned by
    correlation with the reference inside those regions. Outputs: the aligned particles
    (ALIGN_PROJ at the input sampling, ``_deepalign_score``, ``_deepalign_region1..k``) and,
    when trained here, the model.
    """

    _label = "train, predict and align"

    class outputs(Enum):
        outputParticles = SetOfParticles
        outputModel = DeepAlignModel

    _possibleOutputs = outputs

    # ------------------------------------------------------------- params
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      important=True, label="Particles to align",
                      help="The whole data set; each particle gets angles and shifts. Poses "
                           "it may already carry are replaced.")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume",
                      important=True, label="Reference volume",
                      help="Same box and pixel size as the particles.")
        self._defineSymmetryParam(form)
        form.addParam("trainModel", params.BooleanParam, default=True,
                      label="Train a new model?",
                      help="Yes: train on a pre-aligned subset. No: reuse a trained model.")
        form.addParam("inputTrainingParticles", params.PointerParam,
                      pointerClass="SetOfParticles", condition="trainModel", allowsNull=True,
                      important=True,
                      label="Training particles",
                      help="About 10% of the particles, already aligned by another method "
                           "(needed to train from particles or both). Training from "
                           "projections needs none: the particles to align give the CTFs "
                           "and the noise.")
        form.addParam("inputModel", params.PointerParam, pointerClass="DeepAlignModel",
                      condition="not trainModel", allowsNull=True, important=True,
                      label="Trained model",
                      help="Output of a DeepAlign train (or train, predict and align) run "
                           "with the same symmetry and field of view.")
        form.addSection(label="Training")
        self._defineTrainParams(form, condition="trainModel")
        form.addSection(label="Alignment")
        self._definePredictParams(form)
        self._defineAlignParams(form)
        self._defineRegionSearchParams(form)
        self._defineComputeParams(form)

    # ------------------------------------------------------------- steps
    def _createFilenameTemplates(self):
        self._updateFilenamesDict({**self._trainFilenames(), **self._predictFilenames(),
                                   **self._alignFilenames()})

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        # every Scipion set is read in ONE serial step (sqlite is not thread-safe)
        convert = self._insertFunctionStep(self.convertInputsStep, needsGPU=False)
        trained = self._insertTrainSteps(convert) if self.trainModel.get() else []
        predict = self._insertFunctionStep(self.predictStep, prerequisites=trained + [convert],
                                           needsGPU=self._needsGpu())
        align = self._insertFunctionStep(self.alignStep, self._getFileName("predicted_star"),
                                         self._modelDir(), self._ctfMode(),
                                         prerequisites=[predict], needsGPU=self._needsGpu())
        self._insertFunctionStep(self.createOutputStep, prerequisites=[align], needsGPU=False)

    def convertInputsStep(self):
        if self.trainModel.get():
            self.convertTrainingStep()
        self.convertInputStep()
        self.convertVolumeStep()

    def createOutputStep(self):
        if self.trainModel.get():
            self._createModelOutput()
        self._createAlignedOutput(self.outputs)

    # ------------------------------------------------------------- utils
    def _projectionParticles(self):
        return self.inputParticles.get()

    def _usesInputModel(self):
        return not self.trainModel.get()

    # ------------------------------------------------------------- info
    def _validate(self):
        errors = self._symmetryErrors()
        model_symmetry = None
        if self.trainModel.get():
            errors += self._validateTraining()
            if not errors:
                errors += self._validatePrediction()
            train_set, particles = self.inputTrainingParticles.get(), self.inputParticles.get()
            if train_set is not None and particles is not None:
                errors += self._geometryMismatch("training particles", train_set,
                                                 "particles", particles)
        else:
            model = self.inputModel.get()
            if model is None:
                errors.append("Choose a trained model, or train a new one.")
            else:
                errors += self._validatePrediction()
                model_symmetry = model.getSymmetry()
                if self.inputParticles.get() is not None:
                    errors += _modelGeometryErrors(model, self.inputParticles.get())
        return errors + self._validateAlignment(model_symmetry)

    def _warnings(self):
        warnings = self._trainingWarnings() if self.trainModel.get() else []
        return warnings + self._alignmentWarnings()

    def _summary(self):
        self._createFilenameTemplates()
        lines = self._trainingReport(self._getFileName("model_dir")) if self.trainModel.get() \
            else []
        return lines + (self._alignmentReport() or ["Alignment not finished yet."])
