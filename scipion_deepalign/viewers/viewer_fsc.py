"""FSC curves of DeepAlign reconstructions, optionally overlaid with other FSC objects."""
import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from scipion_deepalign.protocols.protocol_reconstruct import DeepAlignProtReconstruct

from .plot_views import DeepAlignPlotViewer, plotter_of

__all__ = ["DeepAlignFscViewer", "fsc_result_of"]


def fsc_result_of(fsc_object, *, pixel_size_a=None):
    """Core ``FSCResult`` of a pwem ``FSC`` object (frequencies in 1/A).

    Parameters
    ----------
    fsc_object : pwem.objects.FSC
    pixel_size_a : float or None, keyword-only
        Sampling of the maps; None: taken as ``0.5 / max frequency`` (curves up to Nyquist).
    """
    from scipion_deepalign.core.judge.fsc import fsc_from_curve

    freq, values = (np.asarray(list(v), dtype=np.float64) for v in fsc_object.getData())
    try:
        return fsc_from_curve(freq, values, pixel_size_a=pixel_size_a)
    except ValueError as exc:
        raise ValueError(f"FSC object {fsc_object.getObjLabel() or fsc_object.getObjId()}: "
                         f"{exc}") from None


class DeepAlignFscViewer(DeepAlignPlotViewer):
    """FSC between the half maps of a DeepAlign reconstruction (0.143 and 0.5 lines, the
    resolutions in the legend), with other FSC curves of the project overlaid if chosen."""
    _label = "DeepAlign FSC viewer"
    _targets = [DeepAlignProtReconstruct]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _plots = {"doShowFsc": "plotFsc"}

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("compareWith", params.MultiPointerParam, pointerClass="FSC",
                      minNumObjects=0, allowsNull=True, label="Overlay other FSC curves",
                      help="FSC outputs of other reconstructions (e.g. other DeepAlign runs or "
                           "a RELION refinement) drawn on the same axes.")
        form.addParam("doShowFsc", params.LabelParam, label="Show FSC")

    def fscCurves(self):
        """``(labels, FSCResult list)``: this protocol's curve first, then the overlays."""
        prot = self.protocol
        labels = [prot.getRunName()]
        results = [fsc_result_of(prot.outputFSC,
                                 pixel_size_a=prot.outputVolume.getSamplingRate())]
        for pointer in (self.compareWith if self.hasAttribute("compareWith") else []):
            fsc = pointer.get()
            if fsc is None:
                continue
            owner = pointer.getObjValue()  # the protocol when the pointer is "run.outputFSC"
            labels.append(owner.getRunName() if hasattr(owner, "getRunName")
                          else fsc.getObjLabel() or f"FSC {fsc.getObjId()}")
            results.append(fsc_result_of(fsc))
        return labels, results

    def plotFsc(self, path=None):
        from scipion_deepalign.core.plots import plot_fsc

        labels, results = self.fscCurves()
        return [plotter_of(plot_fsc, results, labels, window_title="DeepAlign FSC", path=path)]
