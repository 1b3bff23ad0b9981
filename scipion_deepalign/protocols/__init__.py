"""DeepAlign protocols, visible at this module's top level for pyworkflow's discovery."""
