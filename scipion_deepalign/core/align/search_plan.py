"""Which reference directions each particle is compared with: windows, adaptive k, the search
around the kept poses, fallback.

The asymmetric unit is cut into **tiles**, small patches around the centres of a grid three
times finer than the regions (:func:`build_tiles`); every fine gallery direction belongs to
exactly one tile. A region's **search window** is the set of tiles at most ``overlap_deg``
farther from the region's centre than from their own nearest centre: ``overlap_deg = 0`` is
the region itself (its Voronoi cell, at tile resolution); larger values reach into the
neighbours, so that a particle near a border is searched on both sides (Xmipp's DeepAlign
searched a window of ±span around each centre for the same reason).

A particle searches the union of the windows of its selected regions, each tile once, so a
comparison is never counted (or computed) twice. Then it **follows its best pose**
(``follow_deg``): the tiles whose centre lies within that angle of the gallery directions its
search kept, and that it has not searched, are searched too (:meth:`SearchPlan.follow`). A
particle whose true view lies just across the border of its searched regions finds its best
pose near that border, and the tiles around that pose reach across it: the reach of a window
where it is needed, not around every region searched. The regions are selected from the
network's probabilities (:func:`select_regions`): the ``top_k`` best, or, with
``probability_mass``, as many as it takes for their probabilities to add up to that mass
(at most ``max_regions``). Particles whose best probability is below
``fallback_probability`` are **searched globally** (every tile): the network is unsure of
them, and a wrong region would give a wrong pose. After the search, ``fallback_significance``
sends to the global search the particles whose best pose stood out too little from the poses
they met (:func:`.search.peak_significance`; done by :func:`.align.align_particles`): the
network was sure, but wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..defaults import REGION_SPACING_DEG, TOP_K

__all__ = ["TILE_FRACTION", "SearchOptions", "SearchTiles", "build_tiles",
           "select_regions", "SearchPlan", "plan_search", "plan_alignment"]

#: Tile spacing as a fraction of the region spacing.
TILE_FRACTION = 1.0 / 3.0


@dataclass
class SearchOptions:
    """How the regional search widens around the predicted regions (defaults: measured).

    Attributes
    ----------
    overlap_deg : float
        Reach of each region's window into its neighbours (:func:`build_tiles`). Default 0
        (the regions' own cells): ``follow_deg`` reaches across their borders where the kept
        poses lie, for a third fewer comparisons than windows of 15 deg and the same poses
        (docs/benchmarks_accuracy.md, "Following the kept poses").
    follow_deg : float
        After the regions' search, the tiles within this angle of the gallery poses each
        particle's search kept (its best and the pool of the refinement's starts) that it did
        not search are searched too (:meth:`SearchPlan.follow`; 0: never). Default 15,
        measured with ``overlap_deg`` (same section).
    probability_mass : float or None
        Search regions, best first, until their probabilities add up to this mass
        (None: the ``k`` regions given).
    max_regions : int or None
        At most this many regions per particle with ``probability_mass``. Defaults 0.8 and
        16, chosen by measurement: a low mass with a high cap spends the regions on the
        particles the network is unsure of, and 0.8 is the least mass within one point of
        the global search with the search around the kept poses (docs/benchmarks_accuracy.md,
        "Regions searched: probability mass and cap" and "Following the kept poses").
    fallback_probability : float
        Particles whose best region probability is below it are searched globally
        (0: never, the default: measured, it bought little accuracy for its cost).
    fallback_significance : float
        After the regional search, particles whose best pose stands out from the poses they
        were compared with by a :func:`~.search.peak_significance` below it are searched
        again globally (0: never; about 1 is what the best of pure-noise scores reaches).
        Used only where the significance separates good from bad poses (see
        :func:`.align.align_particles`). Default 1.2, measured: on the 70S ribosome within
        10 deg 0.974 -> 0.992 (SNR 0.1) and 0.896 -> 0.977 (SNR 0.05) against 0.997 and 0.984
        for the global search, for 1.9 % and 10 % of the particles searched again
        (docs/benchmarks_accuracy.md).
    """

    overlap_deg: float = 0.0
    follow_deg: float = 15.0
    probability_mass: float | None = 0.8
    max_regions: int | None = TOP_K
    fallback_probability: float = 0.0
    fallback_significance: float = 1.2

    def __post_init__(self):
        if not self.overlap_deg >= 0:
            raise ValueError(f"the window overlap must be >= 0 degrees, got {self.overlap_deg}")
        if not 0 <= self.follow_deg <= 180:
            raise ValueError("the reach around the kept poses must be in [0, 180] degrees, "
                             f"got {self.follow_deg}")
        if self.probability_mass is not None and not 0 < self.probability_mass <= 1:
            raise ValueError("the probability mass must be in (0, 1], "
                             f"got {self.probability_mass}")
        if self.max_regions is not None and int(self.max_regions) < 1:
            raise ValueError(f"the maximum number of regions must be >= 1, got {self.max_regions}")
        if self.fallback_probability is None:
            self.fallback_probability = 0.0
        if not 0 <= self.fallback_probability < 1:
            raise ValueError("the fallback probability must be in [0, 1), "
                             f"got {self.fallback_probability}")
        if self.fallback_significance is None:
            self.fallback_significance = 0.0
        if not 0 <= self.fallback_significance < 10:
            raise ValueError("the fallback significance must be in [0, 10), "
                             f"got {self.fallback_significance}")

    @classmethod
    def default(cls, name: str):
        """The default of one option (what the CLI and the forms show)."""
        return cls.__dataclass_fields__[name].default

    @property
    def needs_probabilities(self) -> bool:
        return self.probability_mass is not None or bool(self.fallback_probability)


@dataclass
class SearchTiles:
    """Tiles of the asymmetric unit and the search window of every region.

    Attributes
    ----------
    directions_deg : list of T ndarrays of shape (M_t, 2)
        Fine gallery directions of each tile (together: the asymmetric unit, each once).
    windows : list of R int ndarrays
        Tiles in each region's search window.
    nearest_region : ndarray of shape (T,) int
        Region whose centre is nearest to each tile's centre.
    centres_deg : ndarray of shape (T, 2)
        Centre of each tile.
    symmetry : str
    """

    directions_deg: list
    windows: list
    nearest_region: np.ndarray
    centres_deg: np.ndarray
    symmetry: str

    def __len__(self) -> int:
        return len(self.directions_deg)


def build_tiles(centres_deg, symmetry: str, step_deg: float, *,
                overlap_deg: float = 0.0, spacing_deg: float | None = None) -> SearchTiles:
    """Tiles of the asymmetric unit at ``step_deg`` and the windows of the regions.

    Parameters
    ----------
    centres_deg : ndarray of shape (R, 2)
        Region centres.
    symmetry : str
    step_deg : float
        Gallery direction step.
    overlap_deg : float
        How far a window reaches into the neighbouring regions (see the module docstring).
    spacing_deg : float, optional
        Region spacing; by default the median angle between neighbouring centres.

    Returns
    -------
    SearchTiles
    """
    from ..regions import region_centres_deg, region_direction_grids, region_distances_deg

    centres = np.asarray(centres_deg, dtype=np.float64)
    if not overlap_deg >= 0:
        raise ValueError(f"the window overlap must be >= 0 degrees, got {overlap_deg}")
    if spacing_deg is None:
        spacing_deg = _median_neighbour_angle(centres, symmetry)
    tile_spacing = max(float(step_deg), TILE_FRACTION * float(spacing_deg), 1.0)
    tile_centres = np.asarray(region_centres_deg(min(tile_spacing, 90.0), symmetry))
    directions = [np.asarray(d, dtype=np.float64).reshape(-1, 2) for d in
                  region_direction_grids(tile_centres, symmetry, step_deg)]
    dist = region_distances_deg(tile_centres, centres, symmetry)  # (T, R)
    nearest = dist.min(axis=1, keepdims=True)
    inside = dist <= nearest + float(overlap_deg) + 1e-9
    windows = [np.flatnonzero(inside[:, r]) for r in range(len(centres))]
    return SearchTiles(directions, windows, np.argmin(dist, axis=1), tile_centres, symmetry)


def _median_neighbour_angle(centres, symmetry) -> float:
    from ..regions import region_distances_deg

    if len(centres) < 2:
        return 90.0
    dist = region_distances_deg(centres, centres, symmetry)
    np.fill_diagonal(dist, np.inf)
    return float(np.median(dist.min(axis=1)))


def select_regions(regions, probabilities=None, *, top_k=None, probability_mass=None,
                   max_regions=None) -> np.ndarray:
    """Regions each particle searches, best first, padded with -1.

    Parameters
    ----------
    regions : int ndarray of shape (N, k)
        0-based candidate regions, best first (the prediction's top k).
    probabilities : ndarray of shape (N, k), optional
        Their probabilities (needed with ``probability_mass``).
    top_k : int, optional
        Keep the first ``top_k`` (all ``k`` by default).
    probability_mass : float in (0, 1], optional
        Keep regions, best first, until their probabilities add up to this mass.
    max_regions : int, optional
        At most this many with ``probability_mass`` (default: all ``k`` candidates).

    Returns
    -------
    int ndarray of shape (N, k); entries after a particle's last region are -1.
    """
    regions = np.asarray(regions, dtype=np.int64)
    if regions.ndim != 2:
        raise ValueError(f"region hints must have shape (N, k), got {regions.shape}")
    n, k = regions.shape
    keep = np.ones((n, k), dtype=bool)
    if probability_mass is not None:
        if probabilities is None:
            raise ValueError("an adaptive number of regions needs the region probabilities")
        if not 0 < probability_mass <= 1:
            raise ValueError(f"the probability mass must be in (0, 1], got {probability_mass}")
        p = np.asarray(probabilities, dtype=np.float64)
        before = np.cumsum(p, axis=1) - p  # mass of the better regions
        keep = before < probability_mass
        keep[:, 0] = True
        limit = k if max_regions is None else int(max_regions)
        keep[:, limit:] = False
    elif top_k is not None:
        keep[:, int(top_k):] = False
    return np.where(keep & (regions >= 0), regions, -1)


@dataclass
class SearchPlan:
    """The tiles every particle is compared with.

    Attributes
    ----------
    tiles : SearchTiles
    members : list of T int ndarrays
        Particles compared with each tile.
    fallback : ndarray of shape (N,) bool
        Particles searched globally because their prediction was unsure.
    n_regions_searched : ndarray of shape (N,) int
        Regions selected per particle (R for the fallback ones).
    info : dict
    follow_deg : float
        Reach of the second search around each particle's best pose (:meth:`follow`; 0:
        none, as in a global search).
    """

    tiles: SearchTiles
    members: list
    fallback: np.ndarray
    n_regions_searched: np.ndarray
    info: dict = field(default_factory=dict)
    follow_deg: float = 0.0

    def follow(self, rows, directions_deg) -> SearchPlan | None:
        """The second search of the particles ``rows`` around the poses their search kept.

        Parameters
        ----------
        rows : int ndarray of shape (n,)
            Particles (indices of this plan), consecutive.
        directions_deg : ndarray of shape (n, m, 2)
            The gallery directions of each particle's ``m`` kept poses after the plan's
            search (best first; the pool the refinement's starts are chosen from).

        Returns
        -------
        SearchPlan or None
            The same tiles; each particle of ``rows`` is a member of the tiles whose centre
            lies within ``follow_deg`` of one of its directions (up to symmetry) and that it
            did not search; ``None`` when there are none (or ``follow_deg`` is 0).
        """
        from ..regions import region_distances_deg

        rows = np.asarray(rows, dtype=np.int64)
        if not self.follow_deg or len(rows) == 0:
            return None
        directions = np.asarray(directions_deg, dtype=np.float64).reshape(-1, 2)
        unique, which = np.unique(directions, axis=0, return_inverse=True)
        close = region_distances_deg(unique, self.tiles.centres_deg,
                                     self.tiles.symmetry) <= float(self.follow_deg)
        near = close[which.ravel()].reshape(len(rows), -1, len(self.tiles)).any(axis=1)
        for t, members in enumerate(self.members):
            inside = members[(members >= rows[0]) & (members <= rows[-1])]
            near[inside - rows[0], t] = False
        if not near.any():
            return None
        return SearchPlan(self.tiles, [rows[near[:, t]] for t in range(len(self.tiles))],
                          self.fallback, self.n_regions_searched,
                          {"mean_tiles_followed": float(near.sum(axis=1).mean())})


def plan_search(tiles: SearchTiles, n_particles: int, *, region_lists=None,
                top_probability=None, fallback_probability=None,
                follow_deg: float = 0.0) -> SearchPlan:
    """Per-tile particle lists from the selected regions (None: every particle, every tile).

    Parameters
    ----------
    tiles : SearchTiles
    n_particles : int
    region_lists : int ndarray of shape (N, k) or None
        Output of :func:`select_regions`; None is the global search.
    top_probability : ndarray of shape (N,), optional
        Best region probability of each particle (for the fallback).
    fallback_probability : float, optional
        Particles whose best probability is below it are searched globally.
    follow_deg : float
        Reach of the second search around each particle's best pose
        (:meth:`SearchPlan.follow`); not used in a global search.
    """
    n_tiles, n_regions = len(tiles), len(tiles.windows)
    if region_lists is None:
        everyone = np.arange(n_particles)
        return SearchPlan(tiles, [everyone] * n_tiles, np.ones(n_particles, bool),
                          np.full(n_particles, n_regions), {"mode": "global"})
    lists = np.asarray(region_lists, dtype=np.int64)
    fallback = np.zeros(n_particles, dtype=bool)
    if fallback_probability is not None and fallback_probability > 0:
        if top_probability is None:
            raise ValueError("the fallback needs the region probabilities")
        fallback = np.asarray(top_probability, dtype=np.float64) < float(fallback_probability)
    window = np.zeros((n_regions, n_tiles), dtype=bool)
    for r, w in enumerate(tiles.windows):
        window[r, w] = True
    need = np.zeros((n_particles, n_tiles), dtype=bool)
    for column in lists.T:
        ok = column >= 0
        need[ok] |= window[column[ok]]
    need[fallback] = True
    members = [np.flatnonzero(need[:, t]) for t in range(n_tiles)]
    searched = np.where(fallback, n_regions, (lists >= 0).sum(axis=1))
    info = {"mode": "regional", "fallback_fraction": float(fallback.mean()),
            "mean_regions_searched": float(searched.mean()),
            "mean_tiles_searched": float(need.sum(axis=1).mean())}
    return SearchPlan(tiles, members, fallback, searched, info, follow_deg=follow_deg)


def plan_alignment(n, *, symmetry, step_deg, centres_deg=None, region_hints=None,
                   region_probabilities=None, options: SearchOptions | None = None) -> SearchPlan:
    """The plan of ``align_particles``: tiles and the particles of every tile.

    ``options`` ``None`` takes the defaults; without ``region_probabilities`` every hinted
    region is then searched (no probability mass, no fallback). Global mode without
    ``centres_deg`` tiles the asymmetric unit with the regions of the default spacing
    (:data:`~scipion_deepalign.core.defaults.REGION_SPACING_DEG`).
    """
    if options is None:
        options = SearchOptions()
        if region_probabilities is None:
            options = replace(options, probability_mass=None, fallback_probability=0.0)
    if centres_deg is None:
        from ..regions import region_centres_deg
        centres_deg = region_centres_deg(REGION_SPACING_DEG, symmetry)
    tiles = build_tiles(centres_deg, symmetry, step_deg, overlap_deg=options.overlap_deg)
    if region_hints is None:
        return plan_search(tiles, n)
    probs = None
    if region_probabilities is not None:
        probs = np.asarray(region_probabilities, dtype=np.float64)
        if probs.shape != region_hints.shape:
            raise ValueError(f"region_probabilities must have the shape of region_hints "
                             f"{region_hints.shape}, got {probs.shape}")
    elif options.needs_probabilities:
        raise ValueError("the adaptive number of regions and the global fallback need the "
                         "region probabilities of the prediction")
    lists = select_regions(region_hints, probs, probability_mass=options.probability_mass,
                           max_regions=options.max_regions)
    return plan_search(tiles, n, region_lists=lists,
                       top_probability=None if probs is None else probs[:, 0],
                       fallback_probability=options.fallback_probability,
                       follow_deg=options.follow_deg)
