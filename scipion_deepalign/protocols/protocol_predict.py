"""Region prediction with a trained model (``deepalign predict``), as a protocol and as the
mixin the align and refine protocols reuse."""
import os
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles

from ..core import defaults
from .protocol_base import DeepAlignProtBase
from .protocol_parts import PartSteps
from .protocol_streaming import StreamSteps

__all__ = ["PredictSteps", "DeepAlignProtPredict"]


class PredictSteps:
    """Form piece, steps and checks of the region prediction (mixin).

    The protocol using it has ``inputParticles`` and ``topK`` parameters and a model folder
    from :meth:`DeepAlignProtBase._modelDir`.
    """

    def _definePredictParams(self, form, *, condition=None):
        form.addParam("topK", params.IntParam, default=defaults.TOP_K, condition=condition,
                      label="Regions kept per particle (k)",
                      help="The k most probable regions of each particle are kept with their "
                           "probabilities. The alignment searches them, best first, until "
                           "their probabilities add up to its probability mass (or all k "
                           "when that is off). Paper and Xmipp: 2.")

    def _predictFilenames(self):
        return {"input_dir": self._getExtraPath("input"),
                "input_star": self._getExtraPath("input", "particles.star"),
                "predicted_star": self._getExtraPath("predicted.star"),
                "predict_report": self._getExtraPath("prediction_summary.json")}

    def convertInputStep(self):
        from ..convert import set_to_core

        set_to_core(self.inputParticles.get(), self._getFileName("input_dir"))

    def predictStep(self, part=None, out_star=None, particles_star=None):
        """The converted input (or ``particles_star``), all of it or ``part`` "I/N" (see
        :class:`PartSteps`), into ``out_star`` (default: the predicted STAR)."""
        out = self._partWords(part, out_star) if part is not None \
            else ["--out", out_star or self._getFileName("predicted_star")]
        self._runDeepAlign("predict", [
            "--particles", particles_star or self._getFileName("input_star"),
            "--model", self._modelDir(),
            "--top-k", self.topK.get(), *out])

    def _validatePrediction(self):
        """Errors about ``topK`` (a most: more than the model's regions keeps them all)."""
        k = self.topK.get()
        if k is None or k < 1:
            return ["The number of regions kept per particle (k) must be at least 1."]
        return []

    def _predictionReport(self, result_stars):
        """The prediction's numbers: those ``deepalign predict`` wrote beside its output, or
        (parts, stream batches) the same core summary of the result files."""
        from ..core.io import read_json, read_particles_star, summary_path

        if len(result_stars) == 1 and os.path.exists(summary_path(result_stars[0])):
            return read_json(summary_path(result_stars[0]))
        from ..core.cnn.summary import prediction_summary

        return prediction_summary([read_particles_star(p).extra for p in result_stars])

    @staticmethod
    def _predictionLines(report):
        """Summary lines on predicted regions: how many distinct, mean top probability."""
        if not report.get("n_predicted"):
            return []
        return [f"{report['n_predicted']} particles: top region probability mean "
                f"{report['top_probability_mean']:.3f}, median "
                f"{report['top_probability_median']:.3f}; {report['regions_first']} regions "
                f"predicted first (largest holds {report['largest_region_count']} particles)."]


class DeepAlignProtPredict(StreamSteps, PartSteps, PredictSteps, DeepAlignProtBase):
    """Predict the k most likely angular regions of every particle with a trained model.

    Output particles carry ``_deepalign_region1..k`` (1-based region numbers of the model's
    ``regions.star``) and ``_deepalign_regionProb1..k``; the align protocol searches there.
    """

    _label = "predict regions"

    class outputs(Enum):
        outputParticles = SetOfParticles

    _possibleOutputs = outputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      important=True, label="Particles",
                      help="Particles whose angular regions are predicted; same field of "
                           "view (box x pixel size) as the model's training particles.")
        form.addParam("inputModel", params.PointerParam, pointerClass="DeepAlignModel",
                      important=True, label="Trained model",
                      help="Output of the DeepAlign train (or refine) protocol.")
        self._definePredictParams(form)
        self._defineComputeParams(form, threads=1)
        self._definePartParams(form)
        self._defineStreamParams(form)

    def _createFilenameTemplates(self):
        self._updateFilenamesDict(self._predictFilenames())

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        if self._isInputStreaming():
            self._insertStreamStep([])
            return
        convert = self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        predict = self._insertPartSteps(self.predictStep, [],
                                        self._getFileName("predicted_star"), [convert])
        self._insertFunctionStep(self.createOutputStep, prerequisites=[predict],
                                 needsGPU=False)

    def createOutputStep(self):
        out = self._particlesWithResults(self.inputParticles.get(),
                                         self._getFileName("predicted_star"),
                                         top_k=None, model_dir=self._modelDir())
        self._defineOutputs(**{self.outputs.outputParticles.name: out})
        self._streamFinish(out)

    def _streamFinish(self, out):
        """Relations and report of the output (also of a streamed one, once closed)."""
        self._defineSourceRelation(self.inputParticles, out)
        self._defineSourceRelation(self.inputModel, out)
        from ..core.io import write_json

        stars = [self._getFileName("predicted_star")]
        if not os.path.exists(stars[0]) and hasattr(self, "_streamResultStars"):
            stars = [p for p in self._streamResultStars() if os.path.exists(p)]
        write_json(self._getFileName("predict_report"), self._predictionReport(stars))

    # ------------------------------------------------------------- streaming hooks
    def _streamProcess(self, particles_star, result_star, folder):
        self.predictStep(out_star=result_star, particles_star=particles_star)

    def _streamResultOptions(self):
        return {"top_k": None}  # k is a most: the columns the file has

    def _streamConvertAttributes(self):
        return {}

    def _streamModelDir(self):
        return self._modelDir()

    def _validate(self):
        errors = self._emptySetErrors(input=self.inputParticles)
        errors += self._partErrors() + self._streamErrors()
        model = self.inputModel.get()
        particles = self.inputParticles.get()
        if model is not None:
            errors += self._validatePrediction()
            if particles is not None:
                errors += _modelGeometryErrors(model, particles)
        return errors

    def _summary(self):
        self._createFilenameTemplates()
        path = self._getFileName("predict_report")
        if not os.path.exists(path):
            return ["Prediction not finished yet."] + self._partsSummary()
        from ..core.io import read_json

        return (self._predictionLines(read_json(path)) + self._partsSummary()
                + self._streamSummary())


def _modelGeometryErrors(model, particles):
    """Particles must have the box and pixel size the model was trained on (the rule of
    ``deepalign predict``: :func:`~..core.cnn.model_folder.particle_misfit`)."""
    from ..core.cnn.model_folder import particle_misfit

    box, pixel = particles.getXDim(), particles.getSamplingRate()
    m_box, m_pixel = model.getParticleBoxPx(), model.getParticlePixelSizeA()
    if not (box and pixel and m_box and m_pixel):
        return []
    if particle_misfit(box, pixel, m_box, m_pixel):
        return [f"The particles ({box} px at {pixel:g} A) do not have the field of view the "
                f"model was trained on ({m_box} px at {m_pixel:g} A): train a model for "
                "these particles."]
    return []
