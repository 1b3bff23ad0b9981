"""Scipion objects of the plugin: the trained DeepAlign model."""
import os

import pyworkflow.object as pwobj
from pwem.objects import EMObject

__all__ = ["DeepAlignModel"]


class DeepAlignModel(EMObject):
    """A trained set of regional classifiers, reusable by later runs.

    Records the model folder written by ``deepalign train`` (``config.json``, ``regions.star``,
    ``region_NNNN.keras`` ...) and the geometry it was trained for.

    Attributes (with getters)
    -------------------------
    modelDir : folder of the model
    symmetry : point group, e.g. ``"c1"``
    spacingDeg : region spacing in degrees
    networkBoxPx, networkPixelSizeA : box and pixel size of the network input (downsampled)
    particleBoxPx, particlePixelSizeA : box and pixel size of the particles it was trained on
    numberOfRegions : number of regions (one classifier each, or one shared network)
    networkKind : ``"regional"`` or ``"shared"``
    """

    def __init__(self, modelDir=None, *, symmetry=None, spacingDeg=None, numberOfRegions=None,
                 networkBoxPx=None, networkPixelSizeA=None, particleBoxPx=None,
                 particlePixelSizeA=None, networkKind="regional", **kwargs):
        EMObject.__init__(self, **kwargs)
        self._modelDir = pwobj.String(modelDir)
        self._symmetry = pwobj.String(symmetry)
        self._spacingDeg = pwobj.Float(spacingDeg)
        self._numberOfRegions = pwobj.Integer(numberOfRegions)
        self._networkBoxPx = pwobj.Integer(networkBoxPx)
        self._networkPixelSizeA = pwobj.Float(networkPixelSizeA)
        self._particleBoxPx = pwobj.Integer(particleBoxPx)
        self._particlePixelSizeA = pwobj.Float(particlePixelSizeA)
        self._networkKind = pwobj.String(networkKind)

    def getModelDir(self):
        return self._modelDir.get()

    def getRegionsFile(self):
        from .core.cnn.model_folder import ModelFolder

        return str(ModelFolder(self.getModelDir()).regions_path)

    def getSymmetry(self):
        return self._symmetry.get()

    def getSpacingDeg(self):
        return self._spacingDeg.get()

    def getNetworkBoxPx(self):
        return self._networkBoxPx.get()

    def getNetworkPixelSizeA(self):
        return self._networkPixelSizeA.get()

    def getParticleBoxPx(self):
        return self._particleBoxPx.get()

    def getParticlePixelSizeA(self):
        return self._particlePixelSizeA.get()

    def getNumberOfRegions(self):
        return self._numberOfRegions.get()

    def getNetworkKind(self):
        return self._networkKind.get()

    @classmethod
    def fromModelDir(cls, model_dir, **kwargs):
        """The object describing a model folder written by ``deepalign train``."""
        from .core.cnn.model_folder import ModelFolder

        folder = ModelFolder(model_dir)
        meta = folder.read_config()
        geometry = folder.geometry(meta)
        return cls(modelDir=os.path.abspath(model_dir), symmetry=geometry.symmetry,
                   spacingDeg=meta["spacing_deg"], numberOfRegions=meta["n_regions"],
                   networkBoxPx=geometry.input_box_px,
                   networkPixelSizeA=meta["input_pixel_size_a"],
                   particleBoxPx=geometry.particle_box_px,
                   particlePixelSizeA=geometry.particle_pixel_size_a,
                   networkKind=meta.get("config", {}).get("network", "regional"), **kwargs)

    def getFiles(self):
        return {self.getModelDir()}

    def __str__(self):
        return (f"DeepAlignModel ({self.getNumberOfRegions()} regions, "
                f"{self.getSymmetry()}, {self.getSpacingDeg()} deg, network input "
                f"{self.getNetworkBoxPx()} px at {self.getNetworkPixelSizeA():.3g} A)")
