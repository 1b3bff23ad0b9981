"""Wizards on image geometry: the box a target or search resolution gives (and the reverse),
and shifts between pixels and Angstrom.

Parameter names served (any DeepAlign protocol whose form has them): ``targetResolutionA``
and ``alignResolutionA`` (Å), ``maxShiftPx`` (pixels of the input particles; the
alignment's maximum shift and the consensus shift threshold), ``maskRadiusA`` (Å, the
reconstruction's FSC mask, drawn on the particles by pwem's mask-radius dialog).
"""
from scipion_deepalign.core import defaults
from scipion_deepalign.core.particles import shift_angstrom_to_px, shift_px_to_angstrom
from scipion_deepalign.core.projection import downsampling_preview, resolution_for_box

from .base import DeepAlignWizard, ask_number, particle_geometry, targets, value_of

__all__ = ["DeepAlignDownsamplingWizard", "DeepAlignSearchResolutionWizard",
           "DeepAlignMaxShiftWizard", "DeepAlignFscMaskWizard"]


class DeepAlignDownsamplingWizard(DeepAlignWizard):
    """Show the box and pixel size a target resolution gives; set the resolution from the
    box the user wants."""
    param_name = "targetResolutionA"
    title = "Network input size"
    prompt = "Network input box (px)"
    _targets = targets(param_name)

    def preview(self, protocol):
        box_px, pixel_size_a, _ = particle_geometry(protocol)
        return downsampling_preview(box_px, pixel_size_a,
                                    self.resolution(protocol, box_px, pixel_size_a))

    def resolution(self, protocol, box_px, pixel_size_a):
        """The network input's resolution in Å, by the rules of ``deepalign train``."""
        from scipion_deepalign.core.cnn.checks import input_geometry
        from scipion_deepalign.core.resolution import training_input

        value = value_of(protocol, self.param_name)
        value = defaults.TARGET_RESOLUTION if value in (None, "") else value
        target, box = training_input(value, box_px, name="Target resolution")
        if target is not None:
            return float(target)
        new_box, _ = input_geometry(box_px, pixel_size_a, target_box_px=box)
        return resolution_for_box(box_px, pixel_size_a, new_box)

    def choose(self, form, answer):
        new_box = ask_number(form, self.title, f"{answer.message()}\n\n{self.prompt}:",
                             answer.new_box_px)
        if new_box is None or int(new_box) == answer.new_box_px:
            return None
        return resolution_for_box(answer.box_px, answer.pixel_size_a, int(new_box))


class DeepAlignSearchResolutionWizard(DeepAlignDownsamplingWizard):
    """The same for the search resolution of the alignment (auto: estimated from the input
    volume; empty: the full box)."""
    param_name = "alignResolutionA"
    title = "Search image size"
    prompt = f"Search box (px); the full box writes {defaults.FULL_RESOLUTION}"
    _targets = targets(param_name)

    def resolution(self, protocol, box_px, pixel_size_a):
        """The search resolution in Å the form's alignment uses (the full box: Nyquist)."""
        ask = getattr(protocol, "searchResolutionA", None)
        if callable(ask):
            target = ask()
        else:
            from scipion_deepalign.core.resolution import parse_target_resolution

            value = value_of(protocol, self.param_name)
            target = parse_target_resolution(value, name="Search resolution")
            target = target if isinstance(target, float) else None
        return 2.0 * pixel_size_a if target is None else target

    def choose(self, form, answer):
        new_box = ask_number(form, self.title, f"{answer.message()}\n\n{self.prompt}:",
                             answer.new_box_px)
        if new_box is None or int(new_box) == answer.new_box_px:
            return None
        if int(new_box) == answer.box_px:
            return defaults.FULL_RESOLUTION  # no downsampling
        return resolution_for_box(answer.box_px, answer.pixel_size_a, int(new_box))


class _ShiftMessage:
    def __init__(self, shift_px, shift_a, pixel_size_a, box_px, *, empty=None):
        self.shift_px, self.shift_a = shift_px, shift_a
        self.pixel_size_a, self.box_px, self.empty = pixel_size_a, box_px, empty

    def message(self):
        text = (f"A shift of {self.shift_px:g} px is {self.shift_a:.1f} Å at "
                f"{self.pixel_size_a:.3g} Å/px ({100 * self.shift_px / self.box_px:.0f} % of "
                f"the {self.box_px} px box).")
        return f"{self.empty} {text}" if self.empty else text


class DeepAlignMaxShiftWizard(DeepAlignWizard):
    """Convert the maximum shift (or the consensus shift threshold) between pixels of the
    input particles and Angstrom: the user types Angstrom, the form gets pixels."""
    param_name = "maxShiftPx"
    title = "Shift in Å and pixels"
    _targets = targets(param_name)

    def preview(self, protocol):
        box_px, pixel_size_a, _ = particle_geometry(protocol)
        shift_px = value_of(protocol, self.param_name)
        empty = None
        if shift_px is None or shift_px < 0:
            shift_px = defaults.default_max_shift_px(box_px)
            empty = ("The field is empty: shifts are not compared." if
                     hasattr(protocol, "inputSets") else
                     "The field is empty: the alignment searches 1/8 of the box.")
        return _ShiftMessage(shift_px, shift_px_to_angstrom(shift_px, pixel_size_a),
                             pixel_size_a, box_px, empty=empty)

    def choose(self, form, answer):
        shift_a = ask_number(form, self.title, f"{answer.message()}\n\nShift (Å):",
                             round(answer.shift_a, 1))
        if shift_a is None:
            return None
        return round(shift_angstrom_to_px(shift_a, answer.pixel_size_a), 2)


def _mask_radius_wizard_base():
    """pwem's particle mask-radius wizard (draws the circle on particle images), or Wizard."""
    try:
        from pwem.wizards.wizard import ParticleMaskRadiusWizard
    except ImportError:  # pragma: no cover - pwem without its wizards
        return DeepAlignWizard
    return ParticleMaskRadiusWizard


class DeepAlignFscMaskWizard(_mask_radius_wizard_base()):
    """Draw the FSC mask radius as a circle on the input particles and set it (Å)."""
    param_name = "maskRadiusA"
    title = "FSC mask radius"
    _targets = targets(param_name)

    def show(self, form, *params):
        from pwem import constants as emcts

        protocol = form.protocol
        radius = value_of(protocol, self.param_name)
        provider = self._getListProvider(protocol.inputParticles)
        if provider is None:
            form.showWarning("Select the aligned particles first.", header=self.title)
            return
        super().show(form, -1 if radius is None or radius <= 0 else radius, self.param_name,
                     units=emcts.UNIT_ANGSTROM)

    def _getProvider(self, protocol):
        return self._getListProvider(protocol.inputParticles)
