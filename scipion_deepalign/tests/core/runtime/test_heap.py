"""glibc's allocation thresholds, pinned by TensorFlow's generator datasets, put back
(:mod:`scipion_deepalign.core.runtime.heap`).

Each check runs in a fresh interpreter: whether a freed array comes back from the heap or is
mapped afresh depends on the heap a process has grown, which the tests run before in the same
worker would set.
"""
import json
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt thresholds")

_ARRAYS, _PAGES = 40, 256  # 1 MiB arrays: below numpy's huge-page size (4 MiB)

_PRELUDE = f"""
import ctypes, json, resource
import numpy as np

def faults():
    '''This thread's page faults while making and dropping {_ARRAYS} arrays of 1 MiB.'''
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range({_ARRAYS}):
        np.ones({_PAGES} * 4096 // 8)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

def pin_threshold_as_tensorflow_does():
    '''mallopt(M_MMAP_THRESHOLD, 128 KiB), as TensorFlow's generator dataset calls it.'''
    assert ctypes.CDLL(None).mallopt(-3, 128 << 10) == 1
"""


def _faults(script: str) -> dict:
    """Run ``script`` (after :data:`_PRELUDE`) in a fresh interpreter; it prints a JSON dict."""
    done = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_pinned_threshold_faults_every_array_and_reuse_freed_memory_undoes_it():
    found = _faults("""
        from scipion_deepalign.core.runtime.heap import reuse_freed_memory
        pin_threshold_as_tensorflow_does()
        pinned = faults()
        assert reuse_freed_memory()
        faults()  # the heap grows to hold one array
        print(json.dumps({"pinned": pinned, "reused": faults()}))
    """)
    assert found["pinned"] >= 0.8 * _ARRAYS * _PAGES  # each array mapped afresh
    assert found["reused"] < 0.1 * _ARRAYS * _PAGES  # then the heap's pages are reused


def test_a_training_puts_the_thresholds_back():
    """After ``fit_model`` on a ``PyDataset`` (where TensorFlow pins the threshold), freed
    arrays are reused: the prediction and the alignment that follow in the same process do
    not page-fault every temporary array."""
    pytest.importorskip("keras")
    found = _faults("""
        import keras
        from scipion_deepalign.core.cnn.config import TrainConfig
        from scipion_deepalign.core.cnn.fit import fit_model
        from scipion_deepalign.tests.helpers import tiny_region_network

        model, batches, x, y = tiny_region_network(keras)
        pin_threshold_as_tensorflow_does()
        fit_model(model, batches, (x, y), TrainConfig(epochs=1, patience=0), label="test",
                  shared=True)
        faults()
        print(json.dumps({"after_training": faults()}))
    """)
    assert found["after_training"] < 0.1 * _ARRAYS * _PAGES
