"""Figures of the judging results and of CNN training (matplotlib, no display needed).

Every function builds a :class:`matplotlib.figure.Figure` without pyplot (so it works headless
and leaves no global state), optionally saves it as PNG at ``path`` and returns it. Pass
``fig=`` (e.g. ``pyplot.figure()``) to draw into a figure managed elsewhere (Scipion viewers).
Sphere maps use the Mollweide projection with longitude ``rot`` and latitude ``90 - tilt``
(north pole = tilt 0), both in degrees on the axes, radians in the plotted data.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_fsc", "plot_sorted_angular_differences", "plot_angular_distribution",
           "plot_training_history", "plot_region_accuracy", "sphere_coordinates_rad"]

FSC_THRESHOLDS = (0.143, 0.5)


def _figure(fig, figsize):
    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    fig.clear()
    return fig


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _labels(labels, n, default):
    if labels is None:
        return [f"{default} {i + 1}" for i in range(n)]
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for {n} curves")
    return labels


def _angstrom(value) -> str:
    return "n/a" if value is None else f"{value:.1f} A"


def plot_fsc(results, labels=None, *, path=None, fig=None) -> Figure:
    """FSC curves with the 0.143 and 0.5 thresholds; resolutions in the legend.

    Parameters
    ----------
    results : list of FSCResult
        From :func:`scipion_deepalign.core.fsc.fsc_curve`.
    labels : list of str or None
    path : str or None, keyword-only
        PNG file to write.

    Returns
    -------
    Figure
        One axes; its first ``len(results)`` lines are the curves (x: 1/Angstrom, y: FSC).
    """
    results = list(results)
    labels = _labels(labels, len(results), "FSC")
    fig = _figure(fig, (6, 4))
    ax = fig.add_subplot()
    for res, label in zip(results, labels):
        ax.plot(res.frequency_inv_a, res.fsc,
                label=f"{label} (0.143: {_angstrom(res.resolution_0143_a)}, "
                      f"0.5: {_angstrom(res.resolution_05_a)})")
    for t, style in zip(FSC_THRESHOLDS, (":", "--")):
        ax.axhline(t, color="grey", linestyle=style, linewidth=1)
    ax.set_xlabel("Spatial frequency (1/A)")
    ax.set_ylabel("FSC")
    ax.set_ylim(min(-0.1, *(float(np.min(r.fsc)) for r in results)) if results else -0.1, 1.05)
    ax.set_title("Fourier shell correlation")
    if results:
        ax.legend(fontsize="small")
    return _finish(fig, path)


def plot_sorted_angular_differences(diffs_deg, labels=None, *, threshold_deg=None, path=None,
                                    fig=None) -> Figure:
    """Angular differences per particle sorted from lowest to highest, and their histogram.

    Parameters
    ----------
    diffs_deg : list of ndarray of shape (N_k,)
        One set of per-particle angular differences (degrees) per comparison.
    labels : list of str or None
    threshold_deg : float or None, keyword-only
        Drawn as a line; the legend gives the fraction of particles below it.
    path : str or None, keyword-only

    Returns
    -------
    Figure
        Axes 0: the sorted curves (x: particle rank, y: degrees), one line per input first.
        Axes 1: the histograms.
    """
    diffs = [np.asarray(d, dtype=np.float64).ravel() for d in diffs_deg]
    labels = _labels(labels, len(diffs), "set")
    fig = _figure(fig, (10, 4))
    ax_sorted, ax_hist = fig.subplots(1, 2)
    top = max([float(d.max()) for d in diffs if d.size] + [1.0])
    bins = np.linspace(0.0, top, 40)
    for d, label in zip(diffs, labels):
        text = label
        if threshold_deg is not None and d.size:
            text += f" ({100 * np.mean(d < threshold_deg):.0f}% < {threshold_deg:g} deg)"
        ax_sorted.plot(np.arange(d.size), np.sort(d), label=text)
        ax_hist.hist(d, bins=bins, histtype="step", label=label)
    if threshold_deg is not None:
        ax_sorted.axhline(threshold_deg, color="grey", linestyle="--", linewidth=1)
        ax_hist.axvline(threshold_deg, color="grey", linestyle="--", linewidth=1)
    ax_sorted.set_xlabel("Particle (sorted)")
    ax_sorted.set_ylabel("Angular difference (deg)")
    ax_sorted.set_title("Sorted angular differences")
    ax_hist.set_xlabel("Angular difference (deg)")
    ax_hist.set_ylabel("Particles")
    if diffs:
        ax_sorted.legend(fontsize="small")
    return _finish(fig, path)


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


def _sphere_axes(fig, title):
    ax = fig.add_subplot(projection="mollweide")
    ax.grid(True, alpha=0.4)
    ax.set_xlabel("rot (deg)")
    ax.set_ylabel("90 - tilt (deg)")
    ax.set_title(title)
    return ax


def plot_angular_distribution(angles_deg, *, path=None, fig=None) -> Figure:
    """Projection directions of particles on a Mollweide sphere map.

    Parameters
    ----------
    angles_deg : ndarray of shape (N, 2) or (N, 3)
    path : str or None, keyword-only

    Returns
    -------
    Figure
        The scatter's offsets are :func:`sphere_coordinates_rad` of the input.
    """
    lon, lat = sphere_coordinates_rad(angles_deg)
    fig = _figure(fig, (7, 4))
    ax = _sphere_axes(fig, f"Angular distribution ({lon.size} particles)")
    ax.scatter(lon, lat, s=4, alpha=0.5, linewidths=0)
    return _finish(fig, path)


def plot_region_accuracy(centres_deg, val_accuracy, *, path=None, fig=None) -> Figure:
    """Validation accuracy of each region's CNN at its centre on a sphere map.

    Parameters
    ----------
    centres_deg : ndarray of shape (R, 2) or (R, 3)
    val_accuracy : ndarray of shape (R,)
        In [0, 1]; NaN for regions without a value (drawn hollow).
    path : str or None, keyword-only

    Returns
    -------
    Figure
        The scatter's offsets are the centres' coordinates, its array the accuracies.
    """
    lon, lat = sphere_coordinates_rad(centres_deg)
    acc = np.asarray(val_accuracy, dtype=np.float64).ravel()
    if acc.shape != lon.shape:
        raise ValueError(f"val_accuracy has {acc.size} values for {lon.size} region centres")
    fig = _figure(fig, (7, 4))
    mean = np.nanmean(acc) if np.any(np.isfinite(acc)) else float("nan")
    ax = _sphere_axes(fig, f"Validation accuracy per region (mean {mean:.2f})")
    points = ax.scatter(lon, lat, c=acc, cmap="viridis", vmin=0.0, vmax=1.0, s=60,
                        edgecolors="k", linewidths=0.5, plotnonfinite=True)
    fig.colorbar(points, ax=ax, shrink=0.7, label="validation accuracy")
    return _finish(fig, path)


_HISTORY_PANELS = (("loss", "Loss"), ("accuracy", "Accuracy"))


def plot_training_history(histories, *, path=None, fig=None, max_legend: int = 10) -> Figure:
    """Loss and accuracy per epoch of each region's CNN (training solid, validation dashed).

    Parameters
    ----------
    histories : dict of int to dict
        Region -> Keras ``History.history``-like dict with lists ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy`` (the ``val_`` ones optional); other keys (e.g.
        ``"region"``) are ignored.
    path : str or None, keyword-only
    max_legend : int, keyword-only
        No legend above this many regions.

    Returns
    -------
    Figure
        Axes 0 holds the loss lines, axes 1 the accuracy lines; for each region in the dict's
        order, the training line then (if present) the validation line, x = epochs 1, 2, ...
    """
    if not histories:
        raise ValueError("histories is empty: no training history to plot")
    fig = _figure(fig, (10, 4))
    axes = fig.subplots(1, 2)
    for region, hist in histories.items():
        for ax, (key, _) in zip(axes, _HISTORY_PANELS):
            if key not in hist:
                raise ValueError(f"history of region {region} has no '{key}' "
                                 f"(keys: {sorted(hist)})")
            values = np.asarray(hist[key], dtype=np.float64)
            line, = ax.plot(np.arange(1, values.size + 1), values, label=f"region {region}")
            if f"val_{key}" in hist:
                val = np.asarray(hist[f"val_{key}"], dtype=np.float64)
                ax.plot(np.arange(1, val.size + 1), val, linestyle="--", color=line.get_color())
    for ax, (_, title) in zip(axes, _HISTORY_PANELS):
        ax.set_xlabel("Epoch")
        ax.set_ylabel(title)
        ax.set_title(f"{title} (training solid, validation dashed)", fontsize="medium")
    if len(histories) <= max_legend:
        axes[0].legend(fontsize="small")
    return _finish(fig, path)
