"""Training curves of the regional CNNs and their validation accuracy on the sphere."""
import glob
import json
import os

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from .plot_views import DeepAlignPlotViewer, plotter_of

__all__ = ["DeepAlignTrainingViewer", "read_histories", "region_accuracy"]


def _training_protocols():
    """The plugin protocols with a trained model output (those importable now)."""
    from scipion_deepalign import protocols

    names = ("DeepAlignProtTrain", "DeepAlignProtRefine")
    return [getattr(protocols, n) for n in names if hasattr(protocols, n)]


def read_histories(model_dir):
    """Training histories of a model folder.

    Returns
    -------
    dict of int to dict
        1-based region number (0 for a shared network) -> the ``history_*.json`` content, for
        the networks actually trained (regions skipped for too few particles are left out).
    """
    histories = {}
    for path in sorted(glob.glob(os.path.join(model_dir, "history_*.json"))):
        with open(path) as fh:
            history = json.load(fh)
        if history.get("skipped"):
            continue
        tag = os.path.basename(path)[len("history_"):-len(".json")]
        histories[int(tag) if tag.isdigit() else 0] = history
    return histories


def region_accuracy(model_dir):
    """Region centres and best validation accuracy of each region's network.

    Returns
    -------
    centres_deg : ndarray of shape (R, 2)
    val_accuracy : ndarray of shape (R,)
        NaN for regions without a trained network or validation data.
    """
    from scipion_deepalign.core.io.star import read_regions_star

    centres_deg, _, _ = read_regions_star(os.path.join(model_dir, "regions.star"))
    accuracy = np.full(len(centres_deg), np.nan)
    for region, history in read_histories(model_dir).items():
        if 1 <= region <= len(centres_deg) and history.get("val_accuracy"):
            accuracy[region - 1] = np.max(history["val_accuracy"])
    return np.asarray(centres_deg), accuracy


class DeepAlignTrainingViewer(DeepAlignPlotViewer):
    """Loss and accuracy per epoch of every region's network (training solid, validation
    dashed), and the validation accuracy of each region at its centre on a sphere map."""
    _label = "DeepAlign training viewer"
    _targets = _training_protocols()
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _plots = {"doShowHistory": "plotHistory", "doShowRegionAccuracy": "plotRegionAccuracy"}

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("doShowHistory", params.LabelParam, label="Show training curves")
        form.addParam("doShowRegionAccuracy", params.LabelParam,
                      label="Show validation accuracy per region")

    def modelDir(self):
        """Folder of the protocol's trained model."""
        return self.protocol.outputModel.getModelDir()

    def plotHistory(self, path=None):
        from scipion_deepalign.core.plots import plot_training_history

        histories = read_histories(self.modelDir())
        if not histories:
            return [self.errorMessage("No trained network in this model yet.")]
        return [plotter_of(plot_training_history, histories, path=path,
                           window_title="DeepAlign training curves")]

    def plotRegionAccuracy(self, path=None):
        from scipion_deepalign.core.plots import plot_region_accuracy

        centres_deg, accuracy = region_accuracy(self.modelDir())
        return [plotter_of(plot_region_accuracy, centres_deg, accuracy, path=path,
                           window_title="DeepAlign validation accuracy per region")]
