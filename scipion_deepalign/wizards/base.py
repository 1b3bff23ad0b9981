"""What the DeepAlign wizards share: finding the protocols they serve, reading the input
particles, and asking the user in dialogs that tests can stand in for.

A wizard computes with ``preview(protocol)`` (a function of
:mod:`scipion_deepalign.core.align.cost`, tested on its own) and, in ``show``, either shows
the answer or asks a question and writes the chosen value into the form. Forms in tests may
provide ``askNumber(title, prompt, default)`` and ``chooseFrom(title, prompt, options)``;
the Scipion form window gets pyworkflow dialogs instead.
"""
from pyworkflow.wizard import Wizard

__all__ = ["DeepAlignWizard", "targets", "input_particles", "particle_geometry",
           "ask_number", "choose_from", "PARTICLE_PARAMS", "PROTOCOL_NAMES"]

#: pointer parameters searched, in order, for the particles a protocol works on; a list of
#: pointers (the consensus protocol's ``inputSets``) gives its first set
PARTICLE_PARAMS = ("inputTrainingParticles", "inputParticles", "inputSet", "inputSets")
#: protocol classes (in :mod:`scipion_deepalign.protocols`) the wizards may target
PROTOCOL_NAMES = ("DeepAlignProtTrain", "DeepAlignProtAlign", "DeepAlignProtRefine",
                  "DeepAlignProtPredict", "DeepAlignProtConsensus", "DeepAlignProtReconstruct")


def targets(param_name, names=PROTOCOL_NAMES):
    """``[(ProtocolClass, [param_name])]`` for the plugin protocols defining ``param_name``."""
    try:
        from scipion_deepalign import protocols
    except ImportError:  # protocols not importable (e.g. missing Scipion pieces)
        return []
    found = []
    for name in names:
        cls = getattr(protocols, name, None)
        if cls is not None and _defines_param(cls, param_name):
            found.append((cls, [param_name]))
    return found


def _defines_param(protocol_class, param_name):
    try:
        return protocol_class().getParam(param_name) is not None
    except Exception:  # a form that cannot be built without a project: do not target it
        return False


def input_particles(protocol):
    """The first particle set the protocol points at (None when none is set)."""
    for name in PARTICLE_PARAMS:
        pointer = getattr(protocol, name, None)
        if name == "inputSets" and pointer is not None:
            pointer = next(iter(pointer), None)  # a multi-pointer: its first set
        value = pointer.get() if pointer is not None and hasattr(pointer, "get") else None
        if value is not None and hasattr(value, "getSamplingRate"):
            return value
    return None


def particle_geometry(protocol):
    """``(box_px, pixel_size_a, n_particles)`` of the protocol's input particles.

    Raises
    ------
    ValueError
        When no input particles are selected yet.
    """
    particles = input_particles(protocol)
    if particles is None:
        raise ValueError("Select the input particles first.")
    box_px = particles.getXDim() or particles.getDimensions()[0]
    return int(box_px), float(particles.getSamplingRate()), int(particles.getSize())


def value_of(protocol, name, default=None):
    """The form value of ``name`` (``default`` when the protocol has no such parameter)."""
    param = getattr(protocol, name, None)
    value = param.get() if param is not None and hasattr(param, "get") else None
    return default if value is None else value


def ask_number(form, title, prompt, default):
    """A number typed by the user (None when cancelled); ValueError if it is not a number."""
    ask = getattr(form, "askNumber", None)
    if ask is not None:
        text = ask(title, prompt, default)
    else:
        from pyworkflow.gui.dialog import askString

        text = askString(title, prompt, form.root, entryWidth=10, defaultValue=f"{default:g}")
    if text is None or str(text).strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number.") from None


def choose_from(form, title, prompt, options):
    """Index of the option the user picks (None when cancelled)."""
    choose = getattr(form, "chooseFrom", None)
    if choose is not None:
        return choose(title, prompt, options)
    from pyworkflow.gui.dialog import ListDialog
    from pyworkflow.gui.tree import ListTreeProviderString
    from pyworkflow.object import String

    items = [String(option) for option in options]
    dialog = ListDialog(form.root, title, ListTreeProviderString(items), prompt)
    return items.index(dialog.values[0]) if dialog.values else None


class DeepAlignWizard(Wizard):
    """Base: ``preview`` computes, ``choose`` shows or asks; a chosen value goes into the form.

    ``title`` is what the dialog says (words, not the class name).
    """
    param_name = None
    title = "DeepAlign"

    def preview(self, protocol):  # pragma: no cover - abstract
        raise NotImplementedError

    def choose(self, form, answer):
        """Show the answer (default); return a value to write into the form, or None."""
        form.showInfo(answer.message(), header=self.title)
        return None

    def show(self, form, *params):
        try:
            value = self.choose(form, self.preview(form.protocol))
        except ValueError as exc:
            form.showWarning(str(exc), header=self.title)
            return
        if value is not None:
            form.setVar(self.param_name, value)
