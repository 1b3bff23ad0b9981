"""Training curves of the DeepAlign networks, and the regions on the sphere: the validation
accuracy of each regional network, or the training particles per region of the shared one."""
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from scipion_deepalign.core.cnn.history import (
    read_histories,
    region_accuracy,
    shared_region_counts,
)

from .plot_views import DeepAlignPlotViewer, plotter_of

__all__ = ["DeepAlignTrainingViewer", "read_histories", "region_accuracy"]


def _training_protocols():
    """The plugin protocols with a trained model output (those importable now)."""
    from scipion_deepalign import protocols

    names = ("DeepAlignProtTrain", "DeepAlignProtRefine")
    return [getattr(protocols, n) for n in names if hasattr(protocols, n)]


class DeepAlignTrainingViewer(DeepAlignPlotViewer):
    """Loss and accuracy per epoch of every network (training solid, validation dashed), and
    a sphere map of the regions: each regional network's validation accuracy at its centre,
    or, for the shared network, the training particles of each region."""
    _label = "DeepAlign training viewer"
    _targets = _training_protocols()
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _plots = {"doShowHistory": "plotHistory", "doShowRegionAccuracy": "plotRegionAccuracy"}

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("doShowHistory", params.LabelParam, label="Show training curves")
        form.addParam("doShowRegionAccuracy", params.LabelParam,
                      label="Show the regions on the sphere",
                      help="Regional networks: the validation accuracy of each region's "
                           "network. Shared network: the training particles of each region "
                           "(the network has one validation accuracy, in the title).")

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
        from scipion_deepalign.core.plots import plot_region_accuracy, plot_region_counts

        shared = shared_region_counts(self.modelDir())
        if shared is not None:
            centres_deg, counts, accuracy = shared
            return [plotter_of(plot_region_counts, centres_deg, counts,
                               overall_accuracy=accuracy, path=path,
                               window_title="DeepAlign training particles per region")]
        centres_deg, accuracy = region_accuracy(self.modelDir())
        return [plotter_of(plot_region_accuracy, centres_deg, accuracy, path=path,
                           window_title="DeepAlign validation accuracy per region")]
