"""Names of the STAR columns DeepAlign writes (one place; every face imports them), and the
border between the core's 0-based region indices and the files' 1-based region numbers.

Region numbers in STAR files are **1-based** (the rows of ``regions.star``); the core works
with 0-based indices. :func:`regions_to_star` and :func:`regions_from_star` are the only
conversions; :func:`set_region_hints` / :func:`region_hints` and
:func:`set_alignment_columns` write and read the particle columns through them.

One meaning per name: ``deepalignRegion<i>`` is the i-th most probable region of a particle,
``deepalignBestRegion`` the region of the pose found, ``deepalignRegionId`` the number of a
row of ``regions.star`` (files written before it was named so used ``deepalignRegion``; they
are still read).

Classes (several reference maps, :mod:`scipion_deepalign.core.classes`) follow RELION:
``rlnClassNumber`` is **1-based** in files, 0-based in the core; :func:`set_class_columns`
and :func:`class_numbers` are the only conversions. A network of several maps
(:mod:`scipion_deepalign.core.cnn.joint`) predicts (class, region) pairs: ``deepalignPairClass<i>``,
``deepalignPairRegion<i>`` and ``deepalignPairProb<i>`` are a particle's i-th most probable pair
(1-based class and region in files; :func:`set_pair_columns` and :func:`class_pairs` convert).
"""
from __future__ import annotations

import numpy as np

# ------------------------------------------------------------------ particle STAR files
#: i-th most probable region of a particle (1-based region number), i = 1..k
REGION_COLUMN = "deepalignRegion%d"
#: its probability
PROB_COLUMN = "deepalignRegionProb%d"
#: normalised cross-correlation of the pose found
SCORE_COLUMN = "deepalignScore"
#: how far that pose stood out from all the poses compared (core.search.peak_significance)
SIGNIFICANCE_COLUMN = "deepalignSignificance"
#: region (1-based) whose centre is nearest to the direction of the pose found
BEST_REGION_COLUMN = "deepalignBestRegion"
#: 1 when the particle was searched globally (its prediction was unsure), else 0
GLOBAL_SEARCH_COLUMN = "deepalignGlobalSearch"
#: number of regions searched for the particle
REGIONS_SEARCHED_COLUMN = "deepalignRegionsSearched"
#: Scipion item id of a particle converted from a set (convert.set_to_core)
ITEM_ID_COLUMN = "deepalignItemId"
#: RELION's class of a particle (1-based: the i-th --volume), written by a several-map alignment
CLASS_COLUMN = "rlnClassNumber"
#: the probability of that class (core.classes.assign: the classes' best scores, weighted
#: as pose_weights weighs poses); RELION's rlnMaxValueProbDistribution means something else
CLASS_PROB_COLUMN = "deepalignClassProb"
#: a model of several maps: the class (1-based, the i-th --volume) of the i-th most probable
#: (class, region) pair of a particle, i = 1..k (deepalign predict, deepalign run's predicted.star)
PAIR_CLASS_COLUMN = "deepalignPairClass%d"
#: its region (1-based region number)
PAIR_REGION_COLUMN = "deepalignPairRegion%d"
#: its joint probability (class and region)
PAIR_PROB_COLUMN = "deepalignPairProb%d"
#: aligned.star: angle (deg) between the input and the new projection direction, nearest
#: symmetry mate (when the input had poses)
DIRECTION_CHANGE_COLUMN = "deepalignDirectionChange"

# ------------------------------------------------------------------ regions.star
#: block ``data_deepalign_general``: point group of the regions
SYMMETRY_COLUMN = "deepalignSymmetry"
#: block ``data_deepalign_general``: spacing of the region centres in degrees
REGION_SPACING_COLUMN = "deepalignRegionSpacingDeg"
#: block ``data_deepalign_general``: number of regions
REGION_COUNT_COLUMN = "deepalignRegionCount"
#: block ``data_regions``: 1-based region number of the row
REGION_ID_COLUMN = "deepalignRegionId"

# ------------------------------------------------------------------ part outputs
#: block ``data_deepalign_part`` of a part output (core.parts): PartRecord field -> column
PART_RECORD_COLUMNS = {"index": "deepalignPart", "n_parts": "deepalignParts",
                       "n_input": "deepalignInputCount", "first_row": "deepalignFirstRow",
                       "stop_row": "deepalignStopRow", "digest": "deepalignInputDigest",
                       "options": "deepalignOptionsDigest"}

__all__ = ["REGION_COLUMN", "PROB_COLUMN", "SCORE_COLUMN", "SIGNIFICANCE_COLUMN",
           "BEST_REGION_COLUMN",
           "GLOBAL_SEARCH_COLUMN", "REGIONS_SEARCHED_COLUMN", "ITEM_ID_COLUMN",
           "DIRECTION_CHANGE_COLUMN", "CLASS_COLUMN", "CLASS_PROB_COLUMN",
           "PAIR_CLASS_COLUMN", "PAIR_REGION_COLUMN", "PAIR_PROB_COLUMN",
           "SYMMETRY_COLUMN", "REGION_SPACING_COLUMN", "REGION_COUNT_COLUMN",
           "REGION_ID_COLUMN", "PART_RECORD_COLUMNS",
           "regions_to_star", "regions_from_star", "region_columns", "set_region_hints",
           "region_hints", "region_probabilities", "set_alignment_columns", "set_class_columns",
           "class_numbers", "pair_columns", "set_pair_columns", "class_pairs"]


# ------------------------------------------------------------------ the 0-/1-based border
def regions_to_star(regions) -> np.ndarray:
    """0-based region indices -> the 1-based numbers written to STAR files (int64)."""
    return np.asarray(regions, dtype=np.int64) + 1


def regions_from_star(values, what="region numbers") -> np.ndarray:
    """1-based region numbers read from a STAR file -> 0-based indices (int64).

    ``ValueError`` (naming ``what``) when a value is not an integer.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise ValueError(f"{what} must be integers")
    return values.astype(np.int64) - 1


# ------------------------------------------------------------------ particle columns
def _numbered_columns(extra, pattern: str) -> list[str]:
    """Names ``pattern % 1, pattern % 2, ...`` present in ``extra``, in order, up to the first
    absent one."""
    cols = []
    while pattern % (len(cols) + 1) in extra:
        cols.append(pattern % (len(cols) + 1))
    return cols


def _first_columns(extra, pattern: str, k, what: str) -> list[str]:
    """The first ``k`` (default all) of :func:`_numbered_columns`; ``ValueError`` when there
    is none or fewer than ``k`` (``what``: the columns' name in the message)."""
    cols = _numbered_columns(extra, pattern)
    if not cols:
        raise ValueError(f"no {pattern % 1} column")
    if k is not None:
        if not 1 <= k <= len(cols):
            raise ValueError(f"k must be between 1 and the {len(cols)} {what} columns, got {k}")
        cols = cols[:k]
    return cols


def _stacked(extra, cols) -> np.ndarray:
    """``(N, len(cols))`` float64: the columns ``cols`` of ``extra`` side by side."""
    return np.stack([np.asarray(extra[c], dtype=np.float64) for c in cols], axis=1)


def region_columns(extra) -> list[str]:
    """Names ``deepalignRegion1..k`` present in ``extra`` (a particle ``extra`` dict), in order."""
    return _numbered_columns(extra, REGION_COLUMN)


def set_region_hints(extra, regions, probabilities) -> None:
    """Write the ``(N, k)`` 0-based ``regions`` (best first) and their probabilities."""
    regions, probabilities = np.asarray(regions), np.asarray(probabilities)
    for j in range(regions.shape[1]):
        extra[REGION_COLUMN % (j + 1)] = regions_to_star(regions[:, j])
        extra[PROB_COLUMN % (j + 1)] = probabilities[:, j]


def region_hints(extra, k=None) -> np.ndarray:
    """``(N, k)`` 0-based regions of the first ``k`` (default all) region columns.

    ``ValueError`` when there is none, fewer than ``k``, or a value is not an integer.
    """
    cols = _first_columns(extra, REGION_COLUMN, k, "region")
    return regions_from_star(_stacked(extra, cols), f"columns {cols}")


def region_probabilities(extra, k) -> np.ndarray | None:
    """``(N, k)`` probabilities of the first ``k`` region columns, None if any is absent."""
    cols = [PROB_COLUMN % (j + 1) for j in range(k)]
    if not all(c in extra for c in cols):
        return None
    return _stacked(extra, cols)


def set_alignment_columns(extra, *, score, significance=None, region=None, fallback=None,
                          n_regions_searched=None) -> None:
    """Write the alignment's columns: score and its significance, and in regional mode the
    0-based ``region`` of the pose found, whether the particle fell back to a global search,
    and the number of regions searched (each skipped when None)."""
    extra[SCORE_COLUMN] = np.asarray(score)
    if significance is not None:
        extra[SIGNIFICANCE_COLUMN] = np.asarray(significance)
    if region is not None:
        extra[BEST_REGION_COLUMN] = regions_to_star(region)
    if fallback is not None:
        extra[GLOBAL_SEARCH_COLUMN] = np.asarray(fallback).astype(int)
    if n_regions_searched is not None:
        extra[REGIONS_SEARCHED_COLUMN] = np.asarray(n_regions_searched)


# ------------------------------------------------------------------ class columns
def set_class_columns(extra, classes, probability) -> None:
    """Write the 0-based ``classes`` (N,) as 1-based ``rlnClassNumber`` and their probability."""
    extra[CLASS_COLUMN] = np.asarray(classes, dtype=np.int64) + 1
    extra[CLASS_PROB_COLUMN] = np.asarray(probability, dtype=np.float64)


def class_numbers(extra) -> np.ndarray:
    """0-based classes (N,) int64 from the 1-based ``rlnClassNumber`` column.

    ``ValueError`` when the column is absent, or a value is not an integer >= 1.
    """
    if CLASS_COLUMN not in extra:
        raise ValueError(f"no {CLASS_COLUMN} column")
    values = np.asarray(extra[CLASS_COLUMN], dtype=np.float64)
    if not np.all(np.equal(np.mod(values, 1), 0)) or np.any(values < 1):
        raise ValueError(f"{CLASS_COLUMN} must hold integers from 1")
    return values.astype(np.int64) - 1


# ------------------------------------------------------------------ (class, region) pairs
def pair_columns(extra) -> list[str]:
    """Names ``deepalignPairClass1..k`` present in ``extra``, in order."""
    return _numbered_columns(extra, PAIR_CLASS_COLUMN)


def set_pair_columns(extra, classes, regions, probabilities) -> None:
    """Write the ``(N, k)`` 0-based (class, region) pairs (best first) and their probabilities."""
    classes, regions = np.asarray(classes), np.asarray(regions)
    probabilities = np.asarray(probabilities)
    for j in range(classes.shape[1]):
        extra[PAIR_CLASS_COLUMN % (j + 1)] = np.asarray(classes[:, j], dtype=np.int64) + 1
        extra[PAIR_REGION_COLUMN % (j + 1)] = regions_to_star(regions[:, j])
        extra[PAIR_PROB_COLUMN % (j + 1)] = probabilities[:, j]


def class_pairs(extra, k=None):
    """``(classes, regions, probabilities)``, each ``(N, k)``: the 0-based (class, region) pairs
    of the first ``k`` (default all) pair columns and their probabilities.

    ``ValueError`` when there is none, fewer than ``k``, a class, region or probability
    column is missing, or a class or region is not an integer >= 1.
    """
    n = len(_first_columns(extra, PAIR_CLASS_COLUMN, k, "pair"))
    cols = [[pattern % j for j in range(1, n + 1)]
            for pattern in (PAIR_CLASS_COLUMN, PAIR_REGION_COLUMN, PAIR_PROB_COLUMN)]
    missing = [name for names in zip(*cols) for name in names if name not in extra]
    if missing:
        raise ValueError(f"no {missing[0]} column")
    classes = regions_from_star(_stacked(extra, cols[0]), f"columns {cols[0]}")
    regions = regions_from_star(_stacked(extra, cols[1]), f"columns {cols[1]}")
    if np.any(classes < 0) or np.any(regions < 0):
        raise ValueError("pair classes and regions must be integers from 1")
    return classes, regions, _stacked(extra, cols[2])
