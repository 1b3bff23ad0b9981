"""Reconstruction of aligned particles with half maps and their FSC (judging an alignment).

The heavy step is ``deepalign reconstruct --halves`` run as a subprocess (like every DeepAlign
step, see :mod:`.protocol_base`); this file only converts the Scipion set once (with the
chosen halves as ``rlnRandomSubset``), runs the command and registers what it wrote.
"""
import os
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.objects import FSC, Volume
from pwem.protocols import ProtReconstruct3D
from pyworkflow import BETA

from ..core.defaults import RECONSTRUCT_THREADS
from ..core.io import half_map_paths, read_json
from .protocol_base import ShortPackageName, SymmetryParam, run_deepalign

__all__ = ["DeepAlignProtReconstruct"]

SPLIT_RANDOM = 0
SPLIT_EVEN_ODD = 1


class DeepAlignProtReconstruct(ShortPackageName, SymmetryParam, ProtReconstruct3D):
    """Reconstruct a map from particles with a 3D (projection) alignment.

    The particles are split in two halves, each half is reconstructed by direct Fourier
    inversion (optionally with CTF correction), and the Fourier shell correlation between
    the halves gives the resolution (0.143 criterion). Outputs: the full map with its half
    maps, and the FSC curve.
    """
    _label = "reconstruct"
    _devStatus = BETA

    class outputs(Enum):
        outputVolume = Volume
        outputFSC = FSC

    _possibleOutputs = outputs

    # --------------------------- DEFINE param functions ------------------------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      important=True, label="Aligned particles",
                      help="Particles with a projection (3D) alignment, e.g. from DeepAlign.")
        form.addParam("symmetryGroup", params.StringParam, default="c1",
                      label="Symmetry",
                      help="Point group of the map: c1, cN, dN, t, o, i (Xmipp/RELION names).")
        form.addParam("correctCtf", params.BooleanParam, default=True,
                      label="Correct the CTF?",
                      help="Use the particles' CTF (Wiener-like weighting) if they have one. "
                           "Ignored for particles without CTF.")
        form.addParam("halfSplit", params.EnumParam, default=SPLIT_RANDOM,
                      choices=["random", "even/odd particle id"],
                      label="Half-set split",
                      help="How particles are divided into the two independent half sets.")
        form.addParam("splitSeed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED,
                      condition=f"halfSplit == {SPLIT_RANDOM}",
                      label="Random seed of the split",
                      help="The same seed gives the same two halves, so runs on the same "
                           "particles can be compared.")
        form.addParam("maskRadiusA", params.FloatParam, default=None, allowsNull=True,
                      label="FSC mask radius (Å)",
                      help="Radius of the soft spherical mask applied to both half maps before "
                           "the FSC, in Å. Empty: no mask. The wizard draws it on the "
                           "particles.")
        form.addParallelSection(threads=RECONSTRUCT_THREADS, mpi=0, binThreadsHelp=(
            "Threads of `deepalign reconstruct --threads`: the two half maps (and chunks of "
            "particles) are gridded side by side, one Fourier grid in memory per thread "
            "(timings: docs/benchmarks.md)."))

    # --------------------------- INSERT steps functions ------------------------------------
    def _createFilenameTemplates(self):
        half1, half2 = half_map_paths(self._getPath("volume.mrc"))  # the command's names
        self._updateFilenamesDict({
            "particles_star": self._getExtraPath("particles.star"),
            "half1": half1,
            "half2": half2,
            "volume": self._getPath("volume.mrc"),
            "fsc": self._getExtraPath("fsc.json"),
        })

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.reconstructStep)
        self._insertFunctionStep(self.createOutputStep)

    # --------------------------- STEPS functions -------------------------------------------
    def convertInputStep(self):
        """The one serial read of the Scipion set: images + STAR with poses, CTF and the
        chosen half of each particle (``rlnRandomSubset``, which the command uses)."""
        from scipion_deepalign.convert import set_to_core
        from scipion_deepalign.core.io import columns, write_particles_star

        star = self._getFileName("particles_star")
        particles = set_to_core(self.inputParticles.get(), self._getExtraPath(),
                                star_name=os.path.basename(star))
        particles.extra["rlnRandomSubset"] = self._halves(particles.extra[columns.ITEM_ID_COLUMN])
        write_particles_star(star, particles)

    def reconstructStep(self):
        args = ["--particles", self._getFileName("particles_star"),
                "--out", self._getFileName("volume"), "--halves",
                "--symmetry", self._symmetry(), "--fsc-json", self._getFileName("fsc"),
                "--threads", max(1, self.numberOfThreads.get())]
        if not self.correctCtf.get():
            args.append("--no-ctf")
        mask_radius_a = self.maskRadiusA.get()
        if mask_radius_a is not None:
            args += ["--mask-radius", mask_radius_a]
        run_deepalign(self, "reconstruct", args, gpu_ids=[],
                      threads=max(1, self.numberOfThreads.get()))

    def createOutputStep(self):
        particles_set = self.inputParticles.get()
        volume = Volume()
        volume.setFileName(self._getFileName("volume"))
        volume.setSamplingRate(particles_set.getSamplingRate())
        volume.setHalfMaps([self._getFileName("half1"), self._getFileName("half2")])

        fsc_data = self._readFsc()
        fsc = FSC()
        fsc.setData(fsc_data["frequency_inv_a"], fsc_data["fsc"])

        self._defineOutputs(**{self.outputs.outputVolume.name: volume,
                               self.outputs.outputFSC.name: fsc})
        self._defineSourceRelation(self.inputParticles, volume)
        self._defineSourceRelation(self.inputParticles, fsc)

    # --------------------------- INFO functions --------------------------------------------
    def _validate(self):
        errors = []
        particles_set = self.inputParticles.get()
        if particles_set is None:
            return ["Input particles: no set selected."]
        if not particles_set.hasAlignmentProj():
            errors.append("Input particles have no projection (3D) alignment: run an angular "
                          "assignment (e.g. DeepAlign align) before reconstructing.")
        if particles_set.getSize() < 2:
            errors.append("Input particles: at least 2 particles are needed for two half maps.")
        elif self.halfSplit.get() == SPLIT_EVEN_ODD:
            from scipion_deepalign.core.judge.reconstruct import even_odd_subsets
            try:
                even_odd_subsets(list(particles_set.getIdSet()))
            except ValueError as exc:
                errors.append(f"Half-set split: {exc}; use the random split.")
        mask_radius_a = self.maskRadiusA.get()
        if mask_radius_a is not None and not mask_radius_a > 0:
            errors.append(f"FSC mask radius must be positive (or empty: no mask), got "
                          f"{mask_radius_a:g} A.")
        return errors + self._symmetryErrors()

    def _warnings(self):
        particles_set = self.inputParticles.get()
        if self.correctCtf.get() and particles_set is not None and not particles_set.hasCTF():
            return ["The particles have no CTF: the map is reconstructed without CTF "
                    "correction."]
        return []

    def _summary(self):
        if not self.hasAttribute(self.outputs.outputFSC.name):
            return ["Output not ready yet."]
        fsc = self._readFsc()
        lines = [f"Reconstructed {fsc['n_particles']} particles, symmetry "
                 f"{self.symmetryGroup.get()}, sampling "
                 f"{self.inputParticles.get().getSamplingRate():.3g} A/px."]
        lines.append(f"Resolution (FSC 0.143): {_format_res(fsc['resolution_0143_a'])}; "
                     f"(FSC 0.5): {_format_res(fsc['resolution_05_a'])}.")
        if fsc.get("limited_by_sampling"):
            lines.append("The FSC stays above 0.143 up to Nyquist: the resolution is limited by "
                         "the sampling.")
        return lines

    def _methods(self):
        if not self.hasAttribute(self.outputs.outputFSC.name):
            return []
        fsc = self._readFsc()
        return [f"A map was reconstructed by direct Fourier inversion from {fsc['n_particles']} "
                f"particles; the FSC between independent half maps reached 0.143 at "
                f"{_format_res(fsc['resolution_0143_a'])}."]

    # --------------------------- UTILS functions -------------------------------------------
    def _halves(self, ids):
        """Half (1 or 2, ``rlnRandomSubset``) of each particle, in the order of ``ids``."""
        from scipion_deepalign.core.judge.reconstruct import even_odd_subsets, half_subsets

        if self.halfSplit.get() == SPLIT_EVEN_ODD:
            return even_odd_subsets(ids)
        return half_subsets(len(ids), seed=self.splitSeed.get())

    def _readFsc(self):
        self._createFilenameTemplates()
        return read_json(self._getFileName("fsc"))

    def getResolution0143(self):
        """FSC 0.143 resolution in Angstrom (None before the run, or if never crossed)."""
        return self._readFsc()["resolution_0143_a"]



def _format_res(value):
    return "not reached" if value is None else f"{value:.2f} A"
