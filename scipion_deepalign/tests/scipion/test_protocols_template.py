# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""The Scipion workflow template: listed by pyworkflow, and it runs end to end.

The template is loaded the way Scipion's template browser loads it (environment variables,
fields, ``Project.loadProtocols``) into a fresh headless project and run protocol by protocol
on 60 simulated particles (box 32, no CTF) with tiny training and search settings.
"""
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

import os

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
TEMPLATE_ID = "deepalign-deepalign_workflow"
TINY = {"particlesPattern": "*.mrcs", "samplingRate": str(PIXEL_SIZE_A),
        "volumeSamplingRate": str(PIXEL_SIZE_A), "trainingSplit": "2", "regionSpacing": "90",
        "epochs": "1", "imagesPerEpoch": "256", "angularStep": "15", "maxShift": "1",
        "baselineAngularStep": "15", "baselineMaxShift": "1", "maxAngle": "20"}


def _template():
    from scipion_deepalign.plugin import Plugin

    templates = {t.getObjId(): t for t in Plugin().getTemplates()}
    assert TEMPLATE_ID in templates, sorted(templates)
    return templates[TEMPLATE_ID]


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
        values = dict(TINY, particlesFolder=os.path.dirname(self.data.stack_path),
                      volumeFile=self.data.volume_path)
        for alias, value in values.items():
            assert template.setParamValue(alias, value) == 1, alias
        protocols = self.proj.loadProtocols(template.createTemplateFile())
        assert len(protocols) == 9
        for prot_id in sorted(protocols, key=int):
            prot = self.proj.getProtocol(protocols[prot_id].getObjId())
            try:
                self.launchProtocol(prot)
            except Exception:
                print(sh.run_log(prot))
                raise
            protocols[prot_id] = prot
        self._check_outputs(protocols)

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
