# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""The Scipion workflow templates: listed by pyworkflow, and they run end to end.

Each template is loaded the way Scipion's template browser loads it (environment variables,
fields, ``Project.loadProtocols``) into a fresh headless project and run protocol by protocol
on 60 simulated particles (box 32, no CTF) with tiny training and search settings: the single
map workflow, and the classification workflow (two maps, "deepalign - 3D classes").
"""
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

import os

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
TEMPLATE_ID = "deepalign-deepalign_workflow"
CLASSES_TEMPLATE_ID = "deepalign-deepalign_classes_workflow"
FIELDS = {"particlesPattern": "*.mrcs", "samplingRate": str(PIXEL_SIZE_A),
          "volumeSamplingRate": str(PIXEL_SIZE_A), "trainingSplit": "2"}
#: what the test changes in the forms after loading (the template sets none of these: the
#: forms' defaults, read from core/defaults.py, hold), protocol id -> {parameter: value}
TINY = {"5": dict(regionSpacingDeg=90.0, numberOfEpochs=1, imagesPerEpoch=256),
        "7": dict(angularStepDeg=15.0, maxShiftPx=1.0),
        "8": dict(angularStepDeg=15.0, maxShiftPx=1.0),
        "9": dict(maxAngleDeg=20.0)}


def _template(template_id=TEMPLATE_ID):
    from scipion_deepalign.plugin import Plugin

    templates = {t.getObjId(): t for t in Plugin().getTemplates()}
    assert template_id in templates, sorted(templates)
    return templates[template_id]


def _launch_in_order(test, protocols):
    """Launch a loaded template's protocols by id (``protocols`` gets the launched ones); a
    failing protocol's log is printed."""
    for prot_id in sorted(protocols, key=int):
        prot = test.proj.getProtocol(protocols[prot_id].getObjId())
        try:
            test.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise
        protocols[prot_id] = prot


class TestWorkflowTemplate(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.folder = cls.getOutputPath("sim")
        cls.data = sh.simulate_dataset(cls.folder, n=60, box_px=32, pixel_size_a=PIXEL_SIZE_A,
                                       snr=2.0, ctf=False, seed=6, with_poses=False)

    def test_listed_by_pyworkflow_with_its_description(self):
        from pyworkflow.template import TemplateList

        listed = TemplateList()
        listed.addPluginTemplates()
        assert TEMPLATE_ID in [t.getObjId() for t in listed.templates]
        assert "DeepAlign" in _template().description

    def test_runs_end_to_end_on_simulated_particles(self):
        template = _template()
        template.replaceEnvVariables()
        template.parseContent()
        values = dict(FIELDS, particlesFolder=os.path.dirname(self.data.stack_path),
                      volumeFile=self.data.volume_path)
        for alias, value in values.items():
            assert template.setParamValue(alias, value) == 1, alias
        protocols = self.proj.loadProtocols(template.createTemplateFile())
        assert len(protocols) == 9
        self._check_form_defaults(protocols)
        for prot_id, params in TINY.items():  # what a user changes in the forms
            for name, value in params.items():
                getattr(protocols[prot_id], name).set(value)
            self.proj.saveProtocol(protocols[prot_id])
        _launch_in_order(self, protocols)
        self._check_outputs(protocols)

    @staticmethod
    def _check_form_defaults(protocols):
        """The template fixes no training or search setting: the forms' defaults hold."""
        from scipion_deepalign.core import defaults

        train = protocols["5"]
        assert train.numberOfEpochs.get() == defaults.train_default("epochs")
        assert train.imagesPerEpoch.get() == defaults.train_default("images_per_epoch")
        assert train.regionSpacingDeg.get() == defaults.REGION_SPACING_DEG
        for key in ("7", "8"):
            assert protocols[key].angularStepDeg.get() is None  # automatic
        assert protocols["9"].maxAngleDeg.get() == defaults.CONSENSUS_MAX_ANGLE_DEG

    def _check_outputs(self, protocols):
        assert protocols["2"].outputParticles.getSize() == 60
        assert protocols["4"].outputParticles01.getSize() == 30
        for key in ("7", "8"):
            aligned = protocols[key].outputParticles
            assert aligned.getSize() == 60 and aligned.hasAlignmentProj()
        agree = protocols["9"].outputParticles.getSize()
        assert 2 <= agree <= 60
        reconstruct = protocols["10"]
        assert os.path.exists(reconstruct.outputVolume.getFileName())
        fsc = np.asarray(reconstruct.outputFSC.getData()[1])
        assert fsc.size > 4 and fsc[1] > 0.5


class TestClassesWorkflowTemplate(BaseTest):
    """The classification template on 60 particles of two maps (the phantom, and the phantom
    with a ball of density masked away), SNR 3, no CTF, 70/30."""

    @classmethod
    def setUpClass(cls):
        import mrcfile

        from scipion_deepalign.core.classes.mixture import simulate_mixture
        from scipion_deepalign.tests.helpers import phantom_pair

        setupTestProject(cls)
        cls.particles_folder = cls.getOutputPath("mix")
        maps_folder = cls.getOutputPath("maps")
        for folder in (cls.particles_folder, maps_folder):
            os.makedirs(folder, exist_ok=True)
        maps = phantom_pair(32, radius_px=6.0)
        images, _, cls.true_classes = simulate_mixture(
            maps, 60, pixel_size_a=PIXEL_SIZE_A, fractions=(0.7, 0.3), snr=3.0, ctf=False,
            seed=3)
        cls.map_files = []
        for path, data in [(os.path.join(cls.particles_folder, "particles.mrcs"), images)] + [
                (os.path.join(maps_folder, f"{name}.mrc"), m) for name, m in zip("AB", maps)]:
            with mrcfile.new(path, overwrite=True) as mrc:
                mrc.set_data(np.asarray(data, np.float32))
                mrc.voxel_size = PIXEL_SIZE_A
            if path.endswith(".mrc"):
                cls.map_files.append(path)

    def _load(self, **values):
        """The template's protocols in a project, its fields set as the browser sets them."""
        template = _template(CLASSES_TEMPLATE_ID)
        template.replaceEnvVariables()
        template.parseContent()
        values = dict({"particlesFolder": self.particles_folder,
                       "samplingRate": str(PIXEL_SIZE_A),
                       "volume1File": self.map_files[0], "volume2File": self.map_files[1],
                       "volume1SamplingRate": str(PIXEL_SIZE_A),
                       "volume2SamplingRate": str(PIXEL_SIZE_A)}, **values)
        for alias, value in values.items():
            assert template.setParamValue(alias, value) == 1, alias
        loaded = self.proj.loadProtocols(template.createTemplateFile())
        return {key: self.proj.getProtocol(p.getObjId()) for key, p in loaded.items()}

    def test_listed_by_pyworkflow_with_its_description(self):
        from pyworkflow.template import TemplateList

        listed = TemplateList()
        listed.addPluginTemplates()
        ids = [t.getObjId() for t in listed.templates]
        assert TEMPLATE_ID in ids and CLASSES_TEMPLATE_ID in ids
        assert "3D classification" in _template(CLASSES_TEMPLATE_ID).description

    def test_loads_wired_with_the_forms_defaults(self):
        from scipion_deepalign.core import defaults
        from scipion_deepalign.protocols import DeepAlignProtClasses3D

        protocols = self._load()
        assert sorted(protocols, key=int) == ["2", "3", "4", "5"]
        classes = protocols["5"]
        assert isinstance(classes, DeepAlignProtClasses3D)
        particles = classes.inputParticles
        assert particles.getObjValue().getObjId() == protocols["2"].getObjId()
        assert particles.getExtended() == "outputParticles"
        # class k is the k-th map: the two imports, in the template's order
        volumes = [(p.getObjValue().getObjId(), p.getExtended()) for p in classes.inputVolumes]
        assert volumes == [(protocols["3"].getObjId(), "outputVolume"),
                           (protocols["4"].getObjId(), "outputVolume")]
        assert [p.filesPath.get() for p in (protocols["3"], protocols["4"])] == self.map_files
        assert classes.useNetwork.get() is True
        # nothing else is set by the template: the form's defaults (core/defaults.py) hold
        assert classes.numberOfEpochs.get() == defaults.train_default("epochs")
        assert classes.regionSpacingDeg.get() == defaults.REGION_SPACING_DEG
        assert defaults.CLASS_OUTPUTS[classes.classOutput.get()] == \
            defaults.train_default("class_output")
        assert defaults.CLASS_PRIORS[classes.classPrior.get()] == defaults.CLASS_PRIOR
        assert classes.iterations.get() == defaults.CLASSIFY_ITERATIONS
        assert classes.angularStepDeg.get() is None  # automatic, from the resolution
        assert self._load(useNetwork="false")["5"].useNetwork.get() is False

    def test_runs_end_to_end_without_the_network(self):
        """Without the network (deepalign classify, 2 iterations, coarse step): the fastest
        settings; the class of each particle is checked against the truth."""
        protocols = self._load(useNetwork="false")
        classes = protocols["5"]
        for name, value in dict(iterations=2, angularStepDeg=15.0, maxShiftPx=1.0,
                                alignResolutionA="16", localRefinement=False,
                                useGpu=False).items():
            getattr(classes, name).set(value)  # what a user changes in the form
        self.proj.saveProtocol(classes)
        _launch_in_order(self, protocols)
        assert protocols["2"].outputParticles.getSize() == 60
        classes = protocols["5"]
        found = {}
        for cls in classes.outputClasses.iterItems(orderBy="id"):
            assert os.path.exists(cls.getRepresentative().getFileName())
            found.update({p.getObjId(): cls.getObjId() for p in cls.iterItems()})
        assert sorted(found) == list(range(1, 61))
        labels = np.array([found[i] for i in range(1, 61)]) - 1
        accuracy = np.mean(labels == self.true_classes)
        assert accuracy >= 0.9, accuracy  # class k = the k-th imported map
        # each class reconstructed with half maps and their FSC (no extra protocol needed)
        summary = "\n".join(classes.summary())
        for k in (1, 2):
            assert os.path.exists(classes._getFileName("class_fsc", k=k)), k
            assert f"class {k}: " in summary
        assert "FSC 0.143 of its half maps" in summary
