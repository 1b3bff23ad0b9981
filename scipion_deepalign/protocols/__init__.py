"""DeepAlign protocols, visible at this module's top level for pyworkflow's discovery."""
from .protocol_align import DeepAlignProtAlign
from .protocol_classes import DeepAlignProtClasses3D
from .protocol_consensus import DeepAlignProtConsensus
from .protocol_predict import DeepAlignProtPredict
from .protocol_reconstruct import DeepAlignProtReconstruct
from .protocol_refine import DeepAlignProtRefine
from .protocol_train import DeepAlignProtTrain

__all__ = ["DeepAlignProtTrain", "DeepAlignProtPredict", "DeepAlignProtAlign",
           "DeepAlignProtRefine", "DeepAlignProtReconstruct", "DeepAlignProtConsensus",
           "DeepAlignProtClasses3D"]
