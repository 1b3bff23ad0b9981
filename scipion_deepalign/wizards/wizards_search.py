"""Wizards on the search: how many regions a spacing gives (and whether the training set fills
them), what an angular step costs per particle, and which input set a consensus keeps.

Parameter names served: ``regionSpacingDeg`` (deg) with ``symmetryGroup`` and
``minParticlesPerRegion``; ``angularStepDeg`` (deg) with ``alignResolutionA``,
``maxShiftPx``, ``topK``, ``inputModel``/``regionSpacingDeg``; ``keepPosesFrom`` (1-based
position in ``inputSets``).
"""
from scipion_deepalign.core import defaults
from scipion_deepalign.core.cnn.checks import regions_preview

from .base import (
    DeepAlignWizard,
    choose_from,
    input_particles,
    particle_geometry,
    targets,
    value_of,
)

__all__ = ["DeepAlignRegionsWizard", "DeepAlignAngularStepWizard", "DeepAlignPosesSetWizard"]


class DeepAlignRegionsWizard(DeepAlignWizard):
    """Show how many regions the spacing and symmetry give, and warn when the training set
    leaves fewer particles per region than the minimum."""
    param_name = "regionSpacingDeg"
    title = "Regions on the sphere"
    _targets = targets(param_name)

    def preview(self, protocol):
        spacing = value_of(protocol, self.param_name)
        if spacing is None:
            raise ValueError("Set the region spacing first.")
        particles = input_particles(protocol)
        return regions_preview(
            spacing, value_of(protocol, "symmetryGroup", "c1"),
            n_particles=None if particles is None else particles.getSize(),
            min_particles_per_region=value_of(
                protocol, "minParticlesPerRegion",
                defaults.train_default("min_particles_per_region")))

    def choose(self, form, answer):
        show = form.showWarning if answer.too_few_particles else form.showInfo
        show(answer.message(), header=self.title)
        return None


class DeepAlignAngularStepWizard(DeepAlignWizard):
    """Show how many reference directions and comparisons per particle the angular step
    (empty: automatic) means at the search resolution, maximum shift and k regions."""
    param_name = "angularStepDeg"
    title = "Cost of the angular search"
    _targets = targets(param_name)

    def preview(self, protocol):
        """The protocol's own :meth:`searchCost` (regions, k, resolution and shift as the
        alignment and its warning count them) at the form's step."""
        particle_geometry(protocol)  # asks for the particles first
        return protocol.searchCost(step_deg=value_of(protocol, self.param_name))


class _SetNames:
    def __init__(self, names, current):
        self.names, self.current = names, current

    def message(self):
        return "\n".join(f"{k}: {name}" for k, name in enumerate(self.names, start=1))


class DeepAlignPosesSetWizard(DeepAlignWizard):
    """List the consensus input sets by name; the one picked gives the outputs' poses."""
    param_name = "keepPosesFrom"
    title = "Set whose poses are kept"
    _targets = targets(param_name)

    def preview(self, protocol):
        names = protocol.inputSetNames() if hasattr(protocol, "inputSetNames") else []
        if not names:
            raise ValueError("Select the aligned particle sets first.")
        return _SetNames(names, value_of(protocol, self.param_name, 1))

    def choose(self, form, answer):
        options = [f"{k}: {name}" for k, name in enumerate(answer.names, start=1)]
        index = choose_from(form, self.title, "Particles and poses of the outputs come from:",
                            options)
        return None if index is None else index + 1
