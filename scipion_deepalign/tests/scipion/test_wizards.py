"""Wizard computations (core.wizard_math) and the wizards' headless ``preview``/``show``."""
import pytest

from scipion_deepalign.core.cnn.checks import regions_preview
from scipion_deepalign.core.particles import shift_angstrom_to_px, shift_px_to_angstrom
from scipion_deepalign.core.projection import downsampling_preview


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
    assert "32 px" in preview.message() and "4 Å/px" in preview.message()


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
    """Records what a wizard shows and sets instead of opening windows; ``answer`` is what
    the user types or picks."""

    def __init__(self, protocol, answer=None):
        self.protocol, self.infos, self.warnings = protocol, [], []
        self.answer, self.asked, self.values, self.headers = answer, [], {}, []

    def showInfo(self, msg, header="Info"):
        self.infos.append(msg)
        self.headers.append(header)

    def showWarning(self, msg, header="Warning"):
        self.warnings.append(msg)
        self.headers.append(header)

    def askNumber(self, title, prompt, default):
        self.asked.append((prompt, default))
        self.headers.append(title)
        return self.answer

    def chooseFrom(self, title, prompt, options):
        self.asked.append((prompt, options))
        return self.answer

    def setVar(self, name, value):
        self.values[name] = value


def test_downsampling_wizard_shows_geometry_and_sets_the_resolution_of_a_box():
    from scipion_deepalign.core.projection import downsampled_geometry
    from scipion_deepalign.wizards import DeepAlignDownsamplingWizard

    protocol = _Protocol(particles=_Particles(96, 1.5, 500), targetResolutionA=6.0)
    wizard = DeepAlignDownsamplingWizard()
    preview = wizard.preview(protocol)
    assert (preview.new_box_px, preview.new_pixel_size_a) == (48, pytest.approx(3.0))
    form = _Form(protocol, answer="32")
    wizard.show(form, "targetResolutionA")
    (prompt, default), = form.asked
    assert form.warnings == [] and "48 px" in prompt and default == 48
    assert form.values["targetResolutionA"] == pytest.approx(9.0)
    assert downsampled_geometry(96, 1.5, form.values["targetResolutionA"])[0] == 32
    assert form.headers == ["Network input size"]  # a title in words
    form = _Form(protocol, answer=None)  # cancelled: nothing set
    wizard.show(form, "targetResolutionA")
    assert form.values == {}


def test_downsampling_wizard_warns_without_particles_or_below_nyquist():
    from scipion_deepalign.wizards import DeepAlignDownsamplingWizard

    form = _Form(_Protocol(targetResolutionA=6.0))
    DeepAlignDownsamplingWizard().show(form, "targetResolutionA")
    assert form.infos == [] and "input particles" in form.warnings[0]
    form = _Form(_Protocol(particles=_Particles(96, 2.0, 10), targetResolutionA=3.0))
    DeepAlignDownsamplingWizard().show(form, "targetResolutionA")
    assert "Nyquist" in form.warnings[0]
    form = _Form(_Protocol(particles=_Particles(96, 2.0, 10), targetResolutionA=8.0),
                 answer="33")
    DeepAlignDownsamplingWizard().show(form, "targetResolutionA")
    assert "even number" in form.warnings[0] and form.values == {}


def test_search_resolution_wizard_full_box_writes_full():
    from scipion_deepalign.wizards import DeepAlignSearchResolutionWizard

    protocol = _Protocol(particles=_Particles(64, 2.0, 10), alignResolutionA=None)
    form = _Form(protocol, answer="32")
    DeepAlignSearchResolutionWizard().show(form, "alignResolutionA")
    assert form.asked[0][1] == 64  # empty: the full box
    assert form.values["alignResolutionA"] == pytest.approx(8.0)
    form = _Form(_Protocol(particles=_Particles(64, 2.0, 10), alignResolutionA=8.0),
                 answer="64")
    DeepAlignSearchResolutionWizard().show(form, "alignResolutionA")
    assert form.values["alignResolutionA"] == "full"


def test_regions_wizard_counts_regions():
    from scipion_deepalign.core.regions import count_regions
    from scipion_deepalign.wizards import DeepAlignRegionsWizard

    protocol = _Protocol(particles=_Particles(64, 2.0, 3000), regionSpacingDeg=20.0,
                         symmetryGroup="d2")
    form = _Form(protocol)
    DeepAlignRegionsWizard().show(form, "regionSpacingDeg")
    n = count_regions(20.0, "d2")
    assert f"{n} region" in form.infos[0] and f"{3000 / n:.0f} per region" in form.infos[0]
    assert "one network each" not in form.infos[0].split(":")[0]  # true for both networks
    assert "shared network has one output per region" in form.infos[0]


def test_regions_wizard_warns_when_regions_get_too_few_particles():
    from scipion_deepalign.wizards import DeepAlignRegionsWizard

    protocol = _Protocol(particles=_Particles(64, 2.0, 200), regionSpacingDeg=30.0,
                         symmetryGroup="c1", minParticlesPerRegion=10)
    form = _Form(protocol)
    DeepAlignRegionsWizard().show(form, "regionSpacingDeg")
    assert form.infos == [] and "fewer than the minimum of 10" in form.warnings[0]
    assert "reference map" in form.warnings[0]


def test_max_shift_wizard_converts_to_angstrom():
    from scipion_deepalign.wizards import DeepAlignMaxShiftWizard

    protocol = _Protocol(particles=_Particles(80, 2.5, 10), maxShiftPx=4.0)
    shown = DeepAlignMaxShiftWizard().preview(protocol)
    assert shown.shift_a == pytest.approx(10.0)
    assert "10.0 Å" in shown.message() and "5 % of the 80 px box" in shown.message()
    form = _Form(protocol, answer="5")  # the user types Angstrom, the form gets pixels
    DeepAlignMaxShiftWizard().show(form, "maxShiftPx")
    assert form.asked[0][1] == pytest.approx(10.0) and form.values["maxShiftPx"] == 2.0


def test_shift_wizard_on_the_consensus_uses_the_first_set():
    from scipion_deepalign.wizards import DeepAlignMaxShiftWizard

    protocol = _Protocol(maxShiftPx=None)
    protocol.inputSets = [_Value(_Particles(64, 1.25, 10)), _Value(_Particles(64, 1.25, 9))]
    shown = DeepAlignMaxShiftWizard().preview(protocol)
    assert "shifts are not compared" in shown.message()
    form = _Form(protocol, answer="2.5")
    DeepAlignMaxShiftWizard().show(form, "maxShiftPx")
    assert form.values["maxShiftPx"] == 2.0


def test_angular_step_wizard_counts_references_and_comparisons():
    from scipion_deepalign.core.align.cost import search_cost
    from scipion_deepalign.core.regions import count_regions
    from scipion_deepalign.protocols.protocol_align import AlignSteps
    from scipion_deepalign.wizards import DeepAlignAngularStepWizard

    class _AlignProtocol(_Protocol):  # the alignment's own count, on stand-in values
        searchCost = AlignSteps.searchCost
        searchResolutionA = AlignSteps.searchResolutionA
        _searchResolution = AlignSteps._searchResolution
        _searchRegionCount = AlignSteps._searchRegionCount

        def getAttributeValue(self, name, default=None):
            value = getattr(self, name, None)
            return default if value is None or value.get() is None else value.get()

    protocol = _AlignProtocol(particles=_Particles(64, 2.0, 10), angularStepDeg=5.0, topK=2,
                              regionSpacingDeg=30.0, trainModel=True, symmetryGroup="c1",
                              maxShiftPx=3.0, alignResolutionA=None)
    cost = DeepAlignAngularStepWizard().preview(protocol)
    expected = search_cost(64, 2.0, step_deg=5.0, max_shift_px=3.0, top_k=2,
                           n_regions=count_regions(30.0, "c1"))
    assert cost == expected and cost.n_directions < cost.n_directions_unit
    form = _Form(protocol)
    DeepAlignAngularStepWizard().show(form, "angularStepDeg")
    assert f"{cost.comparisons:,} comparisons per particle" in form.infos[0]
    assert form.values == {}


def test_poses_set_wizard_picks_a_set_by_name():
    from scipion_deepalign.wizards import DeepAlignPosesSetWizard

    protocol = _Protocol(keepPosesFrom=1)
    protocol.inputSetNames = lambda: ["align 12", "relion refine 3D"]
    form = _Form(protocol, answer=1)
    DeepAlignPosesSetWizard().show(form, "keepPosesFrom")
    assert form.asked[0][1] == ["1: align 12", "2: relion refine 3D"]
    assert form.values["keepPosesFrom"] == 2


def test_wizard_targets_name_existing_parameters():
    from scipion_deepalign import wizards

    for wizard in (getattr(wizards, name) for name in wizards.__all__):
        assert wizard._targets, f"{wizard.__name__} targets no protocol"
        assert "Wizard" not in wizard.title and "DeepAlign" not in wizard.title
        for protocol_class, names in wizard._targets:
            assert all(protocol_class().getParam(n) is not None for n in names)
    targeted = {cls.__name__ for cls, _ in wizards.DeepAlignDownsamplingWizard._targets}
    assert "DeepAlignProtTrain" in targeted


# ----------------------------------------------------------------------------- more maths
@pytest.mark.parametrize("box, pixel, new_box", [(96, 1.5, 32), (100, 1.37, 34), (256, 0.83, 64),
                                                 (64, 2.0, 64)])
def test_resolution_for_box_gives_that_box(box, pixel, new_box):
    from scipion_deepalign.core.projection import downsampled_geometry, resolution_for_box

    resolution = resolution_for_box(box, pixel, new_box)
    assert downsampled_geometry(box, pixel, resolution)[0] == new_box
    assert resolution == pytest.approx(2 * pixel * box / new_box, abs=0.01)


def test_resolution_for_box_rejects_odd_or_larger_boxes():
    from scipion_deepalign.core.projection import resolution_for_box

    for new_box in (33, 0, 128):
        with pytest.raises(ValueError, match="new_box_px"):
            resolution_for_box(96, 1.0, new_box)


def test_search_cost_known_answers():
    import numpy as np

    from scipion_deepalign.core.align.cost import search_cost
    from scipion_deepalign.core.align.gallery import default_step_deg
    from scipion_deepalign.core.regions import region_direction_grids

    cost = search_cost(64, 2.0, symmetry="c4", step_deg=10.0, max_shift_px=0.0)
    unit = len(region_direction_grids(np.zeros((1, 2)), "c4", 10.0)[0])
    assert (cost.n_directions, cost.n_directions_unit, cost.n_shifts) == (unit, unit, 1)
    assert cost.n_inplane == 36 and cost.comparisons == unit * 36
    # shift 1 px: the centre and its 4 neighbours
    assert search_cost(64, 2.0, step_deg=10.0, max_shift_px=1.0).n_shifts == 5
    # automatic step on a downsampled box: one pixel at 0.45 of the search box, two before
    # the local refinement (the alignment's default)
    auto = search_cost(128, 1.0, target_resolution_a=4.0, max_shift_px=0.0, refine=False)
    assert auto.search_box_px == 64 and auto.automatic_step
    assert auto.step_deg == pytest.approx(np.rad2deg(1.0 / (0.45 * 64)))
    assert "automatic: 1 px at the particle radius" in auto.message()
    coarse = search_cost(128, 1.0, target_resolution_a=4.0, max_shift_px=0.0, refine=True)
    assert coarse.step_deg == pytest.approx(2.0 * auto.step_deg)
    assert coarse.step_deg == pytest.approx(default_step_deg(0.45 * 64, refine=True))
    assert "automatic: 2 px at the particle radius, then local refinement" in coarse.message()
    # the alignment's own search geometry: same step, in-plane grid and shift window
    from scipion_deepalign.core.align.search import Search

    search = Search.create(128, 1.0, max_shift_px=5.0, target_resolution_a=4.0, refine=True)
    cost = search_cost(128, 1.0, target_resolution_a=4.0, max_shift_px=5.0, refine=True)
    assert (cost.step_deg, cost.n_inplane, cost.n_shifts) == (
        search.step_deg, search.n_psi, len(search.offsets))
    # two of 42 regions: about 2/42 of the unit
    regional = search_cost(64, 2.0, step_deg=5.0, top_k=2, n_regions=42)
    assert regional.n_directions == int(np.ceil(regional.n_directions_unit * 2 / 42))
    with pytest.raises(ValueError, match="step_deg"):
        search_cost(64, 2.0, step_deg=0.0)


def test_fsc_mask_wizard_asks_for_particles_first():
    from scipion_deepalign.wizards import DeepAlignFscMaskWizard

    class _NoSet(_Value):
        def hasValue(self):
            return False

    protocol = _Protocol(maskRadiusA=None)
    protocol.inputParticles = _NoSet(None)
    form = _Form(protocol)
    DeepAlignFscMaskWizard().show(form, "maskRadiusA")
    assert form.warnings == ["Select the aligned particles first."] and form.values == {}
    targeted = {cls.__name__ for cls, _ in DeepAlignFscMaskWizard._targets}
    assert targeted == {"DeepAlignProtReconstruct"}
