"""Projection directions of the aligned particle sets a DeepAlign protocol produced."""
import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO

from scipion_deepalign.protocols.protocol_consensus import DeepAlignProtConsensus

from .plot_views import DeepAlignPlotViewer, plotter_of

__all__ = ["DeepAlignAngularDistributionViewer"]


def _aligned_protocols():
    """The plugin protocols whose outputs are aligned particles (those importable now)."""
    from scipion_deepalign import protocols

    names = ("DeepAlignProtAlign", "DeepAlignProtRefine")
    return [getattr(protocols, n) for n in names if hasattr(protocols, n)]


class DeepAlignAngularDistributionViewer(DeepAlignPlotViewer):
    """Projection directions of every output SetOfParticles with a 3D alignment, on a sphere
    map (Mollweide: longitude rot, latitude 90 - tilt), optionally folded into the
    asymmetric unit of the protocol's symmetry."""
    _label = "DeepAlign angular distribution"
    _targets = [DeepAlignProtConsensus] + _aligned_protocols()
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _plots = {"doShowDistribution": "plotDistribution"}

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("asymmetricUnit", params.BooleanParam, default=True,
                      label="Fold into the asymmetric unit?",
                      help="Show each pose as its symmetry equivalent in the asymmetric unit "
                           "of the protocol's symmetry group.")
        form.addParam("doShowDistribution", params.LabelParam,
                      label="Show angular distribution")

    def alignedOutputs(self):
        """``[(output name, angles_deg (N, 3))]`` of the aligned particle outputs."""
        from scipion_deepalign.convert import read_set_poses

        found = []
        for name, output in self.protocol.iterOutputAttributes(SetOfParticles):
            if output.hasAlignmentProj() and output.getSize():
                _, angles_deg, _ = read_set_poses(output)
                found.append((name, self._fold(angles_deg)))
        return found

    def _fold(self, angles_deg):
        symmetry = getattr(self.protocol, "symmetryGroup", None)
        fold = self.asymmetricUnit.get() if self.hasAttribute("asymmetricUnit") else True
        if not fold or symmetry is None:
            return angles_deg
        from scipion_deepalign.core.symmetry import to_asymmetric_unit
        return to_asymmetric_unit(angles_deg, symmetry.get())

    def plotDistribution(self, path=None):
        from scipion_deepalign.core.plots import plot_angular_distribution

        outputs = self.alignedOutputs()
        if not outputs:
            return [self.errorMessage("This protocol has no aligned particles to show.")]
        plotters = []
        for k, (name, angles_deg) in enumerate(outputs):
            out_path = path if k == 0 or path is None else path.replace(".png", f"_{name}.png")
            title = f"{self.protocol.getRunName()}: {name} ({len(angles_deg)} particles)"
            plotters.append(plotter_of(plot_angular_distribution, angles_deg, title=title,
                                       path=out_path,
                                       window_title=f"DeepAlign angular distribution: {name}"))
        return plotters
