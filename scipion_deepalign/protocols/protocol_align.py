"""Correlation alignment inside the predicted regions (``deepalign align``), as a protocol
and as the mixin the refine protocol reuses."""
import os
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles
from pwem.protocols import ProtRefine3D

from .. import constants as cts
from ..core import defaults
from ..objects import DeepAlignModel
from .protocol_align_form import CTF_HANDLING, AlignForm
from .protocol_base import RESULT_COLUMNS, DeepAlignProtBase, hints_model_dir, region_hints_count
from .protocol_parts import PartSteps
from .protocol_predict import PredictSteps, _modelGeometryErrors
from .protocol_streaming import StreamSteps

__all__ = ["AlignSteps", "DeepAlignProtAlign", "CTF_HANDLING"]

#: references per particle above which an automatic angular step is worth a warning: a
#: search whose cost the user should choose (search resolution or step) rather than accept
MAX_REFERENCES_QUIETLY = 200_000

class AlignSteps(AlignForm):
    """Steps, checks and summary of the alignment (mixin; the form is :class:`AlignForm`).

    The protocol using it has ``inputParticles``, ``inputVolume``, ``symmetryGroup``,
    ``angularStepDeg`` and ``maxShiftPx`` parameters.
    """

    def _alignFilenames(self):
        return {"reference": self._getExtraPath("reference.mrc"),
                "aligned_star": self._getExtraPath("aligned.star"),
                "align_report": self._getExtraPath("alignment_summary.json")}

    def convertVolumeStep(self):
        from ..convert import volume_to_core

        volume_to_core(self.inputVolume.get(), self._getFileName("reference"))

    def alignStep(self, particles_star, model_dir, ctf_mode="apply", part=None, out_star=None):
        """``model_dir`` None: global search over the asymmetric unit. ``ctf_mode`` "flipped"
        for phase-flipped particles (decided in ``_insertAllSteps``: no set is read here).
        ``part`` "I/N": only that part (see :class:`PartSteps`); ``out_star`` default: the
        aligned STAR."""
        args = ["--particles", particles_star,
                "--volume", self._getFileName("reference"),
                "--symmetry", self.symmetryGroup.get(),
                "--device", "auto" if self._gpuIds() else "cpu",
                "--ctf-mode", ctf_mode]
        args += (["--out", out_star or self._getFileName("aligned_star")] if part is None
                 else self._partWords(part, out_star))
        args += ["--global"] if model_dir is None else ["--model", model_dir,
                                                        *self._regionSearchArgs()]
        self._runDeepAlign("align", args + self._searchArgs())

    def _createAlignedOutput(self, outputs_enum):
        particles = self.inputParticles.get()
        out = self._particlesWithResults(particles, self._getFileName("aligned_star"),
                                         poses=True, score=True, top_k=None)
        self._defineOutputs(**{outputs_enum.outputParticles.name: out})
        return self._finishAlignedOutput(out)

    def _finishAlignedOutput(self, out):
        """Relations and report of the aligned output (also of a streamed one, once closed).

        The report's numbers are those ``deepalign align`` wrote beside its output
        (``aligned.summary.json``); an alignment in parts or stream batches is summarised
        over its result files by the same core function
        (:func:`~..core.align.summary.alignment_summary`), not by reading the sets again.
        """
        from ..core.io import read_json, read_particles_star, summary_path, write_json

        self._defineSourceRelation(self.inputParticles, out)
        self._defineSourceRelation(self.inputVolume, out)
        stars = self._alignResultStars()
        if len(stars) == 1 and os.path.exists(summary_path(stars[0])):
            report = read_json(summary_path(stars[0]))
        else:
            from ..core.align.summary import alignment_summary

            report = alignment_summary([read_particles_star(p).extra for p in stars])
        report.update(n_aligned=out.getSize(), n_input=self.inputParticles.get().getSize())
        write_json(self._getFileName("align_report"), report)
        return out

    def _alignResultStars(self):
        """The STAR files with this run's alignment results (one, or one per stream batch)."""
        aligned = self._getFileName("aligned_star")
        if os.path.exists(aligned):
            return [aligned]
        if hasattr(self, "_streamResultStars"):  # streaming: the batches have files of their own
            return [p for p in self._streamResultStars() if os.path.exists(p)]
        return []

    def _alignmentReport(self):
        from ..core.io import read_json

        path = self._getFileName("align_report")
        if not os.path.exists(path):
            return []
        report = read_json(path)
        score = report.get("median_score")
        lines = [f"Aligned {report['n_aligned']} of {report['n_input']} particles"
                 + (f"; median correlation score {score:.3f}." if score is not None else ".")]
        if "regions_searched" in report:
            lines.append(f"Regions searched per particle: {report['regions_searched']:.2f} on "
                         f"average; {100 * report['global_search']:.1f} % of the particles "
                         "were searched globally (unsure prediction, or a best pose of low "
                         "significance).")
        if "median_significance" in report:
            lines.append("Median significance of the poses: "
                         f"{report['median_significance']:.2f} (about 1: no more than the "
                         "best of noise scores).")
        if "median_direction_change_deg" in report:
            lines.append("Median change of projection direction from the input alignment: "
                         f"{report['median_direction_change_deg']:.1f} deg.")
        if "resolution" in report:  # which resolution, and why (deepalign align's words)
            refine = report.get("refine_box_px")
            lines.append(f"Resolution: {report['resolution']}; {report['search_box_px']} px "
                         "search box" + (f", {refine} px refinement box." if refine else "."))
        return lines

    def _alignmentWarnings(self):
        particles = self.inputParticles.get()
        warnings = self._searchCostWarnings(particles) if particles is not None else []
        if particles is not None and not particles.hasCTF():
            warnings.append("The particles have no CTF: they are compared with plain "
                            "projections.")
        return warnings

    def searchCost(self, step_deg=None):
        """:class:`~..core.align.cost.SearchCost` per particle of this form's search with
        ``step_deg`` (None: the automatic step): what the warning below and the angular step
        wizard report. ValueError when the input particles are not selected."""
        from ..core.align.cost import search_cost

        particles = self.inputParticles.get()
        if particles is None:
            raise ValueError("Select the input particles first.")
        n_regions = self._searchRegionCount()
        return search_cost(
            particles.getXDim() or particles.getDimensions()[0], particles.getSamplingRate(),
            symmetry=self.symmetryGroup.get(), step_deg=step_deg,
            target_resolution_a=self.searchResolutionA(),
            max_shift_px=self.maxShiftPx.get(), n_regions=n_regions,
            top_k=self.getAttributeValue("topK", defaults.TOP_K) if n_regions else None,
            refine=self.getAttributeValue("localRefinement", defaults.REFINE))

    def searchResolutionA(self):
        """The search resolution in Å this form's alignment uses (None: the full box): auto
        is estimated from the input volume as ``deepalign align`` does (None when the volume
        cannot be read yet). ValueError in the form's words for a bad value."""
        from ..core.resolution import parse_target_resolution, search_resolution

        value = parse_target_resolution(self._searchResolution(), name="Search resolution")
        if value != defaults.TARGET_RESOLUTION:
            return None if value == defaults.FULL_RESOLUTION else value
        try:
            from ..core.io import read_volume

            volume, _ = read_volume(self.inputVolume.get().getFileName())
            return search_resolution(value, volume=volume, pixel_size_a=self.inputParticles
                                     .get().getSamplingRate()).search_a
        except (ValueError, TypeError, AttributeError, OSError):
            return None

    def _searchCostWarnings(self, particles):
        """A warning when the automatic angular step means a very large search."""
        if self.angularStepDeg.get() is not None:
            return []
        try:
            cost = self.searchCost()
        except (ValueError, TypeError, AttributeError, OSError):
            return []  # reported by _validate
        if cost.references <= MAX_REFERENCES_QUIETLY:
            return []
        return [f"The automatic angular step is {cost.step_deg:.2g} deg on "
                f"{cost.search_box_px} px images: about {cost.references:,} references per "
                "particle. Set a search resolution or an angular step (their wizards give the "
                "box and the cost)."]

    def _searchRegionCount(self):
        """Regions of the model searched (None: a global search, or unknown)."""
        from ..core.regions import count_regions

        if self.getAttributeValue("globalSearch", False):
            return None
        if self.getAttributeValue("trainModel", False):
            return count_regions(self.regionSpacingDeg.get(), self.symmetryGroup.get())
        model = self.inputModel.get() if self._usesInputModel() else None
        if model is None:
            model_dir = hints_model_dir(self.inputParticles.get())
            model = DeepAlignModel.fromModelDir(model_dir) if model_dir else None
        return model.getNumberOfRegions() if model is not None else None

    def _validateAlignment(self, model_symmetry=None):
        from ..core.symmetry import normalise_symmetry

        errors = self._emptySetErrors(input=self.inputParticles)
        particles, volume = self.inputParticles.get(), self.inputVolume.get()
        if particles is not None and volume is not None:
            errors += self._geometryMismatch("reference volume", volume, "particles",
                                             particles)
        errors += self._searchParamErrors(particles)
        if model_symmetry:
            try:
                if normalise_symmetry(model_symmetry) != normalise_symmetry(
                        self.symmetryGroup.get()):
                    errors.append(f"The model was trained for symmetry {model_symmetry}, "
                                  f"not {self.symmetryGroup.get()}.")
            except ValueError:
                pass  # reported by _symmetryErrors
        return errors


class DeepAlignProtAlign(StreamSteps, PartSteps, AlignSteps, PredictSteps, DeepAlignProtBase,
                         ProtRefine3D):
    """Assign angles and shifts by correlation with a reference, searching only the regions
    DeepAlign predicted for each particle.

    The regions come from the particles (output of DeepAlign predict) or are predicted on
    the fly with a trained model. Output: the particles with a 3D alignment (ALIGN_PROJ, at
    the input sampling) and ``_deepalign_score``.
    """

    _label = "align"

    class outputs(Enum):
        outputParticles = SetOfParticles

    _possibleOutputs = outputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      important=True, label="Particles",
                      help="Particles with predicted regions (DeepAlign predict), or any "
                           "particles when a trained model is given.")
        form.addParam("inputModel", params.PointerParam, pointerClass="DeepAlignModel",
                      allowsNull=True, label="Trained model (optional)",
                      help="If given, the regions are predicted now with this model (the "
                           "particles' own predicted regions are not used).")
        # without a model the particles' own hints are searched, all k of them
        self._definePredictParams(form, condition="inputModel is not None")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume",
                      important=True, label="Reference volume",
                      help="Same box and pixel size as the particles; the angles found are "
                           "those of this map's projections.")
        self._defineSymmetryParam(form)
        form.addSection(label="Alignment")
        self._defineAlignParams(form, allow_global=True)
        self._defineRegionSearchParams(form, condition="not globalSearch")
        self._defineComputeParams(form, threads=1)
        self._definePartParams(form)
        self._defineStreamParams(form)

    def _createFilenameTemplates(self):
        self._updateFilenamesDict({**self._predictFilenames(), **self._alignFilenames()})

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        volume = self._insertFunctionStep(self.convertVolumeStep, needsGPU=False)
        if self._isInputStreaming():
            self._insertStreamStep([volume])
            return
        convert = self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        before = [convert, volume]
        star = self._getFileName("input_star")
        if self._usesInputModel() and not self.globalSearch.get():
            star = self._getFileName("predicted_star")
            before = [self._insertPartSteps(self.predictStep, [], star, before)]
        align = self._insertPartSteps(self.alignStep,
                                      [star, self._alignModelDir(), self._ctfMode()],
                                      self._getFileName("aligned_star"), before)
        self._insertFunctionStep(self.createOutputStep, prerequisites=[align], needsGPU=False)

    def convertInputStep(self):
        from ..convert import set_to_core

        set_to_core(self.inputParticles.get(), self._getFileName("input_dir"),
                    extra_attributes=self._streamConvertAttributes())

    def createOutputStep(self):
        self._createAlignedOutput(self.outputs)

    # ------------------------------------------------------------- streaming hooks
    def _streamConvertAttributes(self):
        """Item attributes -> STAR columns: the region hints of the input, when used."""
        extra = {}
        if not self._usesInputModel() and not self.globalSearch.get():
            for j in range(1, region_hints_count(self.inputParticles.get()) + 1):
                extra[cts.REGION_ATTR % j] = RESULT_COLUMNS["region"] % j
                extra[cts.REGION_PROB_ATTR % j] = RESULT_COLUMNS["region_prob"] % j
        return extra

    def _streamProcess(self, particles_star, result_star, folder):
        if self._usesInputModel() and not self.globalSearch.get():
            predicted = os.path.join(folder, "predicted.star")
            self.predictStep(out_star=predicted, particles_star=particles_star)
            particles_star = predicted
        self.alignStep(particles_star, self._alignModelDir(), self._ctfMode(),
                       out_star=result_star)

    def _streamResultOptions(self):
        return {"poses": True, "score": True, "top_k": None}

    def _streamFinish(self, out):
        self._finishAlignedOutput(out)

    # ------------------------------------------------------------- utils
    def _alignModelDir(self):
        if self.globalSearch.get():
            return None
        if self._usesInputModel():
            return self._modelDir()
        return hints_model_dir(self.inputParticles.get())

    # ------------------------------------------------------------- info
    def _validate(self):
        errors = self._symmetryErrors()
        particles = self.inputParticles.get()
        model = self.inputModel.get() if self._usesInputModel() else None
        symmetry = None
        if model is not None:
            errors += self._validatePrediction()
            if particles is not None:
                errors += _modelGeometryErrors(model, particles)
            symmetry = model.getSymmetry()
        elif particles is not None and not self.globalSearch.get():
            model_dir = hints_model_dir(particles)
            if not region_hints_count(particles) or not model_dir:
                errors.append("The particles carry no predicted regions (run DeepAlign "
                              "predict on them first) and no trained model was given.")
            else:
                try:
                    symmetry = DeepAlignModel.fromModelDir(model_dir).getSymmetry()
                except (ValueError, OSError) as exc:
                    errors.append(f"The model of the particles' predicted regions is not "
                                  f"readable: {exc}")
        return errors + self._validateAlignment(symmetry) + self._partErrors() + \
            self._streamErrors()

    def _warnings(self):
        return self._alignmentWarnings()

    def _summary(self):
        self._createFilenameTemplates()
        return (self._alignmentReport() or ["Alignment not finished yet."]) + \
            self._partsSummary() + self._streamSummary()
