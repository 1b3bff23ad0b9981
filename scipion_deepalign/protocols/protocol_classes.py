"""3D classification against several reference maps (``deepalign run --volume A --volume B
...`` with the network in one pass, ``deepalign classify --cnn --iterations N`` with the
network refined by iterations, ``deepalign classify --iterations N`` without it): each particle
takes the class of the map it fits best, with its pose against that map; each class is
reconstructed from its particles.

The heavy steps are ``deepalign`` commands (see :mod:`.protocol_base`): the classification
(:meth:`DeepAlignProtClasses3D._classifyCommand`, the one place its command line is built)
and one ``deepalign reconstruct --halves`` per class. This file converts the sets, writes
each class's particles as a STAR file (a selection by ``rlnClassNumber``, nothing computed)
and registers what the commands wrote.
"""
import os
from enum import Enum

from pwem.objects import SetOfClasses3D, SetOfVolumes, Volume
from pwem.protocols import ProtClassify3D

from ..core import defaults
from .classes_info import ClassesInfo
from .protocol_base import DeepAlignProtBase
from .protocol_classes_form import ClassesForm

__all__ = ["DeepAlignProtClasses3D"]


class DeepAlignProtClasses3D(ClassesInfo, ClassesForm, DeepAlignProtBase, ProtClassify3D):
    """Classify particles against K reference maps (K >= 2), or in K classes started from one
    map, and align them.

    With the network (default), one network learns the class and the region from
    projections of every map and each particle is searched in its predicted (class, region)
    pairs only (``deepalign run``, one pass); without it, ``deepalign classify`` iterates:
    every particle is searched globally against every class map (K full searches), takes the
    class that fits it best at its best score's pose, and each class's map is reconstructed
    and low-passed at its FSC 0.5 for the next iteration, up to "iterations" or until fewer
    than 1 % change class. With the network and "Refine the classes by iterations?",
    ``deepalign classify --cnn`` iterates the same way but searches each particle in its
    predicted pairs: the network is trained in the first iteration and fine-tuned on
    projections of each iteration's new class maps.
    With one reference map (without the network): ``deepalign classify --classes K``, every
    class started from that map and the first classes drawn by the variance split.
    Outputs: a SetOfClasses3D (class k = the k-th map, RELION's ``rlnClassNumber``; its
    particles with their poses against that map; its representative volume reconstructed
    from them) and the class volumes.
    """

    _label = "3D classes"

    class outputs(Enum):
        outputClasses = SetOfClasses3D
        outputVolumes = SetOfVolumes

    _possibleOutputs = outputs

    # ------------------------------------------------------------- steps
    def _createFilenameTemplates(self):
        self._updateFilenamesDict({
            "input_dir": self._getExtraPath("input"),
            "input_star": self._getExtraPath("input", "particles.star"),
            "reference": self._getExtraPath("reference_%(k)02d.mrc"),
            "classify_dir": self._classifyFolder().path,
            # the STAR of the classified particles (each command's name for it)
            "classified_star": (self._classifyFolder().star_path() if self._iterates()
                                else self._getExtraPath("classify", "aligned.star")),
            "class_star": self._getExtraPath("class_%(k)03d.star"),
            "class_volume": self._getExtraPath("class_%(k)03d.mrc"),
            "class_fsc": self._getExtraPath("class_%(k)03d_fsc.json"),
        })

    def _insertAllSteps(self):
        self._createFilenameTemplates()
        # every Scipion set is read in ONE serial step (sqlite is not thread-safe)
        convert = self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        classify = self._insertFunctionStep(self.classifyStep, prerequisites=[convert],
                                            needsGPU=self._needsGpu())
        split = self._insertFunctionStep(self.splitClassesStep, prerequisites=[classify],
                                         needsGPU=False)
        maps = [self._insertFunctionStep(self.reconstructClassStep, k, prerequisites=[split],
                                         needsGPU=False)
                for k in range(1, self._numberOfClasses() + 1)]
        self._insertFunctionStep(self.createOutputStep, prerequisites=maps, needsGPU=False)

    # ------------------------------------------------------------- step functions
    def convertInputStep(self):
        from ..convert import set_to_core, volume_to_core

        set_to_core(self.inputParticles.get(), self._getFileName("input_dir"))
        for k, volume in enumerate(self._inputVolumes(), start=1):
            volume_to_core(volume, self._getFileName("reference", k=k))

    def classifyStep(self):
        command, args = self._classifyCommand()
        self._runDeepAlign(command, args)

    def splitClassesStep(self):
        """One STAR per class with its particles (``class_kkk.star``; none for an empty
        class): the rows of the classified STAR with ``rlnClassNumber == k``."""
        from ..core.io import columns, read_particles_star, write_particles_star

        classified = read_particles_star(self._getFileName("classified_star"))
        classes = columns.class_numbers(classified.extra) + 1
        for k in range(1, self._numberOfClasses() + 1):
            rows = [i for i, c in enumerate(classes) if c == k]
            if rows:
                write_particles_star(self._getFileName("class_star", k=k),
                                     classified.subset(rows))

    def reconstructClassStep(self, k):
        """``deepalign reconstruct`` of class ``k`` (half maps and their FSC when it has two
        particles or more; nothing for an empty class)."""
        from ..core.io import read_particles_star

        star = self._getFileName("class_star", k=k)
        if not os.path.exists(star):
            return
        args = ["--particles", star, "--out", self._getFileName("class_volume", k=k),
                "--symmetry", self._symmetry(), "--threads", 1]
        if len(read_particles_star(star)) >= 2:
            args += ["--halves", "--fsc-json", self._getFileName("class_fsc", k=k)]
        self._runDeepAlign("reconstruct", args)

    def createOutputStep(self):
        from ..convert import item_class_ids
        from ..core.io import read_particles_star

        particles = self.inputParticles.get()
        star = self._getFileName("classified_star")
        class_of = item_class_ids(read_particles_star(star))
        update_pose = self._resultUpdater(particles, star, poses=True, score=True)

        def update_item(item, _row=None):
            update_pose(item)
            if getattr(item, "_appendItem", True):
                item.setClassId(class_of[int(item.getObjId())])

        classes = self._createSetOfClasses3D(particles)
        classes.classifyItems(updateItemCallback=update_item,
                              updateClassCallback=self._updateClass)
        volumes = self._createSetOfVolumes()
        volumes.setSamplingRate(particles.getSamplingRate())
        for cls in classes.iterItems():
            volumes.append(self._classVolume(cls.getObjId()))
        self._defineOutputs(**{self.outputs.outputClasses.name: classes,
                               self.outputs.outputVolumes.name: volumes})
        for output in (classes, volumes):
            self._defineSourceRelation(self.inputParticles, output)
            for pointer in self.inputVolumes:
                self._defineSourceRelation(pointer, output)

    def _updateClass(self, cls):
        cls.setAlignmentProj()
        cls.setRepresentative(self._classVolume(cls.getObjId()))

    # ------------------------------------------------------------- the command line
    def _classifyCommand(self):
        """``(command, args)`` of the classification: the one place its command line is
        built. The network in one pass: ``deepalign run``; the network refined by iterations:
        ``deepalign classify --cnn --iterations N`` (the network's options that ``classify``
        takes: region spacing, epochs of the first network, images per epoch, fine-tuning
        epochs, the regional search; the class output and prior are ``run``'s only); without
        the network: ``deepalign classify --iterations N``. Each writes ``classified_star`` in
        ``classify_dir`` (``run`` names it aligned.star, ``classify`` the name its folder
        class owns)."""
        self._createFilenameTemplates()
        args = ["--particles", self._getFileName("input_star"),
                "--symmetry", self._symmetry(),
                "--device", "auto" if self._gpuIds() else "cpu"]
        for k in range(1, len(self._inputVolumes()) + 1):
            args += ["--volume", self._getFileName("reference", k=k)]
        if self._fromOneMap():
            args += ["--classes", self.oneMapClasses.get(),
                     "--split-resolution", self.splitResolutionA.get()]
        args += self._searchArgs()
        args += ["--class-search", defaults.CLASS_SEARCHES[self.classSearch.get()]]
        network = ["--spacing", self.regionSpacingDeg.get(),
                   "--epochs", self.numberOfEpochs.get(),
                   "--images-per-epoch", self.imagesPerEpoch.get()]
        if self._iterates():
            args += ["--iterations", self.iterations.get(),
                     "--out", self._getFileName("classify_dir")]
            if not self.useNetwork.get():
                return "classify", args
            return "classify", args + ["--cnn", *network,
                                       "--finetune-epochs", self.finetuneEpochs.get(),
                                       *self._regionSearchArgs()]
        return "run", args + ["--out", self._getFileName("classify_dir"), *network,
                              "--class-output", defaults.CLASS_OUTPUTS[self.classOutput.get()],
                              "--class-prior", defaults.CLASS_PRIORS[self.classPrior.get()],
                              *self._regionSearchArgs()]

    # ------------------------------------------------------------- info
    def _validate(self):
        errors = self._symmetryErrors()
        particles = self.inputParticles.get()
        errors += self._emptySetErrors(input=self.inputParticles)
        volumes = self._inputVolumes()
        if not volumes:
            errors.append("Give one reference volume per class (at least two), or one "
                          "volume and \"Classes from one map\".")
        elif len(volumes) == 1 and self.useNetwork.get():
            errors.append("One reference volume: the network learns one map per class. Give "
                          "one volume per class, or set \"Train a network of the classes?\" "
                          "to No to start \"Classes from one map\" from it.")
        elif self._fromOneMap() and (self.oneMapClasses.get() or 0) < 2:
            errors.append(f"Classes from one map must be at least 2, got "
                          f"{self.oneMapClasses.get()}.")
        if self._fromOneMap() and not (self.splitResolutionA.get() or 0) > 0:
            errors.append(f"The split resolution must be a positive number of Angstrom, got "
                          f"{self.splitResolutionA.get()}.")
        if particles is not None:
            for k, volume in enumerate(volumes, start=1):
                errors += self._geometryMismatch(f"reference volume {k} ({_name(volume)})",
                                                 volume, "particles", particles)
        if self._iterates():
            iterations = self.iterations.get()
            if iterations is None or iterations < 1:
                errors.append(f"Iterations must be at least 1, got {iterations}.")
            if particles is not None and particles.hasCTF() and self._ctfMode() != "apply":
                errors.append("The iterations (deepalign classify) apply the CTF to the "
                              "references: phase-flipped particles, or the phase-flip CTF "
                              "handling, need the network in one pass.")
        if self._path() == "cnn":
            epochs = self.finetuneEpochs.get()
            if epochs is None or epochs < 1:
                errors.append(f"Fine-tuning epochs must be at least 1, got {epochs}.")
        return errors + self._searchParamErrors(particles)

    def _warnings(self):
        particles = self.inputParticles.get()
        if particles is not None and not particles.hasCTF():
            return ["The particles have no CTF: they are compared with plain projections."]
        return []

    # ------------------------------------------------------------- utils
    def _inputVolumes(self):
        """The reference maps in the form's order (a set of volumes gives each of its maps)."""
        volumes = []
        for pointer in self.inputVolumes:
            obj = pointer.get()
            if isinstance(obj, SetOfVolumes):
                volumes += [v.clone() for v in obj.iterItems(orderBy="id")]
            elif obj is not None:
                volumes.append(obj)
        return volumes

    def _classifyFolder(self):
        """The layout of ``deepalign classify``'s output folder (the core's)."""
        from ..core.classes.classify_folder import ClassifyFolder

        return ClassifyFolder(self._getExtraPath("classify"))

    def _iterates(self):
        """Whether the classification is ``deepalign classify`` (iterated): without the
        network, or with it and "Refine the classes by iterations?"."""
        return self._path() != "run"

    def _path(self):
        """Which classification the form asks for: "run" (the network, one pass), "cnn"
        (``classify --cnn``, the network refined by iterations) or "global" (``classify``)."""
        if not self.useNetwork.get():
            return "global"
        return "cnn" if self.iterateNetwork.get() else "run"

    def classifyReport(self):
        """``deepalign classify``'s report (``{"iterations": [per-iteration dicts], "stopped",
        "inputs"}``), None with the network in one pass or before it is written."""
        from ..core.io import read_json

        if not self._iterates():
            return None
        path = self._classifyFolder().report_path
        return read_json(path) if os.path.exists(path) else None

    def _numberOfClasses(self):
        return self.oneMapClasses.get() if self._fromOneMap() else len(self._inputVolumes())

    def _fromOneMap(self):
        """Whether every class starts from the one reference volume (``--classes K``)."""
        return len(self._inputVolumes()) == 1 and not self.useNetwork.get()

    def _classVolume(self, k):
        volume = Volume(location=self._getFileName("class_volume", k=k))
        volume.setSamplingRate(self.inputParticles.get().getSamplingRate())
        volume.setObjId(k)
        fsc = self._getFileName("class_fsc", k=k)
        if os.path.exists(fsc):
            from ..core.io import half_map_paths

            volume.setHalfMaps(list(half_map_paths(self._getFileName("class_volume", k=k))))
        return volume


def _name(volume):
    """A volume's label or file, for messages."""
    return volume.getObjLabel() or os.path.basename(volume.getFileName() or "") or "unnamed"
