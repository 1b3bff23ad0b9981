"""Wizard computations (core.wizard_math) and the wizards' headless ``preview``/``show``."""
import pytest

from scipion_deepalign.core.wizard_math import (
    downsampling_preview,
    regions_preview,
    shift_angstrom_to_px,
    shift_px_to_angstrom,
)


# ----------------------------------------------------------------------------- core maths
@pytest.mark.parametrize("shift_a, pixel_size_a, expected_px", [(10.0, 2.0, 5.0),
                                                                (3.0, 1.5, 2.0),
                                                                (0.0, 4.0, 0.0)])
def test_shift_angstrom_px_round_trip(shift_a, pixel_size_a, expected_px):
    px = shift_angstrom_to_px(shift_a, pixel_size_a)
    assert px == pytest.approx(expected_px)
    assert shift_px_to_angstrom(px, pixel_size_a) == pytest.approx(shift_a)


@pytest.mark.parametrize("call, name", [
    (lambda: shift_angstrom_to_px(1.0, 0.0), "pixel_size_a"),
    (lambda: shift_angstrom_to_px(-1.0, 1.0), "shift_a"),
    (lambda: shift_px_to_angstrom(-2.0, 1.0), "shift_px"),
    (lambda: downsampling_preview(64, -1.0, 8.0), "pixel_size_a"),
    (lambda: downsampling_preview(0, 1.0, 8.0), "box_px"),
    (lambda: downsampling_preview(64, 1.0, 0.0), "target_resolution_a"),
    (lambda: regions_preview(0.0, "c1"), "spacing_deg"),
    (lambda: regions_preview(30.0, "c1", n_particles=-5), "n_particles"),
])
def test_invalid_inputs_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_downsampling_keeps_field_of_view_and_reaches_target():
    # 128 px at 1 A, target 8 A: Nyquist 4 A/px, so 32 px.
    preview = downsampling_preview(128, 1.0, 8.0)
    assert (preview.new_box_px, preview.new_pixel_size_a) == (32, pytest.approx(4.0))
    assert preview.new_box_px * preview.new_pixel_size_a == pytest.approx(128 * 1.0)
    assert preview.nyquist_a == pytest.approx(8.0) and preview.factor == pytest.approx(4.0)
    assert "32 px" in preview.message() and "4 A/px" in preview.message()


def test_downsampling_never_upsamples():
    preview = downsampling_preview(64, 2.0, 4.0)  # target at Nyquist already
    assert (preview.new_box_px, preview.new_pixel_size_a) == (64, pytest.approx(2.0))


def test_downsampling_rejects_target_finer_than_nyquist():
    with pytest.raises(ValueError, match="target_resolution_a"):
        downsampling_preview(64, 2.0, 3.0)


def test_regions_preview_counts_and_symmetry():
    from scipion_deepalign.core.regions import count_regions

    c1 = regions_preview(30.0, "C1", n_particles=1000)
    assert c1.symmetry == "c1" and c1.n_regions == count_regions(30.0, "c1")
    assert c1.particles_per_region == pytest.approx(1000 / c1.n_regions)
    c4 = regions_preview(30.0, "c4")
    # a 4-fold axis leaves about a quarter of the sphere; finer spacing, more regions
    assert c4.n_regions < c1.n_regions
    assert regions_preview(15.0, "c1").n_regions > c1.n_regions
    assert c4.particles_per_region is None
    assert f"{c1.n_regions} region" in c1.message() and "per region" in c1.message()


def test_regions_preview_unknown_symmetry():
    with pytest.raises(ValueError, match="symmetry"):
        regions_preview(30.0, "q5")


# ----------------------------------------------------------------------------- wizards
pytest.importorskip("pwem")


class _Value:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


class _Particles:
    def __init__(self, box_px, pixel_size_a, n):
        self.box_px, self.pixel_size_a, self.n = box_px, pixel_size_a, n

    def getSamplingRate(self):
        return self.pixel_size_a

    def getXDim(self):
        return self.box_px

    def getSize(self):
        return self.n


class _Protocol:
    """Stand-in protocol with the assumed parameter names."""

    def __init__(self, *, particles=None, **values):
        self.inputParticles = _Value(particles)
        for key, value in values.items():
            setattr(self, key, _Value(value))


class _Form:
    """Records what a wizard shows instead of opening windows."""

    def __init__(self, protocol):
        self.protocol, self.infos, self.warnings = protocol, [], []

    def showInfo(self, msg, header="Info"):
        self.infos.append(msg)

    def showWarning(self, msg, header="Warning"):
        self.warnings.append(msg)


def test_downsampling_wizard_shows_geometry():
    from scipion_deepalign.wizards import DeepAlignDownsamplingWizard

    protocol = _Protocol(particles=_Particles(96, 1.5, 500), targetResolutionA=6.0)
    wizard = DeepAlignDownsamplingWizard()
    preview = wizard.preview(protocol)
    assert (preview.new_box_px, preview.new_pixel_size_a) == (48, pytest.approx(3.0))
    form = _Form(protocol)
    wizard.show(form, "targetResolutionA")
    assert form.warnings == [] and "48 px" in form.infos[0]


def test_downsampling_wizard_warns_without_particles_or_below_nyquist():
    from scipion_deepalign.wizards import DeepAlignDownsamplingWizard

    form = _Form(_Protocol(targetResolutionA=6.0))
    DeepAlignDownsamplingWizard().show(form, "targetResolutionA")
    assert form.infos == [] and "input particles" in form.warnings[0]
    form = _Form(_Protocol(particles=_Particles(96, 2.0, 10), targetResolutionA=3.0))
    DeepAlignDownsamplingWizard().show(form, "targetResolutionA")
    assert "Nyquist" in form.warnings[0]


def test_regions_wizard_counts_regions():
    from scipion_deepalign.core.regions import count_regions
    from scipion_deepalign.wizards import DeepAlignRegionsWizard

    protocol = _Protocol(particles=_Particles(64, 2.0, 3000), regionSpacingDeg=20.0,
                         symmetryGroup="d2")
    form = _Form(protocol)
    DeepAlignRegionsWizard().show(form, "regionSpacingDeg")
    n = count_regions(20.0, "d2")
    assert f"{n} region" in form.infos[0] and f"{3000 / n:.0f} per region" in form.infos[0]


def test_max_shift_wizard_converts_to_angstrom():
    from scipion_deepalign.wizards import DeepAlignMaxShiftWizard

    protocol = _Protocol(particles=_Particles(80, 2.5, 10), maxShiftPx=4.0)
    shown = DeepAlignMaxShiftWizard().preview(protocol)
    assert shown.shift_a == pytest.approx(10.0)
    assert "10.0 A" in shown.message() and "5 % of the 80 px box" in shown.message()


def test_wizard_targets_name_existing_parameters():
    from scipion_deepalign import wizards

    for wizard in (wizards.DeepAlignDownsamplingWizard, wizards.DeepAlignRegionsWizard,
                   wizards.DeepAlignMaxShiftWizard):
        assert wizard._targets, f"{wizard.__name__} targets no protocol"
        for protocol_class, names in wizard._targets:
            assert all(protocol_class().getParam(n) is not None for n in names)
    targeted = {cls.__name__ for cls, _ in wizards.DeepAlignDownsamplingWizard._targets}
    assert "DeepAlignProtTrain" in targeted
