"""Angular consensus between two or more alignments of the same particles.

Particles whose poses agree (projection directions within a threshold, optionally in-plane
angle and shifts too) go to one output set, the others to a second set; every particle
carries its differences as ``_deepalign_*`` attributes. The numbers come from
:mod:`scipion_deepalign.core.consensus`.
"""
import csv
import json
from enum import Enum

import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import Float, SetOfParticles
from pwem.protocols import ProtProcessParticles
from pyworkflow import BETA

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

    class outputs(Enum):
        outputParticles = SetOfParticles
        outputParticlesDiscarded = SetOfParticles

    _possibleOutputs = outputs

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
        form.addParam("maxAngleDeg", params.FloatParam, default=10.0,
                      validators=[params.Positive], label="Angular threshold (deg)",
                      help="Largest angle between projection directions for two poses to "
                           "agree.")
        form.addParam("maxShiftPx", params.FloatParam, default=-1,
                      label="Shift threshold (px)",
                      help="Largest shift difference, in pixels, for two poses to agree. "
                           "-1: shifts are not compared.")
        form.addParam("minAgree", params.IntParam, default=-1, label="Inputs that must agree",
                      help="How many inputs must agree (pairwise, within the thresholds) for a "
                           "particle to be kept. -1: all of them.")
        form.addParam("keepPosesFrom", params.IntParam, default=1,
                      label="Keep poses of input number",
                      help="1-based position, in the list above, of the input whose particles "
                           "and poses go to the outputs.")

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
        angle_sets = [p["angles_deg"][idx] for p, idx in zip(poses, index_lists)]
        shift_sets = [p["shifts_px"][idx] for p, idx in zip(poses, index_lists)]
        use_shifts = self.maxShiftPx.get() > 0
        min_agree = self.minAgree.get()
        result = angular_consensus(
            angle_sets, symmetry=self._symmetry(), max_angle_deg=self.maxAngleDeg.get(),
            shift_sets=shift_sets if use_shifts else None,
            max_shift_px=self.maxShiftPx.get() if use_shifts else None,
            min_agree=min_agree if min_agree > 0 else None)

        # Per particle, the largest difference over the pairs of inputs.
        direction = np.asarray(result.direction_diff_deg).reshape(len(common_ids), -1)
        inplane = np.asarray(result.inplane_diff_deg).reshape(len(common_ids), -1)
        shift = (np.linalg.norm(np.asarray(shift_sets[0]) - np.asarray(shift_sets[1]), axis=-1)
                 [:, None] if result.shift_diff_px is None
                 else np.asarray(result.shift_diff_px).reshape(len(common_ids), -1))
        agree = np.asarray(result.agree, dtype=bool)
        np.savez(self._getFileName("result"), ids=np.asarray(common_ids), agree=agree,
                 direction_diff_deg=direction, inplane_diff_deg=inplane, shift_diff_px=shift)
        self._writeCsv(common_ids, agree, direction, inplane, shift)
        max_direction = direction.max(axis=1)
        stats = {
            "n_inputs": [int(len(p["ids"])) for p in poses],
            "n_common": int(len(common_ids)),
            "n_agree": int(agree.sum()),
            "fraction_under_deg": {f"{t:g}": float(np.mean(max_direction < t))
                                   if len(max_direction) else 0.0
                                   for t in DIFF_THRESHOLDS_DEG},
            "median_angle_diff_deg": float(np.median(max_direction))
            if len(max_direction) else None,
        }
        with open(self._getFileName("stats"), "w") as fh:
            json.dump(stats, fh, indent=1)

    def createOutputStep(self):
        data = np.load(self._getFileName("result"))
        row_of_id = {int(i): row for row, i in enumerate(data["ids"])}
        direction = data["direction_diff_deg"].max(axis=1)
        inplane = data["inplane_diff_deg"].max(axis=1)
        shift = data["shift_diff_px"].max(axis=1)
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

        self._defineOutputs(**{self.outputs.outputParticles.name: kept,
                               self.outputs.outputParticlesDiscarded.name: discarded})
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
            errors.append(f"Keep poses of input number: must be between 1 and {len(sets)}, "
                          f"got {self.keepPosesFrom.get()}.")
        if self.minAgree.get() > len(sets) or self.minAgree.get() in (0, 1):
            errors.append(f"Inputs that must agree: must be -1 or between 2 and {len(sets)}, "
                          f"got {self.minAgree.get()}.")
        try:
            self._symmetry()
        except ValueError as exc:
            errors.append(f"Symmetry: {exc}")
        return errors

    def _summary(self):
        if not self.hasAttribute(self.outputs.outputParticles.name):
            return ["Output not ready yet."]
        stats = self.getStats()
        n_common, n_agree = stats["n_common"], stats["n_agree"]
        lines = [f"Inputs: {', '.join(str(n) for n in stats['n_inputs'])} particles; "
                 f"{n_common} in common.",
                 f"Agreeing within {self.maxAngleDeg.get():g} deg: {n_agree} "
                 f"({100.0 * n_agree / max(n_common, 1):.1f} %); disagreeing: "
                 f"{n_common - n_agree}."]
        lines.append("Fraction with angular difference under " + ", ".join(
            f"{t} deg: {100.0 * f:.1f} %" for t, f in stats["fraction_under_deg"].items()) + ".")
        if stats["median_angle_diff_deg"] is not None:
            lines.append(f"Median angular difference: {stats['median_angle_diff_deg']:.2f} deg.")
        return lines

    # --------------------------- UTILS functions -------------------------------------------
    def _inputSets(self):
        return [pointer.get() for pointer in self.inputSets]

    def _keepIndex(self):
        return self.keepPosesFrom.get() - 1

    def _symmetry(self):
        from scipion_deepalign.core.symmetry import normalise_symmetry
        return normalise_symmetry(self.symmetryGroup.get())

    def _writeCsv(self, ids, agree, direction, inplane, shift):
        pairs = [f"{a + 1}-{b + 1}" for a in range(len(self.inputSets))
                 for b in range(a + 1, len(self.inputSets))]
        if len(pairs) != direction.shape[1]:
            pairs = [str(k + 1) for k in range(direction.shape[1])]
        with open(self._getFileName("csv"), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["particle_id", "agree"]
                            + [f"angle_diff_deg_{p}" for p in pairs]
                            + [f"inplane_diff_deg_{p}" for p in pairs]
                            + [f"shift_diff_px_{k + 1}" for k in range(shift.shape[1])])
            for row in range(len(ids)):
                writer.writerow([int(ids[row]), int(agree[row])]
                                + [f"{v:.4f}" for v in direction[row]]
                                + [f"{v:.4f}" for v in inplane[row]]
                                + [f"{v:.4f}" for v in shift[row]])

    def getStats(self):
        """Counts and fractions written by the consensus step (dict, see the summary)."""
        self._createFilenameTemplates()
        with open(self._getFileName("stats")) as fh:
            return json.load(fh)

    def getDifferences(self):
        """Per matched particle: ids, agree mask and pairwise differences (npz arrays)."""
        self._createFilenameTemplates()
        return dict(np.load(self._getFileName("result")))
