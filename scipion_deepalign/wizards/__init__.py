"""DeepAlign form wizards, visible at this module's top level for pyworkflow's discovery."""
from .wizards_geometry import (
                               DeepAlignDownsamplingWizard,
                               DeepAlignMaxShiftWizard,
                               DeepAlignRegionsWizard,
)

__all__ = ["DeepAlignDownsamplingWizard", "DeepAlignMaxShiftWizard", "DeepAlignRegionsWizard"]
