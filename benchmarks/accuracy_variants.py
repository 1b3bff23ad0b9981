"""The variants ``bench_accuracy.py`` compares: training options and search options by label,
and the labels of the two global searches.

Every option is spelled out, so that a label keeps its meaning when a default changes.
"""
from scipion_deepalign.core.align.search_plan import SearchOptions
from scipion_deepalign.core.defaults import GALLERY_STEP_PX

#: training variants: label -> TrainConfig options
TRAINING = {
    "projections, softmax": dict(training_source="projections", head="softmax"),
    "projections, softmax, no noise curriculum": dict(training_source="projections",
                                                      head="softmax", noise_ramp_epochs=0),
    "projections, softmax, cartesian": dict(training_source="projections", head="softmax",
                                            trunk="cartesian"),
    "projections, sigmoid": dict(training_source="projections", head="sigmoid"),
    "both, softmax": dict(training_source="both", head="softmax"),
    "particles, softmax": dict(training_source="particles", head="softmax"),
    "particles, sigmoid (0.1.0)": dict(training_source="particles", head="sigmoid"),
}
DEFAULT_TRAINING = "projections, softmax"

#: search variants: label -> (regions predicted per particle, SearchOptions); every option
#: spelled out, so that a label keeps its meaning when a default changes
_NO_FALLBACK = dict(fallback_probability=0.0, fallback_significance=0.0)
#: the windows of every variant before the search around the kept poses (2026-12-07)
_W15, _W10 = dict(overlap_deg=15.0, follow_deg=0.0), dict(overlap_deg=10.0, follow_deg=0.0)
SEARCH = {
    "top-2, no window (0.1.0)": (2, SearchOptions(overlap_deg=0.0, follow_deg=0.0,
                                                  probability_mass=None, **_NO_FALLBACK)),
    "window 15, mass 0.8, max 4": (4, SearchOptions(probability_mass=0.8, max_regions=4,
                                                    **_W15, **_NO_FALLBACK)),
    "window 15, mass 0.8, max 4 + fallback p<0.2": (
        4, SearchOptions(probability_mass=0.8, max_regions=4, fallback_probability=0.2,
                         fallback_significance=0.0, **_W15)),
    "window 15, mass 0.9, max 6 (default until 2026-12-04)": (
        6, SearchOptions(probability_mass=0.9, max_regions=6, **_W15, **_NO_FALLBACK)),
    "window 15, mass 0.9, max 6, significance s<1.2 (default until 2026-12-06)": (
        6, SearchOptions(probability_mass=0.9, max_regions=6, fallback_probability=0.0,
                         fallback_significance=1.2, **_W15)),
    "window 15, mass 0.75, max 16, significance s<1.2 (default until 2026-12-07)": (
        16, SearchOptions(probability_mass=0.75, max_regions=16, fallback_probability=0.0,
                          fallback_significance=1.2, **_W15)),
    "cells + 15 around the kept poses, mass 0.75, max 16, significance s<1.2": (
        16, SearchOptions(overlap_deg=0.0, follow_deg=15.0, probability_mass=0.75,
                          max_regions=16, fallback_probability=0.0, fallback_significance=1.2)),
    "default (cells + 15 around the kept poses, mass 0.8, max 16, significance s<1.2)": (
        16, SearchOptions(overlap_deg=0.0, follow_deg=15.0, probability_mass=0.8,
                          max_regions=16, fallback_probability=0.0, fallback_significance=1.2)),
    "window 15, mass 0.8, max 4 + significance s<1.2": (
        4, SearchOptions(probability_mass=0.8, max_regions=4, fallback_significance=1.2,
                         **_W15)),
    "window 10, mass 0.8, max 3": (3, SearchOptions(probability_mass=0.8, max_regions=3,
                                                    **_W10, **_NO_FALLBACK)),
    "window 10, mass 0.8, max 3 + significance s<1.2": (
        3, SearchOptions(probability_mass=0.8, max_regions=3, fallback_significance=1.2,
                         **_W10)),
}
DEFAULT_SEARCH = ("default (cells + 15 around the kept poses, mass 0.8, max 16, "
                  "significance s<1.2)")

#: the automatic gallery step without / with the refinement, as the labels say it
FINE_PX, COARSE_PX = (f"{GALLERY_STEP_PX[refine]:g}-px gallery" for refine in (False, True))
#: the baseline every ratio is taken against: the exhaustive search of the fine gallery
BASELINE = f"global search, {FINE_PX} (baseline)"
#: the global search as the alignment makes it by default (coarser gallery + refinement)
GLOBAL_DEFAULT = f"global search, default ({COARSE_PX} + refinement)"
assert SEARCH[DEFAULT_SEARCH][1] == SearchOptions(), "DEFAULT_SEARCH must be the core default"
