"""Angular differences of a DeepAlign consensus run (sorted curve, paper Fig. 5, + histogram)."""
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from scipion_deepalign.protocols.protocol_consensus import DeepAlignProtConsensus

from .plot_views import DeepAlignPlotViewer, plotter_of

__all__ = ["DeepAlignAngularDifferencesViewer"]


class DeepAlignAngularDifferencesViewer(DeepAlignPlotViewer):
    """Per-particle angle between the projection directions of each pair of inputs, sorted from
    lowest to highest, with the consensus threshold marked, and their histogram."""
    _label = "DeepAlign angular differences"
    _targets = [DeepAlignProtConsensus]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _plots = {"doShowDifferences": "plotDifferences"}

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("doShowDifferences", params.LabelParam,
                      label="Show sorted angular differences")

    def differences(self):
        """``(labels, list of ndarray (N,))``: direction differences (deg) per pair of inputs."""
        data = self.protocol.getDifferences()
        names = self.protocol.inputSetNames()
        labels, diffs = [], []
        for column, (i, j) in enumerate(data["pairs"]):
            labels.append(f"{names[i]} vs {names[j]}")
            diffs.append(data["direction_diff_deg"][:, column])
        return labels, diffs

    def plotDifferences(self, path=None):
        from scipion_deepalign.core.plots import plot_sorted_angular_differences

        labels, diffs = self.differences()
        return [plotter_of(plot_sorted_angular_differences, diffs, labels,
                           threshold_deg=self.protocol.maxAngleDeg.get(),
                           window_title="DeepAlign angular differences", path=path)]
