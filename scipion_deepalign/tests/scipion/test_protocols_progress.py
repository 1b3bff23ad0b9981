# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""The protocols' step logs show the same progress lines as the command line.

A global alignment of 40 simulated particles (a ``deepalign align`` subprocess) and a
reconstruction from its poses (a ``deepalign reconstruct`` subprocess): each run's
``logs/run.stdout`` holds progress lines every few percent and the command's summary; errors
stay in ``run.stderr``.
"""
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

import re

from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
BOX_PX = 32


def _stdout(prot) -> str:
    with open(prot._getLogsPath("run.stdout")) as fh:
        return fh.read()


class TestStepLogProgress(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        data = sh.simulate_dataset(cls.getOutputPath("sim"), n=40, box_px=BOX_PX,
                                   pixel_size_a=PIXEL_SIZE_A, snr=5.0, seed=4, with_poses=False)
        cls.particles = sh.import_particles(cls, data.sqlite_path, PIXEL_SIZE_A)
        cls.volume = sh.import_volume(cls, data.volume_path, PIXEL_SIZE_A)

    def _launch(self, prot):
        try:
            return self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise

    def test_align_and_reconstruct_steps_log_progress(self):
        from scipion_deepalign.protocols import DeepAlignProtAlign, DeepAlignProtReconstruct

        align = self.newProtocol(DeepAlignProtAlign, inputParticles=self.particles,
                                 inputVolume=self.volume, globalSearch=True,
                                 angularStepDeg=10.0, maxShiftPx=1.0, symmetryGroup="c1")
        self._launch(align)
        log = _stdout(align)
        steps = re.findall(r"deepalign: align: (\d+)% \((\d+) of 40 particles\), .*/s", log)
        assert len(steps) >= 5 and steps[-1] == ("100", "40"), log[-3000:]
        assert "ETA" in log and "deepalign align: done in" in log

        recon = self.newProtocol(DeepAlignProtReconstruct,
                                 inputParticles=align.outputParticles)
        self._launch(recon)
        log = _stdout(recon)
        assert re.search(r"reconstruct: 100% \(40 of 40 particles\)", log), log[-3000:]
