"""Correlation alignment inside the predicted regions (``deepalign align``), as a protocol
and as the mixin the refine protocol reuses."""
import json
import os
from enum import Enum

import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles

from .. import constants as cts
from ..objects import DeepAlignModel
from .protocol_base import DeepAlignProtBase, hints_model_dir, region_hints_count
from .protocol_parts import PartSteps
from .protocol_predict import PredictSteps, _modelGeometryErrors
from .protocol_streaming import StreamSteps

__all__ = ["AlignSteps", "DeepAlignProtAlign", "CTF_HANDLING"]

#: references per particle above which an automatic angular step is worth a warning (the old
#: GUI default, 5 deg in two of 42 regions, was about 6,000)
MAX_REFERENCES_QUIETLY = 200_000

#: the alignment form's CTF choices (GUI words -> ``deepalign align --ctf-mode``); particles
#: marked phase-flipped always get the core's "flipped"
CTF_HANDLING = {"apply the CTF to the references": "apply",
                "phase-flip the particles": "flip"}


class AlignSteps:
    """Form piece, steps, checks and summary of the alignment (mixin).

    The protocol using it has ``inputParticles``, ``inputVolume``, ``symmetryGroup``,
    ``angularStepDeg`` and ``maxShiftPx`` parameters.
    """

    def _defineAlignParams(self, form, *, allow_global=False):
        """Search parameters; empty fields take the defaults of ``deepalign align``."""
        if allow_global:
            form.addParam("globalSearch", params.BooleanParam, default=False,
                          expertLevel=params.LEVEL_ADVANCED,
                          label="Global search (baseline)?",
                          help="Search the whole asymmetric unit instead of the predicted "
                               "regions: slower, no model needed; a reference to judge "
                               "DeepAlign against.")
        form.addParam("angularStepDeg", params.FloatParam, default=None, allowsNull=True,
                      label="Angular step (deg)",
                      help="Spacing of the reference projections inside the chosen regions "
                           "(and of the in-plane search). Empty: the step that moves a point "
                           "at the particle radius by one pixel of the search images (fine "
                           "on large boxes: set a search resolution or a step). The wizard "
                           "gives the number of references and comparisons per particle.")
        form.addParam("maxShiftPx", params.FloatParam, default=None, allowsNull=True,
                      label="Max shift (px)",
                      help="Largest particle shift searched, in pixels of the input "
                           "particles; at most half the box. Empty: 1/8 of the box. The "
                           "wizard converts Å to pixels.")
        form.addParam("alignResolutionA", params.FloatParam, default=None, allowsNull=True,
                      expertLevel=params.LEVEL_ADVANCED, label="Search resolution (Å)",
                      help="Compare images downsampled to this resolution (faster); the "
                           "shifts are still given at the input sampling. Empty: full size. "
                           "The wizard shows the box it gives.")
        form.addParam("localRefinement", params.BooleanParam, default=False,
                      expertLevel=params.LEVEL_ADVANCED, label="Local refinement?",
                      help="Refine each pose below the angular step (local search of the "
                           "angles, half-pixel shifts).")
        form.addParam("ctfHandling", params.EnumParam, default=0,
                      choices=list(CTF_HANDLING), expertLevel=params.LEVEL_ADVANCED,
                      label="CTF handling",
                      help="How particles with a CTF are compared. Apply: the CTF is put on "
                           "the reference projections (|CTF| when the particles are marked "
                           "phase-flipped). Phase-flip: the particles are phase-flipped "
                           "first and compared with |CTF| references. Particles without a "
                           "CTF are compared with plain projections.")

    def _defineRegionSearchParams(self, form, *, condition=None):
        """How far the regional search reaches around the predicted regions (defaults and
        meaning: ``core.search_plan.SearchOptions``, measured in docs/benchmarks_accuracy.md)."""
        from ..core.search_plan import SearchOptions

        default = SearchOptions.default
        group = form.addGroup("Regional search",
                              **({"condition": condition} if condition else {}))
        group.addParam("windowOverlapDeg", params.FloatParam,
                       default=default("overlap_deg"), label="Window overlap (deg)",
                       help="How far each region's search window reaches into its "
                            "neighbours, so that a particle near a region border is searched "
                            "on both sides. 0: the region only.")
        group.addParam("useProbabilityMass", params.BooleanParam,
                       default=default("probability_mass") is not None,
                       label="Adapt the regions searched to the network's confidence?",
                       help="Yes: search the predicted regions, best first, until their "
                            "probabilities add up to the mass below (a sure particle searches "
                            "one region, an unsure one several). No: search all k kept "
                            "regions.")
        group.addParam("probabilityMass", params.FloatParam,
                       default=default("probability_mass") or 0.9,
                       condition="useProbabilityMass", label="Probability mass",
                       help="Between 0 and 1: the regions searched must together hold this "
                            "much of the network's probability (0.9 with the default window "
                            "gave the best accuracy in docs/benchmarks_accuracy.md).")
        group.addParam("maxRegions", params.IntParam, default=default("max_regions") or 6,
                       condition="useProbabilityMass", label="Max regions per particle",
                       help="Upper limit of the regions searched per particle (at most the "
                            "regions kept per particle).")
        group.addParam("fallbackProbability", params.FloatParam,
                       default=default("fallback_probability"),
                       expertLevel=params.LEVEL_ADVANCED,
                       label="Global search below probability",
                       help="Particles whose best region probability is below this value "
                            "are searched over the whole asymmetric unit (costly; the "
                            "fraction is reported in the summary). 0: never.")

    def _regionSearchArgs(self):
        args = ["--overlap", self.windowOverlapDeg.get(),
                "--fallback-probability", self.fallbackProbability.get() or 0]
        if self.useProbabilityMass.get():
            args += ["--probability-mass", self.probabilityMass.get(),
                     "--max-regions", self.maxRegions.get()]
        else:
            args += ["--probability-mass", 0]
        return args

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
        for option, value in (("--step", self.angularStepDeg.get()),
                              ("--max-shift", self.maxShiftPx.get()),
                              ("--target-resolution", self.alignResolutionA.get())):
            if value is not None and value >= 0:  # old projects stored -1 for "not set"
                args += [option, value]
        if self.getAttributeValue("localRefinement", False):
            args += ["--refine"]
        self._runDeepAlign("align", args)

    def _createAlignedOutput(self, outputs_enum):
        particles = self.inputParticles.get()
        out = self._particlesWithResults(particles, self._getFileName("aligned_star"),
                                         poses=True, score=True, top_k=None)
        self._defineOutputs(**{outputs_enum.outputParticles.name: out})
        return self._finishAlignedOutput(out)

    def _finishAlignedOutput(self, out):
        """Relations and report of the aligned output (also of a streamed one, once closed)."""
        from ..convert import read_set_poses

        particles = self.inputParticles.get()
        self._defineSourceRelation(self.inputParticles, out)
        self._defineSourceRelation(self.inputVolume, out)
        report = {"n_aligned": out.getSize(), "n_input": particles.getSize()}
        report.update(_search_report(self._getFileName("aligned_star")))
        scores = [getattr(p, cts.SCORE_ATTR).get() for p in out.iterItems()]
        report["median_score"] = float(np.median(scores)) if scores else None
        if particles.hasAlignmentProj():
            from ..core.symmetry import symmetric_direction_distance_deg

            ids_in, ang_in, _ = read_set_poses(particles)
            ids_out, ang_out, _ = read_set_poses(out)
            index = {int(i): r for r, i in enumerate(ids_in)}
            rows = [index[int(i)] for i in ids_out]
            change = symmetric_direction_distance_deg(ang_in[rows], ang_out,
                                                      self.symmetryGroup.get())
            report["median_direction_change_deg"] = float(np.median(change))
        with open(self._getFileName("align_report"), "w") as fh:
            json.dump(report, fh)
        return out

    def _alignmentReport(self):
        path = self._getFileName("align_report")
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            report = json.load(fh)
        lines = [f"Aligned {report['n_aligned']} of {report['n_input']} particles; median "
                 f"correlation score {report['median_score']:.3f}."]
        if "regions_searched" in report:
            lines.append(f"Regions searched per particle: {report['regions_searched']:.2f} on "
                         f"average; {100 * report['global_search']:.1f} % of the particles "
                         "were searched globally (unsure prediction).")
        if "median_direction_change_deg" in report:
            lines.append("Median change of projection direction from the input alignment: "
                         f"{report['median_direction_change_deg']:.1f} deg.")
        return lines

    def _ctfMode(self):
        """The core's CTF mode (``deepalign align --ctf-mode``) for the form's choice."""
        if self.inputParticles.get().isPhaseFlipped():
            return "flipped"
        return list(CTF_HANDLING.values())[self.getAttributeValue("ctfHandling", 0) or 0]

    def _alignmentWarnings(self):
        particles = self.inputParticles.get()
        warnings = self._searchCostWarnings(particles) if particles is not None else []
        if particles is not None and not particles.hasCTF():
            warnings.append("The particles have no CTF: they are compared with plain "
                            "projections.")
        return warnings

    def _searchCostWarnings(self, particles):
        """A warning when the automatic angular step means a very large search."""
        from ..core.wizard_math import search_cost

        if self.angularStepDeg.get() is not None:
            return []
        resolution = self.alignResolutionA.get()
        try:
            n_regions = self._searchRegionCount()
            cost = search_cost(
                particles.getXDim(), particles.getSamplingRate(),
                symmetry=self.symmetryGroup.get(),
                target_resolution_a=resolution if resolution and resolution > 0 else None,
                max_shift_px=self.maxShiftPx.get(), n_regions=n_regions,
                top_k=self.topK.get() if n_regions else None)
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
        from ..core.projection import nyquist_reaches
        from ..core.symmetry import normalise_symmetry

        errors = self._emptySetErrors(input=self.inputParticles)
        particles, volume = self.inputParticles.get(), self.inputVolume.get()
        if particles is not None and volume is not None:
            errors += self._geometryMismatch("reference volume", volume, "particles",
                                             particles)
        if particles is not None and particles.getXDim():
            half = particles.getXDim() / 2
            shift = self.maxShiftPx.get()
            if shift is not None and not 0 <= shift <= half:
                errors.append(f"Max shift {shift} px must be between 0 and "
                              f"half the box ({half:g} px).")
        step = self.angularStepDeg.get()
        if step is not None and not 0 < step <= 30:
            errors.append(f"Angular step must be in (0, 30] deg, got {step:g}.")
        resolution = self.alignResolutionA.get()
        if particles is not None and resolution and resolution > 0 \
                and not nyquist_reaches(particles.getSamplingRate(), resolution):
            errors.append(f"Search resolution {resolution:g} A is finer than the Nyquist of the "
                          f"particles ({2 * particles.getSamplingRate():g} A).")
        if model_symmetry:
            try:
                if normalise_symmetry(model_symmetry) != normalise_symmetry(
                        self.symmetryGroup.get()):
                    errors.append(f"The model was trained for symmetry {model_symmetry}, "
                                  f"not {self.symmetryGroup.get()}.")
            except ValueError:
                pass  # reported by _symmetryErrors
        return errors


def _search_report(aligned_star):
    """Mean regions searched and fraction searched globally, from the aligned STAR."""
    from ..core.io.star import read_particles_star
    from .protocol_base import RESULT_COLUMNS

    out = {}
    if not os.path.exists(aligned_star):  # streaming: the batches have files of their own
        return out
    extra = read_particles_star(aligned_star).extra
    for key in ("regions_searched", "global_search"):
        if RESULT_COLUMNS[key] in extra:
            out[key] = float(np.mean(np.asarray(extra[RESULT_COLUMNS[key]], dtype=float)))
    return out


class DeepAlignProtAlign(StreamSteps, PartSteps, AlignSteps, PredictSteps, DeepAlignProtBase):
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
            from .protocol_base import RESULT_COLUMNS

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
            errors += self._validatePrediction(model.getNumberOfRegions())
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
