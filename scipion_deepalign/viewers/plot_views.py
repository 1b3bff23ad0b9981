"""Glue between the figures of :mod:`scipion_deepalign.core.plots` and Scipion views.

A core plotting function draws into the pyplot-managed figure of a pwem ``EmPlotter`` (so the
desktop GUI can show it, and Agg saves it headless); viewers return that plotter as a view.
"""
import os

from pwem.viewers import EmPlotter
from pyworkflow.viewer import ProtocolViewer

__all__ = ["plotter_of", "DeepAlignPlotViewer"]


def plotter_of(plot_function, *args, window_title="DeepAlign", path=None, **kwargs):
    """Run ``plot_function(*args, fig=<new EmPlotter figure>, **kwargs)``; return the plotter.

    Parameters
    ----------
    plot_function : callable
        A :mod:`scipion_deepalign.core.plots` function (accepts ``fig=``).
    window_title : str, keyword-only
    path : str or None, keyword-only
        PNG written after drawing.
    """
    plotter = EmPlotter(x=1, y=1, windowTitle=window_title)
    plotter.tightLayoutOn = False  # the core figures arrange themselves
    plot_function(*args, fig=plotter.getFigure(), **kwargs)
    if path is not None:
        plotter.savefig(path, dpi=110)
    return plotter


class DeepAlignPlotViewer(ProtocolViewer):
    """Base of the DeepAlign viewers: every view is a plot that can also be saved as PNG.

    Subclasses fill :attr:`_plots` with ``{param_name: method_name}``; each method takes
    ``path=None`` and returns a list of ``EmPlotter``.
    """
    _label = None  # base class: not listed
    _plots = {}

    def _getVisualizeDict(self):
        return {param: (lambda _param=None, name=name: getattr(self, name)())
                for param, name in self._plots.items()}

    def savePngs(self, folder):
        """Write every plot of this viewer to ``folder`` as ``<param>.png``; return the paths."""
        os.makedirs(folder, exist_ok=True)
        paths = []
        for param, name in self._plots.items():
            for k, plotter in enumerate(getattr(self, name)()):
                if not hasattr(plotter, "savefig"):  # a message (nothing to plot)
                    continue
                suffix = "" if k == 0 else f"_{k + 1}"
                path = os.path.join(folder, f"{param}{suffix}.png")
                plotter.savefig(path, dpi=110)
                plotter.close()
                paths.append(path)
        return paths
