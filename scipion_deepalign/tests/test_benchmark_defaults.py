"""The benchmarks measure what a user gets: their "default" labels are the core's defaults."""
import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def variants():
    if not (BENCHMARKS / "accuracy_variants.py").is_file():
        pytest.skip("benchmarks/ is not beside the package (installed without the repository)")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("accuracy_variants")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_accuracy_benchmark_default_search_is_the_alignment_default(variants):
    from scipion_deepalign.core.align.search_plan import SearchOptions
    from scipion_deepalign.core.defaults import TOP_K

    k, options = variants.SEARCH[variants.DEFAULT_SEARCH]
    assert options == SearchOptions()
    assert k == TOP_K  # the regions the prediction hands to the search
    assert variants.DEFAULT_SEARCH.startswith("default")
    assert sum(label.startswith("default") for label in variants.SEARCH) == 1
