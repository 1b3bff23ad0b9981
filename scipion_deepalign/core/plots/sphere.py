"""Maps of the projection sphere: particle directions, and values per region centre.

Mollweide projection (equal area, as RELION's and cryoSPARC's viewers are read): longitude
``rot``, latitude ``90 - tilt`` (north pole = tilt 0), both in degrees on the axes, radians
in the plotted data. Densities are counted in equal-area bins, so a uniform distribution
looks uniform; the colour bar gives particles per bin.
Re-exported by :mod:`scipion_deepalign.core.plots`.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ._figures import figure, finish

__all__ = ["sphere_coordinates_rad", "equal_area_histogram", "plot_angular_distribution",
           "plot_region_accuracy", "plot_region_counts", "POINTS_UP_TO"]

#: individual particles are drawn over the density up to this many particles
POINTS_UP_TO = 300
_SPHERE_DEG2 = 4 * np.pi * np.rad2deg(1.0) ** 2  # 41253 square degrees
_TILT_TICKS_DEG = (30, 60, 90, 120, 150)
_ROT_GRID_DEG = 60


def sphere_coordinates_rad(angles_deg):
    """Mollweide coordinates ``(longitude, latitude)`` in radians of ``(rot, tilt[, psi])``.

    Parameters
    ----------
    angles_deg : ndarray of shape (N, 2) or (N, 3)

    Returns
    -------
    longitude, latitude : ndarray of shape (N,)
        ``rot`` wrapped to [-180, 180) and ``90 - tilt``, in radians.
    """
    a = np.asarray(angles_deg, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] not in (2, 3):
        raise ValueError(f"angles_deg must have shape (N, 2) or (N, 3), got {a.shape}")
    lon = (a[:, 0] + 180.0) % 360.0 - 180.0
    return np.deg2rad(lon), np.deg2rad(90.0 - a[:, 1])


def equal_area_histogram(lon_rad, lat_rad, *, n_bins=None):
    """Counts of directions in equal-area bins of the sphere.

    Bins are regular in longitude and in ``sin(latitude)`` (Lambert), so each covers the same
    solid angle. ``n_bins`` (about; default: one bin per 20 particles, 48 to 2592 bins)
    sets the resolution.

    Returns
    -------
    lon_edges, lat_edges : ndarray of shape (L + 1,), (M + 1,)
        Radians.
    counts : ndarray of shape (M, L)
    bin_deg2 : float
        Area of one bin in square degrees.
    """
    lon_rad, lat_rad = np.asarray(lon_rad, float), np.asarray(lat_rad, float)
    if n_bins is None:
        n_bins = int(np.clip(lon_rad.size / 20, 48, 2592))
    n_lat = max(4, int(round(np.sqrt(n_bins / 2))))
    n_lon = 2 * n_lat
    lon_edges = np.linspace(-np.pi, np.pi, n_lon + 1)
    lat_edges = np.arcsin(np.linspace(-1.0, 1.0, n_lat + 1))
    counts, _, _ = np.histogram2d(np.clip(lat_rad, -np.pi / 2, np.pi / 2), lon_rad,
                                  bins=(lat_edges, lon_edges))
    return lon_edges, lat_edges, counts, _SPHERE_DEG2 / (n_lon * n_lat)


def _sphere_axes(fig, title):
    """Mollweide axes with tilt labels at the left edge and no labels across the map.

    Longitude labels would sit on the equator, across the data; the x label says where rot
    runs instead (the grid is drawn every 60 degrees).
    """
    ax = fig.add_subplot(projection="mollweide")
    ax.grid(True, alpha=0.35, linewidth=0.6)
    ax.set_xticks(np.deg2rad(np.arange(-180 + _ROT_GRID_DEG, 180, _ROT_GRID_DEG)))
    ax.set_xticklabels([])
    ax.set_yticks(np.deg2rad([90 - t for t in _TILT_TICKS_DEG]))
    ax.set_yticklabels([f"tilt {t}°" for t in _TILT_TICKS_DEG], fontsize="small")
    ax.set_xlabel(f"rot: -180° at the left edge, 0° at the centre, 180° at the right edge "
                  f"(grid every {_ROT_GRID_DEG}°)", fontsize="small")
    ax.set_title(title)
    return ax


def plot_angular_distribution(angles_deg, *, title=None, path=None, fig=None):
    """Density of projection directions on a Mollweide map, with a colour bar.

    Parameters
    ----------
    angles_deg : ndarray of shape (N, 2) or (N, 3)
    title : str or None, keyword-only
        Default: ``"Angular distribution (N particles)"``.
    path : str or None, keyword-only
        File to write (PNG, SVG, PDF: from the extension).

    Returns
    -------
    Figure
        Axes 0 holds the density (a QuadMesh, each equal-area bin drawn as 4 x 4 cells, so
        its array sums to 16 N; empty bins masked) and,
        up to :data:`POINTS_UP_TO` particles, the points (a scatter whose offsets are
        :func:`sphere_coordinates_rad` of the input); axes 1 is the colour bar.
    """
    lon, lat = sphere_coordinates_rad(angles_deg)
    fig = figure(fig, (8, 4.6))
    ax = _sphere_axes(fig, title or f"Angular distribution ({lon.size} particles)")
    lon_edges, lat_edges, counts, bin_deg2 = equal_area_histogram(lon, lat)
    top = counts.max() if counts.size else 0
    occupied = counts[counts > 0]
    norm = (LogNorm(vmin=1, vmax=top) if occupied.size and top / occupied.min() >= 30
            else Normalize(vmin=1, vmax=max(top, 2)))  # empty bins are white, not 0
    # each bin drawn as 4 x 4 quads: straight quad edges then follow the curved map outline
    fine_lon = np.linspace(-np.pi, np.pi, 4 * (lon_edges.size - 1) + 1)
    fine_lat = np.arcsin(np.linspace(-1.0, 1.0, 4 * (lat_edges.size - 1) + 1))
    fine = np.repeat(np.repeat(counts, 4, axis=0), 4, axis=1)
    mesh = ax.pcolormesh(fine_lon, fine_lat, np.ma.masked_equal(fine, 0), cmap="viridis",
                         norm=norm, shading="flat", rasterized=True)
    if lon.size <= POINTS_UP_TO:
        ax.scatter(lon, lat, s=8 if lon.size > 100 else 14, c="white", edgecolors="black",
                   linewidths=0.4, zorder=3)
    bar = fig.colorbar(mesh, ax=ax, shrink=0.75, pad=0.02,
                       label=f"particles per bin ({bin_deg2:.0f} deg² each)")
    if isinstance(norm, LogNorm):  # 1, 2, 5, 10, 20... rather than powers of ten only
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    return finish(fig, path)


def plot_region_accuracy(centres_deg, val_accuracy, *, path=None, fig=None):
    """Validation accuracy of each region's own network at its centre (regional networks).

    Parameters
    ----------
    centres_deg : ndarray of shape (R, 2) or (R, 3)
    val_accuracy : ndarray of shape (R,)
        In [0, 1]; NaN for regions without a network (skipped for too few particles): drawn
        as grey crosses, listed in the legend.

    Returns
    -------
    Figure
        Axes 0: collection 0 is the scatter of all centres (offsets = their coordinates, array
        = the accuracies); a second scatter marks the regions without a network.
    """
    lon, lat = sphere_coordinates_rad(centres_deg)
    acc = np.asarray(val_accuracy, dtype=np.float64).ravel()
    if acc.shape != lon.shape:
        raise ValueError(f"val_accuracy has {acc.size} values for {lon.size} region centres")
    trained = np.isfinite(acc)
    fig = figure(fig, (8, 4.6))
    mean = f"mean {np.mean(acc[trained]):.2f} over {trained.sum()} networks" if trained.any() \
        else "no network trained"
    ax = _sphere_axes(fig, f"Validation accuracy of each region's network ({mean})")
    points = ax.scatter(lon, lat, c=acc, cmap="viridis", vmin=0.0, vmax=1.0, s=70,
                        edgecolors="k", linewidths=0.5, plotnonfinite=False, zorder=3)
    if not trained.all():
        ax.scatter(lon[~trained], lat[~trained], marker="x", c="grey", s=40, zorder=3,
                   label=f"no network ({(~trained).sum()} regions, too few particles)")
        ax.legend(loc="lower right", fontsize="small", framealpha=0.8)
    fig.colorbar(points, ax=ax, shrink=0.75, pad=0.02, label="best validation accuracy")
    return finish(fig, path)


def plot_region_counts(centres_deg, counts, *, overall_accuracy=None, path=None, fig=None):
    """Training particles per region at the region centres (the shared network).

    The shared network has one validation accuracy for all regions (``overall_accuracy``,
    given in the title), not one per region.

    Returns
    -------
    Figure
        Axes 0: collection 0 is the scatter of the centres, its array the counts.
    """
    lon, lat = sphere_coordinates_rad(centres_deg)
    counts = np.asarray(counts, dtype=np.float64).ravel()
    if counts.shape != lon.shape:
        raise ValueError(f"counts has {counts.size} values for {lon.size} region centres")
    fig = figure(fig, (8, 4.6))
    accuracy = "" if overall_accuracy is None else \
        f", validation accuracy {overall_accuracy:.2f}"
    ax = _sphere_axes(fig, f"Shared network: training particles per region{accuracy}")
    points = ax.scatter(lon, lat, c=counts, cmap="viridis", vmin=0.0,
                        vmax=max(float(counts.max()), 1.0), s=70, edgecolors="k",
                        linewidths=0.5, zorder=3)
    fig.colorbar(points, ax=ax, shrink=0.75, pad=0.02, label="training particles")
    return finish(fig, path)
