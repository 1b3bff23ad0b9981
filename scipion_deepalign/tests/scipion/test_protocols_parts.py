# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""Align protocol in parts: 3 parallel part steps and a merge give the poses of one part,
bit for bit (CPU, global search on a tiny set)."""
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
N = 7


class TestAlignInParts(BaseTest):

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        data = sh.simulate_dataset(cls.getOutputPath("sim"), n=N, box_px=16,
                                   pixel_size_a=PIXEL_SIZE_A, snr=10.0, seed=4,
                                   with_poses=False)
        cls.particles = sh.import_particles(cls, data.sqlite_path, PIXEL_SIZE_A)
        cls.volume = sh.import_volume(cls, data.volume_path, PIXEL_SIZE_A)

    def _align(self, label, **kwargs):
        from scipion_deepalign.protocols import DeepAlignProtAlign

        prot = self.newProtocol(DeepAlignProtAlign, objLabel=label,
                                inputParticles=self.particles, inputVolume=self.volume,
                                globalSearch=True, angularStepDeg=30.0, maxShiftPx=1.0,
                                useGpu=False, **kwargs)
        try:
            self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise
        return prot

    def test_three_parts_equal_one(self):
        from scipion_deepalign.convert import read_set_poses

        one = self._align("one part")
        three = self._align("three parts", partSize=3, numberOfThreads=4)
        steps = [s.funcName.get() for s in three.loadSteps()]
        assert steps.count("alignStep") == 3 and steps.count("mergePartsStep") == 1
        assert "Processed in 3 parts of at most 3 particles (one step each)." in \
            three.summary()
        assert "Processed in 1 part of at most 20000" in "\n".join(one.summary())
        ids_1, angles_1, shifts_1 = read_set_poses(one.outputParticles)
        ids_3, angles_3, shifts_3 = read_set_poses(three.outputParticles)
        assert len(ids_3) == N
        np.testing.assert_array_equal(ids_1, ids_3)
        np.testing.assert_array_equal(angles_1, angles_3)
        np.testing.assert_array_equal(shifts_1, shifts_3)

    def test_part_and_batch_sizes_must_be_positive(self):
        from scipion_deepalign.protocols import DeepAlignProtAlign

        prot = self.newProtocol(DeepAlignProtAlign, inputParticles=self.particles,
                                inputVolume=self.volume, globalSearch=True, maxShiftPx=1.0,
                                partSize=0, streamBatchSize=0)
        text = "\n".join(prot.validate())
        assert "Particles per part must be at least 1, got 0." in text
        assert "Streaming batch must be at least 1 particle, got 0." in text
