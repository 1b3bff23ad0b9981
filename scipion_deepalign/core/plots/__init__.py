"""Figures (matplotlib, headless): the one front door of the core's pictures.

* :mod:`.curves` -- FSC, sorted angular differences, training history;
* :mod:`.sphere` -- maps of the projection sphere (particle directions, values per region);
* :mod:`._figures` -- the figure plumbing both share.
"""
from .curves import (
    FSC_THRESHOLDS,
    network_name,
    plot_fsc,
    plot_sorted_angular_differences,
    plot_training_history,
)
from .sphere import (
    POINTS_UP_TO,
    equal_area_histogram,
    plot_angular_distribution,
    plot_region_accuracy,
    plot_region_counts,
    sphere_coordinates_rad,
)

__all__ = ["FSC_THRESHOLDS", "network_name", "plot_fsc", "plot_sorted_angular_differences",
           "plot_training_history", "POINTS_UP_TO", "equal_area_histogram",
           "plot_angular_distribution", "plot_region_accuracy", "plot_region_counts",
           "sphere_coordinates_rad"]
