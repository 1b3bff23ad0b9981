"""Angular consensus between two or more alignments of the same particles.

Particles whose poses agree (projection directions within a threshold, optionally in-plane
angle and shifts too) go to one output set, the others to a second set; every particle
carries its differences as ``_deepalign_*`` attributes. The heavy step is ``deepalign
consensus`` run as a subprocess (see :mod:`.protocol_base`); its ``differences.csv`` and
``summary.json`` (the one schema: :mod:`scipion_deepalign.core.io.results`) are what this
protocol reads back. Each input goes to the command as a STAR of poses whose image names are
``<item id>@items``, so the command matches particles by Scipion id.
"""
import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import Float, SetOfParticles
from pwem.protocols import ProtProcessParticles
from pyworkflow import BETA

from scipion_deepalign.constants import CITE_DEEPALIGN
from scipion_deepalign.core import defaults
from scipion_deepalign.core.io import CONSENSUS_OUTPUTS, columns, read_differences_csv, read_json
from scipion_deepalign.protocols.protocol_base import (
    ShortPackageName,
    SymmetryParam,
    run_deepalign,
)

__all__ = ["DeepAlignProtConsensus", "DIFF_THRESHOLDS_DEG"]

#: Angles (degrees) under which the summary reports the fraction of particles (the command's).
DIFF_THRESHOLDS_DEG = defaults.CONSENSUS_REPORT_THRESHOLDS_DEG

#: Per-particle attributes written on both outputs (names of pwem ``Float`` attributes).
ATTR_ANGLE = "_deepalign_angDiff"
ATTR_INPLANE = "_deepalign_inplaneDiff"
ATTR_SHIFT = "_deepalign_shiftDiff"


class DeepAlignProtConsensus(ShortPackageName, SymmetryParam, ProtProcessParticles):
    """Compare the 3D alignments of two or more sets of the same particles.

    Particles are matched by id. For each particle the angle between the projection
    directions of every pair of inputs is computed (minimum over the symmetry group), as
    well as the in-plane difference and the shift difference. A particle agrees when at
    least ``minAgree`` inputs agree within the thresholds. Outputs: agreeing and disagreeing
    particles (poses of the chosen input), with the largest differences as attributes, and
    a CSV with all the differences.
    """
    _label = "angular consensus"
    _devStatus = BETA
    _references = [CITE_DEEPALIGN]

    # Both outputs are SetOfParticles: an Enum would make the second an alias of the first,
    # so the names are plain constants and _possibleOutputs a dict.
    OUTPUT_AGREE = "outputParticles"
    OUTPUT_DISAGREE = "outputParticlesDiscarded"
    _possibleOutputs = {OUTPUT_AGREE: SetOfParticles, OUTPUT_DISAGREE: SetOfParticles}

    # --------------------------- DEFINE param functions ------------------------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSets", params.MultiPointerParam, pointerClass="SetOfParticles",
                      minNumObjects=2, important=True,
                      label="Aligned particle sets",
                      help="Two or more sets of the same particles (matched by id), each with a "
                           "projection (3D) alignment.")
        form.addParam("symmetryGroup", params.StringParam, default="c1", label="Symmetry",
                      help="Point group: poses equivalent under symmetry are at distance 0.")
        form.addParam("maxAngleDeg", params.FloatParam,
                      default=defaults.CONSENSUS_MAX_ANGLE_DEG,
                      validators=[params.Positive], label="Angular threshold (deg)",
                      help="Largest angle between projection directions for two poses to "
                           "agree.")
        form.addParam("maxInplaneDeg", params.FloatParam, default=None, allowsNull=True,
                      expertLevel=params.LEVEL_ADVANCED, label="In-plane threshold (deg)",
                      help="Largest in-plane angle difference once the directions are aligned. "
                           "Empty: the same as the angular threshold.")
        form.addParam("maxShiftPx", params.FloatParam, default=None, allowsNull=True,
                      label="Shift threshold (px)",
                      help="Largest shift difference, in pixels of the first set, for two "
                           "poses to agree. Empty: shifts are not compared. The wizard "
                           "converts Å to pixels.")
        form.addParam("minAgree", params.IntParam, default=None, allowsNull=True,
                      label="Inputs that must agree",
                      help="How many inputs must agree (pairwise, within the thresholds) for a "
                           "particle to be kept. Empty: all of them.")
        form.addParam("keepPosesFrom", params.IntParam, default=1,
                      label="Poses kept from set number",
                      help="Which of the sets above gives the particles and poses of the "
                           "outputs: 1 is the first. The wizard lists the sets by name; the "
                           "summary names the one used.")

    # --------------------------- INSERT steps functions ------------------------------------
    def _createFilenameTemplates(self):
        _, _, csv_name, json_name = CONSENSUS_OUTPUTS  # what `deepalign consensus` writes
        self._updateFilenamesDict({
            "poses": self._getExtraPath("poses_%(index)02d.star"),
            "out_dir": self._getExtraPath("consensus"),
            "csv": self._getExtraPath("consensus", csv_name),
            "stats": self._getExtraPath("consensus", json_name),
        })

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.consensusStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -------------------------------------------
    def convertInputStep(self):
        """The one serial read of the Scipion sets: each set's poses to a STAR file whose
        image names are ``<item id>@items`` (no images: the command compares poses only)."""
        from scipion_deepalign.convert import read_set_poses
        from scipion_deepalign.core.io import write_particles_star
        from scipion_deepalign.core.particles import Particles

        for index, particles_set in enumerate(self._inputSets()):
            ids, angles_deg, shifts_px = read_set_poses(particles_set)
            write_particles_star(self._getFileName("poses", index=index), Particles(
                image_names=[f"{int(i)}@items" for i in ids],
                pixel_size_a=float(particles_set.getSamplingRate()),
                box_px=int(particles_set.getXDim() or 1), angles_deg=angles_deg,
                shifts_px=shifts_px, extra={columns.ITEM_ID_COLUMN: np.asarray(ids)},
                root=self._getExtraPath()))

    def consensusStep(self):
        args = ["--inputs"] + [self._getFileName("poses", index=i)
                               for i in range(len(self.inputSets))]
        args += ["--out", self._getFileName("out_dir"), "--symmetry", self._symmetry(),
                 "--max-angle", self.maxAngleDeg.get(), "--keep-from", self._keepIndex() + 1]
        for option, value in (("--max-inplane", self.maxInplaneDeg.get()),
                              ("--max-shift", self.maxShiftPx.get()),
                              ("--min-agree", self.minAgree.get())):
            if value is not None:
                args += [option, value]
        run_deepalign(self, "consensus", args, gpu_ids=[], threads=1)

    def createOutputStep(self):
        data = self.getDifferences()
        row_of_id = {int(i): row for row, i in enumerate(data["ids"])}
        # Attributes: the largest difference between the kept input and the others.
        columns = [p for p, pair in enumerate(data["pairs"]) if self._keepIndex() in pair]
        direction = data["direction_diff_deg"][:, columns].max(axis=1)
        inplane = data["inplane_diff_deg"][:, columns].max(axis=1)
        shift = data["shift_diff_px"][:, columns].max(axis=1)
        agree = data["agree"]

        source = self._inputSets()[self._keepIndex()]
        kept = self._createSetOfParticles(suffix="agree")
        discarded = self._createSetOfParticles(suffix="disagree")
        for out in (kept, discarded):
            out.copyInfo(source)
            out.setAlignmentProj()
        for particle in source.iterItems(orderBy="id"):
            row = row_of_id.get(int(particle.getObjId()))
            if row is None:
                continue  # not present in every input
            setattr(particle, ATTR_ANGLE, Float(float(direction[row])))
            setattr(particle, ATTR_INPLANE, Float(float(inplane[row])))
            setattr(particle, ATTR_SHIFT, Float(float(shift[row])))
            (kept if agree[row] else discarded).append(particle)

        self._defineOutputs(**{self.OUTPUT_AGREE: kept,
                               self.OUTPUT_DISAGREE: discarded})
        for pointer in self.inputSets:
            self._defineSourceRelation(pointer, kept)
            self._defineSourceRelation(pointer, discarded)

    # --------------------------- INFO functions --------------------------------------------
    def _validate(self):
        errors = []
        sets = self._inputSets()
        if len(sets) < 2:
            return ["Aligned particle sets: select at least two sets."]
        if any(s is None for s in sets):
            return ["Aligned particle sets: one of the inputs is empty or missing."]
        for number, particles_set in enumerate(sets, start=1):
            if not particles_set.hasAlignmentProj():
                errors.append(f"Input {number} ({particles_set.getObjLabel() or 'set'}) has no "
                              f"projection (3D) alignment.")
        sampling = [s.getSamplingRate() for s in sets]
        if not all(defaults.same_pixel_size(a, sampling[0]) for a in sampling[1:]):
            listed = ", ".join(f"{a:.4g}" for a in sampling)
            errors.append(f"Inputs have different pixel sizes ({listed} A/px): shifts and "
                          f"particles cannot be compared.")
        common = set.intersection(*(s.getIdSet() for s in sets))
        if not common:
            errors.append("The inputs have no particles in common (no shared particle ids).")
        if not 1 <= self.keepPosesFrom.get() <= len(sets):
            errors.append(f"Poses kept from set number: must be between 1 and {len(sets)}, "
                          f"got {self.keepPosesFrom.get()}.")
        inplane, shift = self.maxInplaneDeg.get(), self.maxShiftPx.get()
        if inplane is not None and not inplane > 0:
            errors.append("In-plane threshold: must be positive, or empty for the angular "
                          "threshold.")
        if shift is not None and not shift > 0:
            errors.append("Shift threshold: must be positive, or empty (shifts not compared).")
        min_agree = self.minAgree.get()
        if min_agree is not None and not 2 <= min_agree <= len(sets):
            errors.append(f"Inputs that must agree: must be empty (all) or between 2 and "
                          f"{len(sets)}, got {min_agree}.")
        return errors + self._symmetryErrors()

    def _warnings(self):
        sets = self._inputSets()
        if len(sets) < 2 or any(s is None for s in sets):
            return []
        common = len(set.intersection(*(s.getIdSet() for s in sets)))
        sizes = [s.getSize() for s in sets]
        if common < max(sizes):
            return [f"Only {common} particles are in every input (sizes "
                    f"{', '.join(str(n) for n in sizes)}); the others are left out of both "
                    f"outputs."]
        return []

    def _summary(self):
        if not self.hasAttribute(self.OUTPUT_AGREE):
            return ["Output not ready yet."]
        stats = self.getStats()
        n_common, n_agree = stats["n_common"], stats["n_agree"]
        lines = [f"Inputs: {', '.join(str(n) for n in stats['n_inputs'])} particles; "
                 f"{n_common} in common.",
                 f"Agreeing within {self.maxAngleDeg.get():g} deg: {n_agree} "
                 f"({100.0 * n_agree / max(n_common, 1):.1f} %); disagreeing: "
                 f"{n_common - n_agree}.",
                 f"Particles and poses of the outputs: set {self.keepPosesFrom.get()} "
                 f"({self.inputSetNames()[self._keepIndex()]})."]
        for p, (i, j) in enumerate(stats["pairs"]):
            fractions = ", ".join(f"{t} deg: {100.0 * f[p]:.1f} %"
                                  for t, f in stats["fraction_under_deg"].items())
            lines.append(f"Inputs {i} and {j}: median angular difference "
                         f"{stats['median_angle_diff_deg'][p]:.2f} deg; fraction under "
                         f"{fractions}.")
        return lines

    # --------------------------- UTILS functions -------------------------------------------
    def _inputSets(self):
        return [pointer.get() for pointer in self.inputSets]

    def inputSetNames(self):
        """What the GUI calls each input set: the run that made it, and the output's name
        unless it is the usual ``outputParticles`` (``"consensus (outputParticlesDiscarded)"``).
        """
        names = []
        for number, pointer in enumerate(self.inputSets, start=1):
            owner, particles = pointer.getObjValue(), pointer.get()
            name = (owner.getRunName() if hasattr(owner, "getRunName") else None) or \
                (particles.getObjLabel() if particles is not None else None) or \
                f"input {number}"
            extended = pointer.getExtended() if pointer.hasExtended() else ""
            names.append(f"{name} ({extended})" if extended not in ("", "outputParticles")
                         else name)
        return names

    def _keepIndex(self):
        return self.keepPosesFrom.get() - 1

    def getStats(self):
        """Counts and fractions written by the consensus step (dict, see the summary)."""
        self._createFilenameTemplates()
        return read_json(self._getFileName("stats"))

    def getDifferences(self):
        """Per matched particle: ``ids``, ``agree`` mask, ``pairs`` (0-based) and the pairwise
        ``direction_diff_deg``, ``inplane_diff_deg``, ``shift_diff_px`` (N, pairs), read from
        the command's ``differences.csv``."""
        from scipion_deepalign.core.particles import split_image_name

        self._createFilenameTemplates()
        data = read_differences_csv(self._getFileName("csv"))
        data["ids"] = np.array([split_image_name(n)[0] for n in data.pop("image_name")],
                               dtype=np.int64)
        return data
