"""The STAR column names DeepAlign writes: spelled in core/io/columns.py only, one meaning
each, and the one 0-/1-based region border."""
import re
from pathlib import Path

import numpy as np
import pytest

from scipion_deepalign.core.io import (
    columns,
    read_regions_star,
    read_star_blocks,
    write_regions_star,
    write_star_blocks,
)

PACKAGE_DIR = Path(columns.__file__).parents[2]
#: a DeepAlign STAR column name (Scipion attributes start with "_deepalign", not matched)
_NAME = re.compile(r"(?<![\w_])deepalign[A-Z]\w*")
#: files owned by others where a name is still spelled (to replace by the columns constant)
_KNOWN = {("core/particles.py", "deepalignRegion1")}  # docstring example


def _spelled_names(text: str) -> set[str]:
    return set(_NAME.findall(text))


def test_column_names_are_spelled_only_in_columns_py():
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).as_posix()
        if rel.startswith("tests/") or rel == "core/io/columns.py":
            continue
        found += [(rel, n) for n in _spelled_names(path.read_text()) if (rel, n) not in _KNOWN]
    assert not found, f"spell these through scipion_deepalign.core.io.columns: {found}"


def test_name_finder_can_fail():
    assert _spelled_names('x = "deepalignScore"  # _deepalignModelDir') == {"deepalignScore"}


def test_names_are_distinct_and_one_meaning_each():
    names = [columns.REGION_COLUMN % 1, columns.PROB_COLUMN % 1, columns.SCORE_COLUMN,
             columns.BEST_REGION_COLUMN, columns.GLOBAL_SEARCH_COLUMN,
             columns.REGIONS_SEARCHED_COLUMN, columns.ITEM_ID_COLUMN, columns.SYMMETRY_COLUMN,
             columns.REGION_SPACING_COLUMN, columns.REGION_COUNT_COLUMN,
             columns.REGION_ID_COLUMN, columns.CLASS_COLUMN, columns.CLASS_PROB_COLUMN,
             columns.PAIR_CLASS_COLUMN % 1, columns.PAIR_REGION_COLUMN % 1,
             columns.PAIR_PROB_COLUMN % 1, *columns.PART_RECORD_COLUMNS.values()]
    assert len(set(names)) == len(names)
    # regions.star's region number is not a prefix of a particle's region columns
    assert not (columns.REGION_COLUMN % 1).startswith(columns.REGION_ID_COLUMN)
    assert all(n.isidentifier() for n in names)


def test_region_border_round_trip():
    regions = np.array([[0, 4], [2, 1]])
    np.testing.assert_array_equal(columns.regions_to_star(regions), [[1, 5], [3, 2]])
    np.testing.assert_array_equal(columns.regions_from_star(columns.regions_to_star(regions)),
                                  regions)
    np.testing.assert_array_equal(columns.regions_from_star(np.array(["3", "1"])), [2, 0])
    with pytest.raises(ValueError, match="must be integers"):
        columns.regions_from_star([1.5])


def test_region_hints_write_read():
    extra = {}
    regions = np.array([[3, 0], [1, 2], [0, 3]])
    probs = np.array([[0.6, 0.3], [0.5, 0.4], [0.9, 0.1]])
    columns.set_region_hints(extra, regions, probs)
    assert columns.region_columns(extra) == [columns.REGION_COLUMN % 1, columns.REGION_COLUMN % 2]
    np.testing.assert_array_equal(extra[columns.REGION_COLUMN % 1], [4, 2, 1])  # 1-based
    np.testing.assert_array_equal(columns.region_hints(extra), regions)
    np.testing.assert_array_equal(columns.region_hints(extra, 1), regions[:, :1])
    np.testing.assert_allclose(columns.region_probabilities(extra, 2), probs)
    assert columns.region_probabilities({columns.REGION_COLUMN % 1: [1]}, 1) is None
    with pytest.raises(ValueError, match="between 1 and the 2"):
        columns.region_hints(extra, 3)
    with pytest.raises(ValueError, match="no deepalignRegion1"):
        columns.region_hints({})


def test_class_pairs_write_read():
    extra = {}
    classes, regions = np.array([[1, 0], [0, 0]]), np.array([[3, 3], [0, 2]])
    probs = np.array([[0.6, 0.3], [0.5, 0.4]])
    columns.set_pair_columns(extra, classes, regions, probs)
    assert columns.pair_columns(extra) == [columns.PAIR_CLASS_COLUMN % 1,
                                           columns.PAIR_CLASS_COLUMN % 2]
    np.testing.assert_array_equal(extra[columns.PAIR_CLASS_COLUMN % 1], [2, 1])  # 1-based
    np.testing.assert_array_equal(extra[columns.PAIR_REGION_COLUMN % 1], [4, 1])
    assert not columns.region_columns(extra)  # pairs are not region columns
    read = columns.class_pairs(extra)
    for got, want in zip(read, (classes, regions, probs)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(columns.class_pairs(extra, 1)[0], classes[:, :1])
    with pytest.raises(ValueError, match="between 1 and the 2"):
        columns.class_pairs(extra, 3)
    with pytest.raises(ValueError, match="no deepalignPairClass1"):
        columns.class_pairs({})
    del extra[columns.PAIR_PROB_COLUMN % 2]
    with pytest.raises(ValueError, match="no deepalignPairProb2"):
        columns.class_pairs(extra)


def test_alignment_columns():
    extra = {}
    columns.set_alignment_columns(extra, score=[0.5, 0.7], region=np.array([0, 2]),
                                  fallback=np.array([False, True]), n_regions_searched=[1, 3])
    np.testing.assert_array_equal(extra[columns.BEST_REGION_COLUMN], [1, 3])
    np.testing.assert_array_equal(extra[columns.GLOBAL_SEARCH_COLUMN], [0, 1])
    global_only = {}
    columns.set_alignment_columns(global_only, score=[0.5])
    assert set(global_only) == {columns.SCORE_COLUMN}


def test_regions_star_writes_region_id_column_in_region_order(tmp_path):
    centres = np.array([[0.0, 10.0], [90.0, 45.0], [180.0, 80.0]])
    path = tmp_path / "regions.star"
    write_regions_star(path, centres, symmetry="c2", spacing_deg=30.0)
    blocks = read_star_blocks(path)
    np.testing.assert_array_equal(blocks["regions"][columns.REGION_ID_COLUMN], ["1", "2", "3"])
    # rows out of order are put back in region order
    general = {c: v for c, v in blocks["deepalign_general"].items()}
    rows = {columns.REGION_ID_COLUMN: np.array([3, 1, 2]),
            "rlnAngleRot": centres[[2, 0, 1], 0], "rlnAngleTilt": centres[[2, 0, 1], 1]}
    write_star_blocks(path, {"deepalign_general": general, "regions": rows},
                      single_row=("deepalign_general",))
    got, symmetry, spacing = read_regions_star(path)
    np.testing.assert_allclose(got, centres)
    assert (symmetry, spacing) == ("c2", 30.0)
