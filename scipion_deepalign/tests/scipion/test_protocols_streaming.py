# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""Streaming: the align protocol on an input set that grows in three batches and then
closes processes each batch as it arrives; the output grows and ends with every particle
exactly once, with the poses of a run on the closed set."""
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

import time

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
N, BATCH = 9, 3


def _wait_for(what, condition, timeout=240):
    start = time.time()
    while not condition():
        if time.time() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


class TestAlignStreaming(BaseTest):

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        data = sh.simulate_dataset(cls.getOutputPath("sim"), n=N, box_px=16,
                                   pixel_size_a=PIXEL_SIZE_A, snr=10.0, seed=6,
                                   with_poses=False)
        cls.particles = sh.import_particles(cls, data.sqlite_path, PIXEL_SIZE_A)
        cls.volume = sh.import_volume(cls, data.volume_path, PIXEL_SIZE_A)

    def _open_set(self, name="streamParticles"):
        """An open copy of the first batch, registered as an output ``name`` of the import."""
        from pwem.objects import SetOfParticles
        from pyworkflow.object import Pointer, Set

        importer = self.particles.getObjParentId()
        importer = self.proj.getProtocol(importer)
        self.stream_path = importer._getExtraPath(f"{name}.sqlite")
        self.items = [p.clone() for p in self.particles.iterItems()]
        stream = SetOfParticles(filename=self.stream_path)
        stream.copyInfo(self.particles)
        for item in self.items[:BATCH]:
            stream.append(item)
        stream.setStreamState(Set.STREAM_OPEN)
        stream.write()
        importer._defineOutputs(**{name: stream})
        self.proj._storeProtocol(importer)
        stream.close()
        return Pointer(importer, extended=name)

    def _feed(self, items, close=False):
        from pwem.objects import SetOfParticles
        from pyworkflow.object import Set

        stream = SetOfParticles(filename=self.stream_path)
        stream.loadAllProperties()
        stream.enableAppend()
        for item in items:
            stream.append(item)
        if close:
            stream.setStreamState(Set.STREAM_CLOSED)
        stream.write()
        stream.close()

    def _output_size(self, prot):
        import os

        from pwem.objects import SetOfParticles

        path = prot._getPath("particles.sqlite")
        if not os.path.exists(path):
            return 0
        out = SetOfParticles(filename=path)
        size = out.getSize()
        out.close()
        return size

    def _align(self, label, **kwargs):
        from scipion_deepalign.protocols import DeepAlignProtAlign

        return self.newProtocol(DeepAlignProtAlign, objLabel=label, inputVolume=self.volume,
                                globalSearch=True, angularStepDeg=30.0, maxShiftPx=1.0,
                                useGpu=False, streamBatchSize=BATCH, streamingSleepOnWait=1,
                                **kwargs)

    def _wait_until_done(self, prot):
        def done():
            self.proj._updateProtocol(prot)
            return not prot.isActive()

        _wait_for("the end of the run", done)
        if not prot.isFinished():
            print(sh.run_log(prot))
        assert prot.isFinished()

    def test_three_batches_then_closed(self):
        from scipion_deepalign.convert import read_set_poses

        prot = self._align("streaming")
        prot.inputParticles.copy(self._open_set())
        self.proj.launchProtocol(prot, wait=False)
        sizes = []
        for items, close in ((self.items[BATCH:2 * BATCH], False),
                             (self.items[2 * BATCH:], True)):
            expected = len(sizes) * BATCH + BATCH
            _wait_for(f"{expected} output particles",
                      lambda e=expected: self._output_size(prot) >= e)
            sizes.append(self._output_size(prot))
            self._feed(items, close=close)

        self._wait_until_done(prot)
        sizes.append(self._output_size(prot))
        assert sizes == [3, 6, 9]
        out = prot.outputParticles
        assert out.isStreamClosed()
        ids, angles, shifts = read_set_poses(out)
        assert sorted(ids.tolist()) == sorted(p.getObjId() for p in self.items)
        assert "Streaming input: 3 batches processed." in prot.summary()

        closed = self._align("closed set", inputParticles=self.particles)
        self.launchProtocol(closed)
        ids_c, angles_c, shifts_c = read_set_poses(closed.outputParticles)
        order = np.argsort(ids)
        np.testing.assert_array_equal(ids[order], np.sort(ids_c))
        np.testing.assert_allclose(angles[order], angles_c[np.argsort(ids_c)], atol=1e-6)
        np.testing.assert_allclose(shifts[order], shifts_c[np.argsort(ids_c)], atol=1e-6)

    def test_stopped_run_continues_without_redoing_batches(self):
        import os

        prot = self._align("streaming, stopped")
        prot.inputParticles.copy(self._open_set("stoppedStream"))
        self.proj.launchProtocol(prot, wait=False)
        _wait_for("the first batch", lambda: self._output_size(prot) >= BATCH)
        first = prot._getExtraPath("stream", "batch_0001", "result.star")
        before = os.stat(first).st_mtime_ns
        self.proj.stopProtocol(prot)
        self._feed(self.items[BATCH:], close=True)
        self.proj.launchProtocol(prot, wait=True)  # continue (resume mode)
        self._wait_until_done(prot)
        assert os.stat(first).st_mtime_ns == before
        ids = [p.getObjId() for p in prot.outputParticles.iterItems()]
        assert sorted(ids) == sorted(p.getObjId() for p in self.items)
        assert "Streaming input: 3 batches processed." in prot.summary()
