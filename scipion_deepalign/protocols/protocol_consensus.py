"""Angular consensus between two or more alignments of the same particles.

Particles whose poses agree (projection directions within a threshold, optionally in-plane
angle and shifts too) go to one output set, the others to a second set; every particle
carries its differences as ``_deepalign_*`` attributes. The numbers come from
:mod:`scipion_deepalign.core.consensus`.
"""
import csv
import json

import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import Float, SetOfParticles
from pwem.protocols import ProtProcessParticles
from pyworkflow import BETA

from scipion_deepalign.constants import CITE_DEEPALIGN
from scipion_deepalign.core import defaults

__all__ = ["DeepAlignProtConsensus", "DIFF_THRESHOLDS_DEG"]

#: Angles (degrees) under which the summary reports the fraction of particles.
DIFF_THRESHOLDS_DEG = (5.0, 10.0, 15.0)

#: Per-particle attributes written on both outputs (names of pwem ``Float`` attributes).
ATTR_ANGLE = "_deepalign_angDiff"
ATTR_INPLANE = "_deepalign_inplaneDiff"
ATTR_SHIFT = "_deepalign_shiftDiff"


class DeepAlignProtConsensus(ProtProcessParticles):
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
        self._updateFilenamesDict({
            "poses": self._getExtraPath("poses_%(index)02d.npz"),
            "result": self._getExtraPath("consensus.npz"),
            "csv": self._getExtraPath("angular_differences.csv"),
            "stats": self._getExtraPath("consensus_stats.json"),
        })

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.consensusStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -------------------------------------------
    def convertInputStep(self):
        """The one serial read of the Scipion sets: ids, angles and shifts to .npz files."""
        from scipion_deepalign.convert import read_set_poses

        for index, particles_set in enumerate(self._inputSets()):
            ids, angles_deg, shifts_px = read_set_poses(particles_set)
            np.savez(self._getFileName("poses", index=index), ids=np.asarray(ids),
                     angles_deg=angles_deg, shifts_px=shifts_px)

    def consensusStep(self):
        from scipion_deepalign.core.consensus import angular_consensus, match_particles

        poses = [np.load(self._getFileName("poses", index=i))
                 for i in range(len(self.inputSets))]
        common_ids, index_lists = match_particles([p["ids"] for p in poses])
        max_shift = _optional(self.maxShiftPx.get())
        max_inplane = _optional(self.maxInplaneDeg.get(), allow_zero=True)
        min_agree = _optional(self.minAgree.get())
        result = angular_consensus(
            [p["angles_deg"][idx] for p, idx in zip(poses, index_lists)],
            symmetry=self._symmetry(), max_angle_deg=self.maxAngleDeg.get(),
            max_inplane_deg=max_inplane,
            shift_sets=[p["shifts_px"][idx] for p, idx in zip(poses, index_lists)],
            max_shift_px=max_shift, min_agree=min_agree)

        np.savez(self._getFileName("result"), ids=np.asarray(common_ids, dtype=np.int64),
                 agree=result.agree, pairs=np.asarray(result.pairs, dtype=np.int64),
                 direction_diff_deg=result.direction_diff_deg,
                 inplane_diff_deg=result.inplane_diff_deg, shift_diff_px=result.shift_diff_px)
        self._writeCsv(common_ids, result)
        fractions = result.fraction_below(DIFF_THRESHOLDS_DEG)
        stats = {
            "n_inputs": [int(len(p["ids"])) for p in poses],
            "n_common": int(len(common_ids)),
            "n_agree": int(result.agree.sum()),
            "pairs": [[int(i) + 1, int(j) + 1] for i, j in result.pairs],
            "fraction_under_deg": {f"{t:g}": np.asarray(f).tolist()
                                   for t, f in fractions.items()},
            "median_angle_diff_deg": np.median(result.direction_diff_deg, axis=0).tolist(),
        }
        with open(self._getFileName("stats"), "w") as fh:
            json.dump(stats, fh, indent=1)

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
        if any(abs(a - sampling[0]) > 1e-3 * sampling[0] for a in sampling[1:]):
            listed = ", ".join(f"{a:.4g}" for a in sampling)
            errors.append(f"Inputs have different pixel sizes ({listed} A/px): shifts and "
                          f"particles cannot be compared.")
        common = set.intersection(*(s.getIdSet() for s in sets))
        if not common:
            errors.append("The inputs have no particles in common (no shared particle ids).")
        if not 1 <= self.keepPosesFrom.get() <= len(sets):
            errors.append(f"Poses kept from set number: must be between 1 and {len(sets)}, "
                          f"got {self.keepPosesFrom.get()}.")
        min_agree = _optional(self.minAgree.get())
        if min_agree is not None and not 2 <= min_agree <= len(sets):
            errors.append(f"Inputs that must agree: must be empty (all) or between 2 and "
                          f"{len(sets)}, got {min_agree}.")
        try:
            self._symmetry()
        except ValueError as exc:
            errors.append(f"Symmetry: {exc}")
        return errors

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

    def _symmetry(self):
        from scipion_deepalign.core.symmetry import normalise_symmetry
        return normalise_symmetry(self.symmetryGroup.get())

    def _writeCsv(self, ids, result):
        pairs = [f"{i + 1}-{j + 1}" for i, j in result.pairs]
        with open(self._getFileName("csv"), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["particle_id", "agree"]
                            + [f"angle_diff_deg_{p}" for p in pairs]
                            + [f"inplane_diff_deg_{p}" for p in pairs]
                            + [f"shift_diff_px_{p}" for p in pairs])
            for row, item_id in enumerate(ids):
                values = np.concatenate([result.direction_diff_deg[row],
                                         result.inplane_diff_deg[row],
                                         result.shift_diff_px[row]])
                writer.writerow([int(item_id), int(result.agree[row])]
                                + [f"{v:.4f}" for v in values])

    def getStats(self):
        """Counts and fractions written by the consensus step (dict, see the summary)."""
        self._createFilenameTemplates()
        with open(self._getFileName("stats")) as fh:
            return json.load(fh)

    def getDifferences(self):
        """Per matched particle: ids, agree mask and pairwise differences (npz arrays)."""
        self._createFilenameTemplates()
        return dict(np.load(self._getFileName("result")))


def _optional(value, *, allow_zero=False):
    """A form value, None when empty or negative (projects before 0.x stored -1 for "off")."""
    if value is None or value < 0 or (value == 0 and not allow_zero):
        return None
    return value
