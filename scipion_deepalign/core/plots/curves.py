"""Figures of the judging results and of CNN training (matplotlib, no display needed).

Every function builds a :class:`matplotlib.figure.Figure` without pyplot (so it works headless
and leaves no global state), with constrained layout, optionally saves it at ``path`` (PNG,
SVG or PDF, from the extension) and returns it. Pass ``fig=`` (e.g. ``pyplot.figure()``) to
draw into a figure managed elsewhere (Scipion viewers, ``deepalign plot``). Sphere maps live
in :mod:`.sphere`; both are re-exported by :mod:`scipion_deepalign.core.plots`.
"""
from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ._figures import curve_labels as _labels
from ._figures import figure as _figure
from ._figures import finish as _finish

__all__ = ["plot_fsc", "plot_sorted_angular_differences", "plot_training_history",
           "network_name"]

FSC_THRESHOLDS = (0.143, 0.5)
#: resolutions (Angstrom) that may label the FSC plot's top axis
_RESOLUTION_TICKS_A = (100, 50, 30, 20, 15, 12, 10, 8, 7, 6, 5, 4.5, 4, 3.5, 3, 2.8, 2.5,
                       2.2, 2, 1.8, 1.6, 1.5, 1.4, 1.2, 1.0)


def _angstrom(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.1f} Å"


def _reciprocal(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(x != 0, 1.0 / np.where(x != 0, x, 1.0), 1e6)


def _resolution_axis(ax, f_max):
    """Top axis labelled in Angstrom (1/frequency), ticks at least 7 % of the axis apart."""
    top = ax.secondary_xaxis("top", functions=(_reciprocal, _reciprocal))
    kept = []
    for r in _RESOLUTION_TICKS_A:
        f = 1.0 / r
        if f <= f_max * 1.0001 and all(f - 1.0 / k >= 0.07 * f_max for k in kept):
            kept.append(r)
    top.set_xticks(kept)
    top.set_xticklabels([f"{r:g}" for r in kept])
    top.set_xlabel("Resolution (Å)")
    return top


def _mark_crossings(ax, results, lines):
    """A dot and the resolution where each curve crosses 0.143 and 0.5."""
    for k, (res, line) in enumerate(zip(results, lines)):
        for threshold, value in zip(FSC_THRESHOLDS, (res.resolution_0143_a, res.resolution_05_a)):
            if value is None or not np.isfinite(value) or value <= 0:
                continue
            colour = line.get_color()
            ax.scatter([1.0 / value], [threshold], s=22, color=colour, zorder=3)
            ax.annotate(f"{value:.1f} Å", (1.0 / value, threshold), xytext=(5, 5 + 11 * k),
                        textcoords="offset points", fontsize="small", color=colour)


def plot_fsc(results, labels=None, *, path=None, fig=None):
    """FSC curves with the 0.143 and 0.5 thresholds, a resolution axis and the crossings.

    Parameters
    ----------
    results : list of FSCResult
        From :func:`scipion_deepalign.core.judge.fsc.fsc_curve`.
    labels : list of str or None
        Names of the curves (e.g. the maps compared); the legend adds both resolutions.
    path : str or None, keyword-only

    Returns
    -------
    Figure
        Axes 0: its first ``len(results)`` lines are the curves (x: 1/Angstrom, y: FSC), then
        the two threshold lines; a dot (scatter) marks each crossing, labelled in Angstrom.
        The top axis (secondary) is the resolution in Angstrom.
    """
    results = list(results)
    labels = _labels(labels, len(results), "FSC")
    fig = _figure(fig, (7, 4.5))
    ax = fig.add_subplot()
    lines = [ax.plot(res.frequency_inv_a, res.fsc,
                     label=f"{label} (0.143: {_angstrom(res.resolution_0143_a)}, "
                           f"0.5: {_angstrom(res.resolution_05_a)})")[0]
             for res, label in zip(results, labels)]
    for t, style in zip(FSC_THRESHOLDS, (":", "--")):
        ax.axhline(t, color="grey", linestyle=style, linewidth=1)
        ax.text(0.01, t, f"FSC = {t:g}", transform=ax.get_yaxis_transform(), va="bottom",
                fontsize="small", color="grey")
    _mark_crossings(ax, results, lines)
    f_max = max([float(np.max(r.frequency_inv_a)) for r in results] + [1e-3])
    ax.set_xlim(0.0, f_max)
    _resolution_axis(ax, f_max)
    ax.set_xlabel("Spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(min(-0.1, *(float(np.min(r.fsc)) for r in results)) if results else -0.1, 1.05)
    ax.set_title("Fourier shell correlation")
    if results:
        ax.legend(fontsize="small", loc="upper right")
    return _finish(fig, path)


def plot_sorted_angular_differences(diffs_deg, labels=None, *, threshold_deg=None, path=None,
                                    fig=None):
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
    ax_hist.set_title("Histogram")
    ax_hist.set_xlabel("Angular difference (deg)")
    ax_hist.set_ylabel("Particles")
    if diffs:
        ax_sorted.legend(fontsize="small")
    return _finish(fig, path)


_HISTORY_PANELS = (("loss", "Loss"), ("accuracy", "Accuracy"))


def network_name(key) -> str:
    """How a history's key reads: ``"shared network"`` (key 0 or "shared"), ``"region 5"``
    (a region number), or the key itself (any other text)."""
    if key in (0, "shared"):
        return "shared network"
    return key if isinstance(key, str) else f"region {key}"


def plot_training_history(histories, *, path=None, fig=None, max_legend: int = 10):
    """Loss and accuracy per epoch of each network (training solid, validation dashed).

    Parameters
    ----------
    histories : dict of int to dict
        Network -> Keras ``History.history``-like dict with lists ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy`` (the ``val_`` ones optional); keys are 1-based
        regions, or 0 for the shared network (:func:`network_name`). Other keys of the dicts
        (e.g. ``"region"``) are ignored.
    path : str or None, keyword-only
    max_legend : int, keyword-only
        No legend of the networks above this many.

    Returns
    -------
    Figure
        Axes 0 holds the loss lines, axes 1 the accuracy lines; for each network in the
        dict's order, the training line then (if present) the validation line, x = epochs
        1, 2, ... (integer ticks, a marker per epoch so that one epoch still shows).
    """
    if not histories:
        raise ValueError("histories is empty: no training history to plot")
    fig = _figure(fig, (10, 4))
    axes = fig.subplots(1, 2)
    n_epochs = 1
    for region, hist in histories.items():
        for ax, (key, _) in zip(axes, _HISTORY_PANELS):
            if key not in hist:
                raise ValueError(f"history of {network_name(region)} has no '{key}' "
                                 f"(keys: {sorted(hist)})")
            values = np.asarray(hist[key], dtype=np.float64)
            n_epochs = max(n_epochs, values.size)
            line, = ax.plot(np.arange(1, values.size + 1), values, marker="o", markersize=3,
                            label=network_name(region))
            if f"val_{key}" in hist:
                val = np.asarray(hist[f"val_{key}"], dtype=np.float64)
                ax.plot(np.arange(1, val.size + 1), val, linestyle="--", marker="o",
                        markersize=3, markerfacecolor="none", color=line.get_color())
    for ax, (_, title) in zip(axes, _HISTORY_PANELS):
        ax.set_xlabel("Epoch")
        ax.set_ylabel(title)
        ax.set_title(f"{title} per epoch")
        ax.set_xlim(0.5, n_epochs + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if len(histories) <= max_legend:
        axes[0].legend(fontsize="small")
    axes[1].legend(handles=[Line2D([], [], color="k", marker="o", markersize=3,
                                   label="training"),
                            Line2D([], [], color="k", linestyle="--", marker="o",
                                   markersize=3, markerfacecolor="none",
                                   label="validation (held-out images)")],
                   fontsize="small")
    return _finish(fig, path)
