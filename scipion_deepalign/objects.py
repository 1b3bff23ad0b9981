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
    boxPx, pixelSizeA : box and pixel size of the (downsampled) training images
    inputBoxPx, inputPixelSizeA : box and pixel size of the particles it was trained from
    numberOfRegions : number of regions (one classifier each, or one shared network)
    networkKind : ``"regional"`` or ``"shared"``
    """

    REGIONS_FILE = "regions.star"

    def __init__(self, modelDir=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._modelDir = pwobj.String(modelDir)
        self._symmetry = pwobj.String(kwargs.get("symmetry"))
        self._spacingDeg = pwobj.Float(kwargs.get("spacingDeg"))
        self._boxPx = pwobj.Integer(kwargs.get("boxPx"))
        self._pixelSizeA = pwobj.Float(kwargs.get("pixelSizeA"))
        self._inputBoxPx = pwobj.Integer(kwargs.get("inputBoxPx"))
        self._inputPixelSizeA = pwobj.Float(kwargs.get("inputPixelSizeA"))
        self._numberOfRegions = pwobj.Integer(kwargs.get("numberOfRegions"))
        self._networkKind = pwobj.String(kwargs.get("networkKind", "regional"))

    def getModelDir(self):
        return self._modelDir.get()

    def getRegionsFile(self):
        return os.path.join(self.getModelDir(), self.REGIONS_FILE)

    def getSymmetry(self):
        return self._symmetry.get()

    def getSpacingDeg(self):
        return self._spacingDeg.get()

    def getBoxPx(self):
        return self._boxPx.get()

    def getPixelSizeA(self):
        return self._pixelSizeA.get()

    def getInputBoxPx(self):
        return self._inputBoxPx.get()

    def getInputPixelSizeA(self):
        return self._inputPixelSizeA.get()

    def getNumberOfRegions(self):
        return self._numberOfRegions.get()

    def getNetworkKind(self):
        return self._networkKind.get()

    def getFiles(self):
        return {self.getModelDir()}

    def __str__(self):
        return (f"DeepAlignModel ({self.getNumberOfRegions()} regions, "
                f"{self.getSymmetry()}, {self.getSpacingDeg()} deg, box {self.getBoxPx()} px "
                f"at {self.getPixelSizeA()} A)")
