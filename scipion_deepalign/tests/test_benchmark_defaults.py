"""The benchmarks measure what a user gets: their "default" labels are the core's defaults."""
import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _benchmark_module(name):
    if not (BENCHMARKS / f"{name}.py").is_file():
        pytest.skip("benchmarks/ is not beside the package (installed without the repository)")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def variants():
    return _benchmark_module("accuracy_variants")


def test_accuracy_benchmark_default_search_is_the_alignment_default(variants):
    from scipion_deepalign.core.align.search_plan import SearchOptions
    from scipion_deepalign.core.defaults import TOP_K

    k, options = variants.SEARCH[variants.DEFAULT_SEARCH]
    assert options == SearchOptions()
    assert k == TOP_K  # the regions the prediction hands to the search
    assert variants.DEFAULT_SEARCH.startswith("default")
    assert sum(label.startswith("default") for label in variants.SEARCH) == 1


def test_accuracy_benchmark_baseline_sample_spreads_over_the_test_set():
    import numpy as np

    runs = _benchmark_module("accuracy_runs")
    sample = runs.baseline_sample(1800, 400)
    assert len(sample) == 400 and sample[0] == 0 and sample[-1] == 1799
    assert np.all(np.diff(sample) >= 4)  # evenly spread: every 4th or 5th particle
    assert runs.baseline_sample(1800, 0) is None  # 0: the whole test set
    assert runs.baseline_sample(300, 400) is None  # a sample as large as the set: all of it
