"""The Scipion ``Plugin`` of DeepAlign: where the ``deepalign`` commands run from."""
import os
import sys

import pwem
from pyworkflow.utils import Environ

from .constants import CITE_DEEPALIGN, DEEPALIGN_PYTHON

_references = [CITE_DEEPALIGN]


class Plugin(pwem.Plugin):
    """DeepAlign is pure Python: nothing to install beside the pip package.

    Protocols run every heavy step as ``<python> -m scipion_deepalign.cli <command>`` in a
    subprocess (one per step, so each can be pinned to its own GPU and submitted to a queue).
    ``DEEPALIGN_PYTHON`` chooses that interpreter; it defaults to the one running Scipion.
    """

    _homeVar = ""
    _pathVars = []
    _url = "https://github.com/scipion-em/scipion-em-deepalign"
    _supportedVersions = []

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(DEEPALIGN_PYTHON, sys.executable,
                       description="Python interpreter that runs the deepalign commands")

    @classmethod
    def defineBinaries(cls, env):
        """Nothing to compile or download: the package is installed by pip."""

    @classmethod
    def getPython(cls) -> str:
        """Interpreter for the ``deepalign`` commands."""
        return cls.getVar(DEEPALIGN_PYTHON) or sys.executable

    @classmethod
    def getCommandArgs(cls, command: str, args) -> str:
        """Arguments (after the interpreter) that run ``deepalign <command> <args...>``."""
        return " ".join(["-m", "scipion_deepalign.cli", command] + [str(a) for a in args])

    @classmethod
    def getEnviron(cls, *, gpu_ids=None, threads=None) -> Environ:
        """Environment of one ``deepalign`` subprocess.

        Parameters
        ----------
        gpu_ids : list of int, optional
            GPUs the step may use; ``[]`` hides every GPU (CPU run), None leaves it unchanged.
        threads : int, optional
            CPU threads for TensorFlow/BLAS.
        """
        env = Environ(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("KERAS_BACKEND", "tensorflow")
        if gpu_ids is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids) or "-1"
        if threads:
            for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "OPENBLAS_NUM_THREADS"):
                env[name] = str(int(threads))
            env["TF_NUM_INTEROP_THREADS"] = "1"
        return env

    def getName(self):
        """The package name (pyworkflow's default is the module of the Plugin class)."""
        return __package__

    def getPath(self):
        """Package folder (pyworkflow reads ``__path__`` of the Plugin class's module, and this
        module is not the package)."""
        return os.path.dirname(os.path.abspath(__file__))
