"""DeepAlign form wizards, visible at this module's top level for pyworkflow's discovery."""
from .wizards_geometry import (
    DeepAlignDownsamplingWizard,
    DeepAlignFscMaskWizard,
    DeepAlignMaxShiftWizard,
    DeepAlignSearchResolutionWizard,
)
from .wizards_search import (
    DeepAlignAngularStepWizard,
    DeepAlignPosesSetWizard,
    DeepAlignRegionsWizard,
)

__all__ = ["DeepAlignDownsamplingWizard", "DeepAlignSearchResolutionWizard",
           "DeepAlignMaxShiftWizard", "DeepAlignRegionsWizard", "DeepAlignAngularStepWizard",
           "DeepAlignPosesSetWizard", "DeepAlignFscMaskWizard"]
