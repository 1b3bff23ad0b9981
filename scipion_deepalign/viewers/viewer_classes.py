"""The 3D classes of a DeepAlign classification: class sizes (and, for ``deepalign classify``,
per iteration), each class's half-map FSC and its particles' projection directions."""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from scipion_deepalign.protocols.protocol_classes import DeepAlignProtClasses3D

from .plot_views import DeepAlignPlotViewer, plotter_of

__all__ = ["DeepAlignClassesViewer", "plot_class_sizes", "plot_class_sizes_per_iteration"]


def plot_class_sizes(class_ids, sizes, *, title=None, fig):
    """Bars of the particles per class, each labelled with its count and percentage.

    Parameters
    ----------
    class_ids : sequence of int
        1-based class numbers (the k-th reference map).
    sizes : sequence of int
    title : str or None, keyword-only
    fig : matplotlib Figure, keyword-only
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = max(int(sizes.sum()), 1)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(sizes))
    bars = ax.bar(x, sizes, color="tab:blue")
    for bar, size in zip(bars, sizes):
        ax.annotate(f"{size} ({100 * size / total:.0f} %)",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, [str(k) for k in class_ids])
    ax.set_xlabel("class (k-th reference map)")
    ax.set_ylabel("particles")
    ax.set_ylim(0, max(int(sizes.max(initial=0)), 1) * 1.15)
    ax.set_title(title or f"Class sizes ({int(sizes.sum())} particles)")
    return fig


def plot_class_sizes_per_iteration(iterations, *, title=None, fig):
    """Particles per class after each iteration (one line per class) and, on the right axis,
    the percentage of particles that changed class.

    Parameters
    ----------
    iterations : list of dict
        ``deepalign classify``'s per-iteration reports (``iteration``, ``class_sizes``,
        ``changed_fraction``, None in iteration 1 of a start from maps).
    title : str or None, keyword-only
    fig : matplotlib Figure, keyword-only
    """
    x = [it["iteration"] for it in iterations]
    sizes = np.array([it["class_sizes"] for it in iterations], dtype=np.int64)
    ax = fig.add_subplot(1, 1, 1)
    for k in range(sizes.shape[1]):
        ax.plot(x, sizes[:, k], marker="o", label=f"class {k + 1}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("particles")
    ax.set_xticks(x)
    ax.set_ylim(0, max(int(sizes.max(initial=0)), 1) * 1.15)
    changed = [(i, 100 * it["changed_fraction"]) for i, it in zip(x, iterations)
               if it.get("changed_fraction") is not None]
    if changed:
        right = ax.twinx()
        right.plot(*zip(*changed), color="grey", linestyle="--", marker="x",
                   label="changed class (%)")
        right.set_ylabel("changed class (%)")
        right.set_ylim(0, max(max(c for _, c in changed), 1) * 1.15)
        right.legend(loc="upper right", fontsize=9)
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title(title or f"Class sizes per iteration ({int(sizes[-1].sum())} particles)")
    return fig


class DeepAlignClassesViewer(DeepAlignPlotViewer):
    """Class sizes (bars; per iteration for ``deepalign classify``), the FSC of each class's
    half maps, and each class's angular distribution, of a DeepAlign 3D classification."""
    _label = "DeepAlign 3D classes"
    _targets = [DeepAlignProtClasses3D]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _plots = {"doShowClassSizes": "plotClassSizes", "doShowFsc": "plotClassFsc",
              "doShowDistribution": "plotClassDistributions",
              "doShowIterations": "plotClassSizesPerIteration"}

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("doShowClassSizes", params.LabelParam, label="Show class sizes")
        form.addParam("doShowIterations", params.LabelParam,
                      label="Show class sizes per iteration (without the network)")
        form.addParam("doShowFsc", params.LabelParam, label="Show the classes' FSC")
        form.addParam("doShowDistribution", params.LabelParam,
                      label="Show each class's angular distribution")

    def _classes(self):
        return getattr(self.protocol, DeepAlignProtClasses3D.outputs.outputClasses.name, None)

    def classSizes(self):
        """``(class ids, sizes)`` of the output classes, in class order."""
        classes = self._classes()
        if classes is None:
            return [], []
        items = [(c.getObjId(), c.getSize()) for c in classes.iterItems(orderBy="id")]
        return [k for k, _ in items], [s for _, s in items]

    def plotClassSizes(self, path=None):
        ids, sizes = self.classSizes()
        if not ids:
            return [self.errorMessage("The classification has no output classes yet.")]
        title = f"{self.protocol.getRunName()}: {sum(sizes)} particles in {len(ids)} classes"
        return [plotter_of(plot_class_sizes, ids, sizes, title=title, path=path,
                           window_title="DeepAlign class sizes")]

    def classSizesPerIteration(self):
        """``deepalign classify``'s per-iteration reports ([] with the network or before)."""
        report = self.protocol.classifyReport()
        return [] if report is None else report["iterations"]

    def plotClassSizesPerIteration(self, path=None):
        iterations = self.classSizesPerIteration()
        if not iterations:
            return [self.errorMessage("No iterations: the classification used the network "
                                      "(one pass) or has not finished.")]
        title = (f"{self.protocol.getRunName()}: class sizes over {len(iterations)} "
                 "iterations")
        return [plotter_of(plot_class_sizes_per_iteration, iterations, title=title, path=path,
                           window_title="DeepAlign class sizes per iteration")]

    def classFscs(self):
        """``(labels, FSCResult list)`` of the classes whose half maps were reconstructed."""
        from scipion_deepalign.core.io import read_json
        from scipion_deepalign.core.judge.fsc import fsc_from_curve

        prot = self.protocol
        prot._createFilenameTemplates()
        labels, results = [], []
        pixel_size_a = prot.inputParticles.get().getSamplingRate()
        for k, size in zip(*self.classSizes()):
            path = prot._getFileName("class_fsc", k=k)
            if os.path.exists(path):
                data = read_json(path)
                results.append(fsc_from_curve(data["frequency_inv_a"], data["fsc"],
                                              pixel_size_a=pixel_size_a))
                labels.append(f"class {k} ({size} particles)")
        return labels, results

    def plotClassFsc(self, path=None):
        from scipion_deepalign.core.plots import plot_fsc

        labels, results = self.classFscs()
        if not results:
            return [self.errorMessage("No class has half maps (fewer than 2 particles).")]
        return [plotter_of(plot_fsc, results, labels, path=path,
                           window_title="DeepAlign FSC of the classes")]

    def plotClassDistributions(self, path=None):
        from scipion_deepalign.convert import read_set_poses
        from scipion_deepalign.core.plots import plot_angular_distribution

        classes = self._classes()
        if classes is None:
            return [self.errorMessage("The classification has no output classes yet.")]
        plotters = []
        for cls in classes.iterItems(orderBy="id"):
            k = cls.getObjId()
            _, angles_deg, _ = read_set_poses(cls)
            if not len(angles_deg):
                continue
            out = None if path is None else path.replace(".png", f"_class{k}.png")
            plotters.append(plotter_of(
                plot_angular_distribution, angles_deg, path=out,
                title=f"class {k}: {len(angles_deg)} particles",
                window_title=f"DeepAlign angular distribution: class {k}"))
        return plotters
