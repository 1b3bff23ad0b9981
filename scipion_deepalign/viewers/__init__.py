"""DeepAlign viewers, visible at this module's top level for pyworkflow's discovery."""
from .viewer_classes import DeepAlignClassesViewer
from .viewer_consensus import DeepAlignAngularDifferencesViewer
from .viewer_distribution import DeepAlignAngularDistributionViewer
from .viewer_fsc import DeepAlignFscViewer
from .viewer_training import DeepAlignTrainingViewer

__all__ = ["DeepAlignFscViewer", "DeepAlignAngularDifferencesViewer",
           "DeepAlignAngularDistributionViewer", "DeepAlignTrainingViewer",
           "DeepAlignClassesViewer"]
