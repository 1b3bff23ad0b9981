"""Form wizards: downsampled geometry, number of regions, shifts in Angstrom and pixels.

Each wizard reads the form, calls a function of :mod:`scipion_deepalign.core.wizard_math`
(tested on its own) and shows the answer; ``preview(protocol)`` returns that answer without
any GUI so it can be tested headless.

Parameter names of the training/alignment protocols (``DeepAlignProtTrain``,
``DeepAlignProtAlign``, ``DeepAlignProtRefine``...): ``targetResolutionA`` (A),
``regionSpacingDeg`` (deg), ``symmetryGroup``, ``maxShiftPx`` (px) and one particles pointer
among :data:`PARTICLE_PARAMS`. A wizard targets only the protocols whose form has its
parameter.
"""
from pyworkflow.wizard import Wizard

from scipion_deepalign.core.wizard_math import (
    downsampling_preview,
    regions_preview,
    shift_px_to_angstrom,
)

__all__ = ["DeepAlignDownsamplingWizard", "DeepAlignRegionsWizard", "DeepAlignMaxShiftWizard",
           "PARTICLE_PARAMS", "PROTOCOL_NAMES"]

#: pointer parameters searched, in order, for the particles a protocol works on
PARTICLE_PARAMS = ("inputTrainingParticles", "inputParticles", "inputSet")
#: protocol classes (in :mod:`scipion_deepalign.protocols`) the wizards may target
PROTOCOL_NAMES = ("DeepAlignProtTrain", "DeepAlignProtAlign", "DeepAlignProtRefine",
                  "DeepAlignProtPredict")


def _targets(param_name):
    """``[(ProtocolClass, [param_name])]`` for the plugin protocols defining ``param_name``."""
    try:
        from scipion_deepalign import protocols
    except ImportError:  # protocols not importable (e.g. missing Scipion pieces)
        return []
    found = []
    for name in PROTOCOL_NAMES:
        cls = getattr(protocols, name, None)
        if cls is not None and _defines_param(cls, param_name):
            found.append((cls, [param_name]))
    return found


def _defines_param(protocol_class, param_name):
    """Whether the form of ``protocol_class`` has a parameter ``param_name``."""
    try:
        return protocol_class().getParam(param_name) is not None
    except Exception:  # a form that cannot be built without a project: do not target it
        return False


def _input_particles(protocol):
    """The first particle set the protocol points at (None when none is set)."""
    for name in PARTICLE_PARAMS:
        pointer = getattr(protocol, name, None)
        value = pointer.get() if pointer is not None and hasattr(pointer, "get") else None
        if value is not None and hasattr(value, "getSamplingRate"):
            return value
    return None


def _particle_geometry(protocol):
    """``(box_px, pixel_size_a, n_particles)`` of the protocol's input particles.

    Raises
    ------
    ValueError
        When no input particles are selected yet.
    """
    particles = _input_particles(protocol)
    if particles is None:
        raise ValueError("Select the input particles first.")
    box_px = particles.getXDim() or particles.getDimensions()[0]
    return int(box_px), float(particles.getSamplingRate()), int(particles.getSize())


class _DeepAlignWizard(Wizard):
    """Base: compute with ``preview`` and show its message (errors as warnings)."""
    param_name = None

    def preview(self, protocol):  # pragma: no cover - abstract
        raise NotImplementedError

    def show(self, form, *params):
        try:
            answer = self.preview(form.protocol)
        except ValueError as exc:
            form.showWarning(str(exc))
            return
        form.showInfo(answer.message(), header=self.__class__.__name__)


class DeepAlignDownsamplingWizard(_DeepAlignWizard):
    """Show the box and pixel size the images get at the chosen target resolution."""
    param_name = "targetResolutionA"
    _targets = _targets(param_name)

    def preview(self, protocol):
        box_px, pixel_size_a, _ = _particle_geometry(protocol)
        target = getattr(protocol, self.param_name).get()
        if target is None:
            raise ValueError("Set the target resolution first.")
        return downsampling_preview(box_px, pixel_size_a, target)


class DeepAlignRegionsWizard(_DeepAlignWizard):
    """Show how many regions (networks) the spacing and symmetry give."""
    param_name = "regionSpacingDeg"
    _targets = _targets(param_name)

    def preview(self, protocol):
        spacing = getattr(protocol, self.param_name).get()
        symmetry_param = getattr(protocol, "symmetryGroup", None)
        symmetry = symmetry_param.get() if symmetry_param is not None else "c1"
        particles = _input_particles(protocol)
        return regions_preview(spacing, symmetry or "c1",
                               n_particles=None if particles is None else particles.getSize())


class _ShiftMessage:
    def __init__(self, shift_px, shift_a, pixel_size_a, box_px):
        self.shift_px, self.shift_a = shift_px, shift_a
        self.pixel_size_a, self.box_px = pixel_size_a, box_px

    def message(self):
        return (f"A maximum shift of {self.shift_px:g} px is {self.shift_a:.1f} A at "
                f"{self.pixel_size_a:.3g} A/px ({100 * self.shift_px / self.box_px:.0f} % of the "
                f"{self.box_px} px box).")


class DeepAlignMaxShiftWizard(_DeepAlignWizard):
    """Show the maximum shift (pixels of the input particles) in Angstrom."""
    param_name = "maxShiftPx"
    _targets = _targets(param_name)

    def preview(self, protocol):
        box_px, pixel_size_a, _ = _particle_geometry(protocol)
        shift_px = getattr(protocol, self.param_name).get()
        if shift_px is None:
            raise ValueError("Set the maximum shift first.")
        return _ShiftMessage(shift_px, shift_px_to_angstrom(shift_px, pixel_size_a),
                             pixel_size_a, box_px)
