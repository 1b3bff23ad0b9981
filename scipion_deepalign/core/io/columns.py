"""Names of the STAR columns DeepAlign writes on particles (one place; every face imports them).

Region numbers in STAR files are **1-based** (the rows of ``regions.star``); the core works
with 0-based indices, and the conversion happens where these columns are written or read.
"""

#: i-th most probable region of a particle (1-based region number), i = 1..k
REGION_COLUMN = "deepalignRegion%d"
#: its probability
PROB_COLUMN = "deepalignRegionProb%d"
#: normalised cross-correlation of the pose found
SCORE_COLUMN = "deepalignScore"
#: region (1-based) whose centre is nearest to the direction of the pose found
BEST_REGION_COLUMN = "deepalignBestRegion"
#: 1 when the particle was searched globally (its prediction was unsure), else 0
GLOBAL_SEARCH_COLUMN = "deepalignGlobalSearch"
#: number of regions searched for the particle
REGIONS_SEARCHED_COLUMN = "deepalignRegionsSearched"
#: Scipion item id of a particle converted from a set (convert.set_to_core)
ITEM_ID_COLUMN = "deepalignItemId"

__all__ = ["REGION_COLUMN", "PROB_COLUMN", "SCORE_COLUMN", "BEST_REGION_COLUMN",
           "GLOBAL_SEARCH_COLUMN", "REGIONS_SEARCHED_COLUMN", "ITEM_ID_COLUMN"]
