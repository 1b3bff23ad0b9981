"""Headless pyworkflow set-up for the test suite (see ../shared/SCIPION_NOTES.md).

pyworkflow reads its environment once, at import, so everything is set here before any
test module is collected.
"""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="deepalign-scipion-"))
# each process of the suite (every xdist worker imports this file) removes its own home
# when it ends (pytest_unconfigure; atexit where pytest stops before it): a run leaves
# nothing in the temporary folder
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
_HOME = _ROOT / "scipion_home"
(_HOME / "config").mkdir(parents=True)
(_HOME / "config" / "hosts.conf").write_text(
    "[localhost]\n"
    "PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s\n"
    "NAME = SCIPION_DEEPALIGN_TESTS\n"
    "CANCEL_COMMAND = kill %_(JOB_ID)s\n"
    "CHECK_COMMAND = ps -p %_(JOB_ID)s\n"
    "SUBMIT_COMMAND = bash %_(JOB_SCRIPT)s\n"
    "SUBMIT_PREFIX = scipion\n"
    "QUEUE_FOR_JOBS = N\n"
)
_defaults = {
    "SCIPION_HOME": str(_HOME),
    "SCIPION_USER_DATA": str(_ROOT / "user_data"),
    "SCIPION_DOMAIN": "pwem",
    "SCIPION_PYTHON": sys.executable,
    "SCIPION_TEST_NOSYNC": "True",
    "SCIPION_NOTIFY": "False",
    "MPLBACKEND": "Agg",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
}
for _key, _value in _defaults.items():
    os.environ.setdefault(_key, _value)
os.environ["SCIPION_HOME"] = str(_HOME)


def pytest_unconfigure(config):
    shutil.rmtree(_ROOT, ignore_errors=True)
