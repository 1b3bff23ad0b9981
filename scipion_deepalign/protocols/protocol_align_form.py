"""The alignment's form: search parameters, the regional search window and their command
words and checks (mixin of the align and refine protocols, through
:class:`.protocol_align.AlignSteps`, and of the 3D classes protocol)."""
import pyworkflow.protocol.params as params

from ..core import defaults
from ..core.defaults import GALLERY_STEP_PX as _STEP_PX

__all__ = ["AlignForm", "CTF_HANDLING"]

#: the alignment form's CTF choices (GUI words -> ``deepalign align --ctf-mode``); particles
#: marked phase-flipped always get the core's "flipped"
CTF_HANDLING = {"apply the CTF to the references": "apply",
                "phase-flip the particles": "flip"}


class AlignForm:
    """Form pieces of the alignment and the command words of the regional search."""

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
                           "at the particle radius by "
                           f"{_STEP_PX[True]:g} pixels of the search images with the local "
                           f"refinement, {_STEP_PX[False]:g} without (fine on large boxes: set "
                           "a search resolution or a step). The wizard gives the number of "
                           "references and comparisons per particle.")
        form.addParam("maxShiftPx", params.FloatParam, default=None, allowsNull=True,
                      label="Max shift (px)",
                      help="Largest particle shift searched, in pixels of the input "
                           "particles; at most half the box. Empty: "
                           f"{defaults.MAX_SHIFT_BOX_FRACTION:.3g} of the box. The wizard "
                           "converts Å to pixels.")
        form.addParam("alignResolutionA", params.StringParam,
                      default=defaults.TARGET_RESOLUTION, expertLevel=params.LEVEL_ADVANCED,
                      label="Search resolution (Å)",
                      help="Compare images downsampled to this resolution (faster); the "
                           "shifts are still given at the input sampling. "
                           f"{defaults.TARGET_RESOLUTION} (default): the resolution the "
                           "reference volume supports (estimated from its spectrum), the "
                           "local refinement going finer; "
                           f"{defaults.FULL_RESOLUTION} (0 or empty): the full box; or a "
                           "resolution in Å. The wizard shows the box it gives.")
        form.addParam("localRefinement", params.BooleanParam, default=defaults.REFINE,
                      expertLevel=params.LEVEL_ADVANCED, label="Local refinement?",
                      help="Refine each pose below the angular step (local search of the "
                           "angles, half-pixel shifts). With it the automatic angular step "
                           f"is {_STEP_PX[True]:g} pixels at the particle radius instead of "
                           f"{_STEP_PX[False]:g}: more accurate and faster than the finer "
                           "gallery alone (docs/benchmarks_accuracy.md).")
        form.addParam("ctfHandling", params.EnumParam, default=0,
                      choices=list(CTF_HANDLING), expertLevel=params.LEVEL_ADVANCED,
                      label="CTF handling",
                      help="How particles with a CTF are compared. Apply: the CTF is put on "
                           "the reference projections. Phase-flip: the particles are "
                           "phase-flipped first and compared with plain projections. "
                           "Particles marked phase-flipped are always compared with |CTF| "
                           "references, whatever the choice. Particles without a CTF are "
                           "compared with plain projections.")

    def _defineRegionSearchParams(self, form, *, condition=None):
        """How far the regional search reaches around the predicted regions (defaults and
        meaning: ``core.search_plan.SearchOptions``, measured in docs/benchmarks_accuracy.md)."""
        from ..core.align.search_plan import SearchOptions

        default = SearchOptions.default
        group = form.addGroup("Regional search",
                              **({"condition": condition} if condition else {}))
        group.addParam("windowOverlapDeg", params.FloatParam,
                       default=default("overlap_deg"), label="Window overlap (deg)",
                       help="How far each region's search window reaches into its "
                            "neighbours, so that a particle near a region border is searched "
                            "on both sides. 0: the region only (the search around the kept "
                            "poses below finds such particles for fewer comparisons).")
        group.addParam("followDeg", params.FloatParam, default=default("follow_deg"),
                       label="Search around the kept poses (deg)",
                       help="After the regions' search, the directions within this angle of "
                            "the poses it kept for each particle (its best and the "
                            "refinement's candidate starts) that it did not meet are searched "
                            "too, so that a view just across a region border is found. "
                            "0: never.")
        group.addParam("useProbabilityMass", params.BooleanParam,
                       default=default("probability_mass") is not None,
                       label="Adapt the regions searched to the network's confidence?",
                       help="Yes: search the predicted regions, best first, until their "
                            "probabilities add up to the mass below (a sure particle searches "
                            "one region, an unsure one several). No: search all k kept "
                            "regions.")
        group.addParam("probabilityMass", params.FloatParam,
                       default=default("probability_mass"),
                       condition="useProbabilityMass", label="Probability mass",
                       help="Between 0 and 1: the regions searched must together hold this "
                            "much of the network's probability (the default, with the "
                            "default most regions, was measured best in "
                            "docs/benchmarks_accuracy.md).")
        group.addParam("maxRegions", params.IntParam, default=default("max_regions"),
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
        group.addParam("fallbackSignificance", params.FloatParam,
                       default=default("fallback_significance"),
                       expertLevel=params.LEVEL_ADVANCED,
                       label="Global search below significance",
                       help="After the regional search, particles whose best pose stands out "
                            "from all the poses they were compared with by less than this "
                            "significance are searched again over the whole asymmetric unit. "
                            "About 1 is what the best of pure-noise scores reaches; a clear "
                            "peak is well above (measured values: "
                            "docs/benchmarks_accuracy.md). "
                            "Used only where the best-posed quarter of the particles stands "
                            "clearly above this value (small particles searched at a coarse "
                            "resolution have low significances even when right). The fraction "
                            "is reported in the summary. 0: never.")

    def _regionSearchArgs(self):
        args = ["--overlap", self.windowOverlapDeg.get(), "--follow", self.followDeg.get(),
                "--fallback-probability", self.fallbackProbability.get() or 0,
                "--fallback-significance", self.fallbackSignificance.get() or 0]
        if self.useProbabilityMass.get():
            args += ["--probability-mass", self.probabilityMass.get(),
                     "--max-regions", self.maxRegions.get()]
        else:
            args += ["--probability-mass", 0]
        return args

    # ------------------------------------------------------------- the form's words
    # (the form -> command words and checks of the search, shared by every protocol with
    # this form: align, refine, 3D classes; they need ``inputParticles``)
    def _searchArgs(self):
        """``--step``, ``--max-shift``, ``--target-resolution`` and ``--refine`` words of
        ``deepalign align|run`` (empty fields left to the command's defaults)."""
        args = []
        for option, value in (("--step", self.angularStepDeg.get()),
                              ("--max-shift", self.maxShiftPx.get()),
                              ("--target-resolution", self._searchResolution())):
            if value is not None:
                args += [option, value]
        refine = self.getAttributeValue("localRefinement", defaults.REFINE)
        return args + ["--refine" if refine else "--no-refine"]

    def _searchResolution(self):
        """The form's search resolution as ``--target-resolution`` reads it (empty: full)."""
        value = self.alignResolutionA.get()
        return defaults.FULL_RESOLUTION if value in (None, "") else str(value)

    def _ctfMode(self):
        """The core's CTF mode (``deepalign align --ctf-mode``) for the form's choice."""
        if self.inputParticles.get().isPhaseFlipped():
            return "flipped"
        return list(CTF_HANDLING.values())[self.getAttributeValue("ctfHandling", 0) or 0]

    def _searchParamErrors(self, particles):
        """Errors of the max shift, angular step and search resolution (``particles``: the
        input set or None)."""
        from ..core.projection import nyquist_reaches
        from ..core.resolution import parse_target_resolution

        errors = []
        if particles is not None and particles.getXDim():
            half = particles.getXDim() / 2
            shift = self.maxShiftPx.get()
            if shift is not None and not 0 <= shift <= half:
                errors.append(f"Max shift {shift} px must be between 0 and "
                              f"half the box ({half:g} px).")
        step = self.angularStepDeg.get()
        if step is not None and not 0 < step <= defaults.MAX_STEP_DEG:
            errors.append(f"Angular step must be in (0, {defaults.MAX_STEP_DEG:g}] deg, got "
                          f"{step:g}.")
        try:
            resolution = parse_target_resolution(self._searchResolution(),
                                                 name="Search resolution")
        except ValueError as exc:
            errors.append(f"{exc}.")
            resolution = None
        if particles is not None and isinstance(resolution, float) \
                and not nyquist_reaches(particles.getSamplingRate(), resolution):
            errors.append(f"Search resolution {resolution:g} A is finer than the Nyquist of the "
                          f"particles ({2 * particles.getSamplingRate():g} A).")
        return errors
