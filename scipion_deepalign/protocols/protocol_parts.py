"""Particles processed in parts: one independent step per part (``deepalign <command> --part
I/N``, each on its own GPU when the executor gives one, or its own queue job), then one step
that merges the parts in the input order (mixin of the predict and align protocols).

The split, the part files and the merge checks are :mod:`scipion_deepalign.core.io.parts`; a part
whose file is complete is not recomputed, so continuing a run redoes only unfinished parts.
"""
import os

import pyworkflow.protocol.params as params

__all__ = ["PartSteps"]


class PartSteps:
    """Form parameter, steps and summary line of the work split (mixin).

    The protocol using it has ``inputParticles``; without a ``partSize`` parameter (e.g. the
    refine protocol) everything is one part of :data:`~scipion_deepalign.core.io.parts.
    DEFAULT_PART_SIZE`.
    """

    def _definePartParams(self, form):
        from ..core.io import DEFAULT_PART_SIZE

        form.addParam("partSize", params.IntParam, default=DEFAULT_PART_SIZE,
                      expertLevel=params.LEVEL_ADVANCED, label="Particles per part",
                      help="The particles are processed in parts of at most this many, one "
                           "step per part: with several threads (GPUs + 1) or 'use queue "
                           "for steps' the parts run side by side. Continuing a run redoes "
                           "only the unfinished parts.")

    def _partErrors(self):
        size = self.getAttributeValue("partSize", None)
        if size is not None and size < 1:
            return [f"Particles per part must be at least 1, got {size}."]
        return []

    def _partSize(self):
        from ..core.io import DEFAULT_PART_SIZE

        size = self.getAttributeValue("partSize", None)
        return size if size else DEFAULT_PART_SIZE

    def _partCount(self):
        from ..core.io import count_parts

        return count_parts(self.inputParticles.get().getSize(), self._partSize())

    def _insertPartSteps(self, step, args, out_star, prerequisites):
        """``step(*args, "I/N", part_file)`` for every part, then the merge into ``out_star``;
        returns the id of the merge step."""
        from ..core.io import part_path

        n = self._partCount()
        parts = [self._insertFunctionStep(step, *args, f"{i}/{n}", part_path(out_star, i, n),
                                          prerequisites=prerequisites,
                                          needsGPU=self._needsGpu())
                 for i in range(1, n + 1)]
        return self._insertFunctionStep(self.mergePartsStep, out_star, n,
                                        prerequisites=parts, needsGPU=False)

    @staticmethod
    def _partWords(part, out_star):
        """``--part I/N --out FILE`` for one part (its folder created)."""
        os.makedirs(os.path.dirname(os.path.abspath(out_star)), exist_ok=True)
        return ["--part", part, "--out", out_star]

    def mergePartsStep(self, out_star, n_parts):
        from ..core.io import merge_parts, part_path

        merge_parts([part_path(out_star, i, n_parts) for i in range(1, n_parts + 1)],
                    out_star)

    def _partsSummary(self):
        particles = self.inputParticles.get()
        if particles is None or not particles.getSize():
            return []
        n = self._partCount()
        return [f"Processed in {n} part{'s' if n > 1 else ''} of at most {self._partSize()} "
                "particles (one step each)."]
