"""What the DeepAlign protocols share: how a ``deepalign`` command runs, GPU/thread options,
common checks and the way result STAR files become output particles.

Protocols never compute anything here: every heavy step is ``deepalign <command>`` (the CLI on
the core) run as a subprocess, one per step, pinned to the GPUs the executor gives that step.
"""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import Float, Integer, String
from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol.constants import STEPS_PARALLEL

from .. import constants as cts
from ..core.defaults import same_pixel_size
from ..core.io import columns

__all__ = ["DeepAlignProtBase", "RESULT_COLUMNS", "run_deepalign", "ShortPackageName",
           "SymmetryParam", "core_choice"]

#: STAR columns written by ``deepalign predict`` / ``align`` and the item id column of convert
RESULT_COLUMNS = {
    "item_id": columns.ITEM_ID_COLUMN,
    "region": columns.REGION_COLUMN,
    "region_prob": columns.PROB_COLUMN,
    "score": columns.SCORE_COLUMN,
    "significance": columns.SIGNIFICANCE_COLUMN,
    "global_search": columns.GLOBAL_SEARCH_COLUMN,
    "regions_searched": columns.REGIONS_SEARCHED_COLUMN,
}
#: set-level attribute recording the model folder of predicted region hints
MODEL_DIR_ATTR = "_deepalignModelDir"


def run_deepalign(protocol, command, args, *, gpu_ids=None, threads=None):
    """Run ``deepalign <command> <args>`` as a subprocess of ``protocol`` (its step log
    gets the progress lines); ``gpu_ids``/``threads`` as in ``Plugin.getEnviron``.

    The one way every DeepAlign protocol, DeepAlignProtBase or not, runs a heavy step.
    """
    from ..plugin import Plugin

    args = list(args) + list(cts.STEP_LOG_OPTIONS)  # progress lines in the step log
    protocol.runJob(Plugin.getPython(), Plugin.getCommandArgs(command, args),
                    env=Plugin.getEnviron(gpu_ids=gpu_ids, threads=threads),
                    numberOfMpi=1, numberOfThreads=1)


def core_choice(group, name, choices, default, **options):
    """An advanced choice among the core's words ``choices`` (the form stores the index), its
    default the core's ``default`` (the same word the CLI's default is)."""
    group.addParam(name, params.EnumParam, choices=list(choices),
                   default=list(choices).index(default), expertLevel=params.LEVEL_ADVANCED,
                   **options)


class ShortPackageName:
    """Mixin of every DeepAlign protocol: the plugin's short name where pyworkflow shows the
    package to users (the "<name> compute" header of the threads row, the protocol list).
    pyworkflow finds the package itself through ``getClassPackage``, not through this name."""

    @classmethod
    def getClassPackageName(cls):
        return cts.PLUGIN_NAME


class SymmetryParam:
    """Mixin of the protocols with a ``symmetryGroup`` parameter: the point group as the core
    names it, and the form's error when it is unknown."""

    def _symmetry(self):
        """The normalised point group (ValueError when unknown)."""
        from ..core.symmetry import normalise_symmetry

        return normalise_symmetry(self.symmetryGroup.get())

    def _symmetryErrors(self):
        try:
            self._symmetry()
        except ValueError as exc:
            return [f"Unknown symmetry {self.symmetryGroup.get()!r}: {exc}"]
        return []


class DeepAlignProtBase(ShortPackageName, SymmetryParam, EMProtocol):
    """Base of the DeepAlign protocols (``_label = None``: not listed as a protocol)."""

    _label = None
    _devStatus = BETA
    _references = [cts.CITE_DEEPALIGN]
    stepsExecutionMode = STEPS_PARALLEL

    # ------------------------------------------------------------- form pieces
    @staticmethod
    def _defineSymmetryParam(form):
        form.addParam("symmetryGroup", params.StringParam, default="c1", label="Symmetry",
                      help="Point group of the particle (c1, cN, dN, t, o, i; Xmipp/RELION "
                           "names). Regions cover its asymmetric unit only.")

    @staticmethod
    def _defineComputeParams(form, *, threads=2):
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True,
                       label="Use GPU?",
                       help="Train, predict and align on GPU when one is available.")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                       label="GPU IDs",
                       help="GPUs to use, e.g. '0 1'. Steps that run side by side (threads "
                            "- 1 of them) each get their own GPU. The shared network, the "
                            "prediction and the alignment are one step each; the regional "
                            "networks are one step per chunk of regions, so threads = GPUs + "
                            "1 trains that many at once.")
        form.addParallelSection(threads=threads, mpi=0)

    # ------------------------------------------------------------- running commands
    def _needsGpu(self):
        """Whether heavy steps ask the executor for a GPU (else they run side by side on CPU)."""
        return bool(self.getAttributeValue(params.USE_GPU, False))

    def _gpuIds(self):
        """GPU ids for the current step (``[]`` = CPU only)."""
        if not self.getAttributeValue(params.USE_GPU, False):
            return []
        executor = getattr(self, "_stepsExecutor", None)
        if executor is not None:
            return list(executor.getGpuList() or [])
        return self.getGpuList()

    def _runDeepAlign(self, command, args):
        """Run ``deepalign <command> <args>`` in a subprocess on this step's devices."""
        gpus = self._gpuIds()
        threads = None if gpus else max(1, (os.cpu_count() or 1)
                                        // max(1, self.numberOfThreads.get() - 1))
        run_deepalign(self, command, args, gpu_ids=gpus, threads=threads)

    def _modelDir(self):
        """Model folder: the input model when given, else the one this run trains."""
        model = self.getAttributeValue("inputModel", None) if self._usesInputModel() else None
        return model.getModelDir() if model is not None else self._getExtraPath("model")

    def _usesInputModel(self):
        return self.hasAttribute("inputModel") and self.inputModel.hasValue()

    # ------------------------------------------------------------- checks
    @staticmethod
    def _emptySetErrors(**named_pointers):
        errors = []
        for label, pointer in named_pointers.items():
            obj = pointer.get() if pointer is not None else None
            if obj is not None and not obj.getSize():
                errors.append(f"The {label} set is empty.")
        return errors

    @staticmethod
    def _geometryMismatch(label_a, obj_a, label_b, obj_b):
        """Errors naming what differs (box, pixel size) between two images/sets."""
        errors = []
        box_a, box_b = obj_a.getXDim(), obj_b.getXDim()
        if box_a and box_b and box_a != box_b:
            errors.append(f"The {label_a} box is {box_a} px but the {label_b} box is "
                          f"{box_b} px.")
        px_a, px_b = obj_a.getSamplingRate(), obj_b.getSamplingRate()
        if px_a and px_b and not same_pixel_size(px_a, px_b):
            errors.append(f"The {label_a} pixel size is {px_a:g} A but the {label_b} pixel "
                          f"size is {px_b:g} A.")
        return errors

    # ------------------------------------------------------------- outputs
    def _particlesWithResults(self, input_set, star_path, *, poses=False, top_k=0,
                              score=False, model_dir=None):
        """A new SetOfParticles: the input items with results from a ``deepalign`` STAR.

        Items are matched by the item id column (``RESULT_COLUMNS["item_id"]``) written by
        :func:`scipion_deepalign.convert.set_to_core`; items without a result are dropped.
        ``poses``: ALIGN_PROJ at the input sampling (shifts rescaled if the STAR file has
        another pixel size). ``top_k``: ``_deepalign_region1..k`` / ``_deepalign_regionProb1..k``.
        ``score``: ``_deepalign_score``. ``top_k=None``: as many regions as the file has.
        """
        update = self._resultUpdater(input_set, star_path, poses=poses, top_k=top_k,
                                     score=score)
        out = self._createSetOfParticles()
        out.copyInfo(input_set)
        if poses:
            out.setAlignmentProj()
        out.copyItems(input_set, updateItemCallback=update)
        if model_dir is not None:
            setattr(out, MODEL_DIR_ATTR, String(os.path.abspath(model_dir)))
        return out

    @staticmethod
    def _resultUpdater(input_set, star_path, *, poses=False, top_k=0, score=False):
        """``update(item)`` giving an item its results from ``star_path`` (options as in
        :meth:`_particlesWithResults`); items without a result get ``_appendItem = False``."""
        from ..convert import poses_at_sampling, set_particle_pose
        from ..core.io import read_particles_star

        result = read_particles_star(star_path)
        ids = np.asarray(result.extra[RESULT_COLUMNS["item_id"]]).astype(np.int64)
        row_of = {int(i): r for r, i in enumerate(ids)}
        if top_k is None:
            top_k = 0
            while RESULT_COLUMNS["region"] % (top_k + 1) in result.extra:
                top_k += 1
        angles = shifts = None
        if poses:
            try:
                angles, shifts = poses_at_sampling(result, input_set.getSamplingRate())
            except ValueError as exc:
                raise ValueError(f"{star_path}: {exc}") from None
        regions = [np.asarray(result.extra[RESULT_COLUMNS["region"] % (j + 1)]).astype(int)
                   for j in range(top_k)]
        probs = [np.asarray(result.extra[RESULT_COLUMNS["region_prob"] % (j + 1)], float)
                 for j in range(top_k)]
        scores = (np.asarray(result.extra[RESULT_COLUMNS["score"]], float) if score else None)
        significance = result.extra.get(RESULT_COLUMNS["significance"]) if score else None
        if significance is not None:
            significance = np.asarray(significance, float)

        def update(item, _row=None):
            r = row_of.get(int(item.getObjId()))
            if r is None:
                item._appendItem = False
                return
            if poses:
                set_particle_pose(item, angles[r], shifts[r])
            for j in range(top_k):
                setattr(item, cts.REGION_ATTR % (j + 1), Integer(int(regions[j][r])))
                setattr(item, cts.REGION_PROB_ATTR % (j + 1), Float(float(probs[j][r])))
            if scores is not None:
                setattr(item, cts.SCORE_ATTR, Float(float(scores[r])))
            if significance is not None:
                setattr(item, cts.SIGNIFICANCE_ATTR, Float(float(significance[r])))

        return update


def region_hints_count(set_of_particles):
    """How many region hints (``_deepalign_region1..k``) the first item carries (0: none)."""
    first = set_of_particles.getFirstItem() if set_of_particles.getSize() else None
    k = 0
    while first is not None and first.hasAttribute(cts.REGION_ATTR % (k + 1)):
        k += 1
    return k


def hints_model_dir(set_of_particles):
    """Model folder recorded on a set by DeepAlignProtPredict, or None."""
    value = getattr(set_of_particles, MODEL_DIR_ATTR, None)
    return value.get() if value is not None else None
