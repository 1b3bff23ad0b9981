"""Judging protocols end to end on simulated particles with known poses.

* reconstruction from the true poses: FSC 0.143 near Nyquist and a map correlating with the
  phantom;
* consensus between a set and a copy with 30 % scrambled poses: unchanged particles kept,
  scrambled ones dropped;
* ``_validate`` messages for bad inputs.
"""
import os

import numpy as np
import pytest

pytest.importorskip("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from scipion_deepalign.protocols.protocol_consensus import ATTR_ANGLE, DeepAlignProtConsensus  # noqa: E402
from scipion_deepalign.protocols.protocol_reconstruct import DeepAlignProtReconstruct  # noqa: E402

N_PARTICLES = 160
BOX_PX = 32
PIXEL_SIZE_A = 4.0
SCRAMBLED_FRACTION = 0.3


def _write_sqlite(path, stack_path, *, pixel_size_a, angles_deg=None, ids=None):
    """Small SetOfParticles sqlite of the images of ``stack_path`` with chosen item ids."""
    from pwem.objects import Acquisition, Particle, SetOfParticles

    from scipion_deepalign.convert import set_particle_pose

    if os.path.exists(path):
        os.remove(path)
    out = SetOfParticles(filename=path)
    out.setSamplingRate(pixel_size_a)
    acquisition = Acquisition(voltage=300.0, sphericalAberration=2.7, amplitudeContrast=0.1,
                              magnification=50000)
    out.setAcquisition(acquisition)
    if angles_deg is not None:
        out.setAlignmentProj()
    for i, item_id in enumerate(ids):
        item = Particle(location=(i + 1, os.path.abspath(stack_path)))
        item.setObjId(int(item_id))
        item.setSamplingRate(pixel_size_a)
        item.setAcquisition(acquisition.clone())
        if angles_deg is not None:
            set_particle_pose(item, angles_deg[i], np.zeros(2))
        out.append(item)
    out.write()
    out.close()
    return path


def _log(protocol):
    from scipion_deepalign.tests.scipion_helpers import run_log
    return run_log(protocol)


class TestJudgingProtocols(BaseTest):
    """One project: imports once, then each protocol on those inputs."""

    @classmethod
    def setUpClass(cls):
        from scipion_deepalign.core.geometry import random_angles_deg
        from scipion_deepalign.tests.scipion_helpers import (
            import_particles,
            simulate_dataset,
            write_particles_sqlite,
        )

        setupTestProject(cls)
        work = cls.proj.getTmpPath("judging_inputs")
        os.makedirs(work, exist_ok=True)
        cls.data = simulate_dataset(work, n=N_PARTICLES, box_px=BOX_PX,
                                    pixel_size_a=PIXEL_SIZE_A, snr=100.0, ctf=False, seed=3)
        cls.aligned = import_particles(cls, cls.data.sqlite_path, PIXEL_SIZE_A,
                                       label="true poses")

        ctf_dir = os.path.join(work, "ctf")
        cls.ctf_data = simulate_dataset(ctf_dir, n=N_PARTICLES, box_px=BOX_PX,
                                        pixel_size_a=PIXEL_SIZE_A, snr=100.0, ctf=True, seed=4)
        cls.ctf_set = import_particles(cls, cls.ctf_data.sqlite_path, PIXEL_SIZE_A,
                                       label="with CTF")

        # Copy with 30 % of the poses replaced by random ones (far from the truth).
        rng = np.random.default_rng(7)
        truth = cls.data.truth
        scrambled = rng.permutation(N_PARTICLES)[:int(SCRAMBLED_FRACTION * N_PARTICLES)]
        angles = truth.angles_deg.copy()
        angles[scrambled] = random_angles_deg(len(scrambled), rng)
        cls.scrambled_ids = set((scrambled + 1).tolist())  # sqlite ids are 1-based rows
        copy = truth.subset(slice(None))
        copy.angles_deg = angles
        sqlite = write_particles_sqlite(os.path.join(work, "scrambled.sqlite"),
                                        cls.data.stack_path, copy)
        cls.scrambled = import_particles(cls, sqlite, PIXEL_SIZE_A, label="30% scrambled")

        # Small sets for _validate: no alignment, other pixel size, disjoint ids.
        stack = cls.data.stack_path
        ids = np.arange(1, 6)
        cls.unaligned = import_particles(
            cls, _write_sqlite(os.path.join(work, "unaligned.sqlite"), stack,
                               pixel_size_a=PIXEL_SIZE_A, ids=ids), PIXEL_SIZE_A,
            label="no alignment")
        cls.other_pixel = import_particles(
            cls, _write_sqlite(os.path.join(work, "pixel.sqlite"), stack,
                               pixel_size_a=2 * PIXEL_SIZE_A, ids=ids,
                               angles_deg=truth.angles_deg[:5]), 2 * PIXEL_SIZE_A,
            label="other pixel size")
        cls.five = import_particles(
            cls, _write_sqlite(os.path.join(work, "five.sqlite"), stack,
                               pixel_size_a=PIXEL_SIZE_A, ids=ids,
                               angles_deg=truth.angles_deg[:5]), PIXEL_SIZE_A,
            label="five particles")
        cls.disjoint = import_particles(
            cls, _write_sqlite(os.path.join(work, "disjoint.sqlite"), stack,
                               pixel_size_a=PIXEL_SIZE_A, ids=ids + 10000,
                               angles_deg=truth.angles_deg[:5]), PIXEL_SIZE_A,
            label="disjoint ids")

    # ----------------------------------------------------------------- _validate
    def _consensus(self, *sets, **kwargs):
        return self.newProtocol(DeepAlignProtConsensus, inputSets=list(sets), **kwargs)

    def test_validate_consensus_without_alignment(self):
        errors = self._consensus(self.aligned, self.unaligned).validate()
        assert any("Input 2" in e and "no projection (3D) alignment" in e for e in errors), errors

    def test_validate_consensus_no_common_particles(self):
        errors = self._consensus(self.aligned, self.disjoint).validate()
        assert any("no particles in common" in e for e in errors), errors

    def test_validate_consensus_pixel_size_mismatch(self):
        errors = self._consensus(self.aligned, self.other_pixel).validate()
        assert any("different pixel sizes" in e and "8" in e for e in errors), errors

    def test_validate_consensus_bad_options(self):
        errors = self._consensus(self.aligned, self.scrambled, keepPosesFrom=3,
                                 symmetryGroup="x7").validate()
        assert any("Poses kept from set number" in e for e in errors), errors
        assert any(e.startswith("Unknown symmetry 'x7'") for e in errors), errors

    def test_validate_consensus_good_inputs(self):
        prot = self._consensus(self.aligned, self.scrambled)
        assert prot.validate() == [] and prot.warnings() == []

    def test_warning_consensus_partial_overlap(self):
        short = self.newProtocol(DeepAlignProtConsensus, inputSets=[self.aligned, self.five])
        warnings = short.warnings()
        assert len(warnings) == 1 and "Only 5 particles" in warnings[0], warnings

    def test_validate_reconstruct_without_alignment(self):
        prot = self.newProtocol(DeepAlignProtReconstruct, inputParticles=self.unaligned)
        errors = prot.validate()
        assert any("no projection (3D) alignment" in e for e in errors), errors
        prot = self.newProtocol(DeepAlignProtReconstruct, inputParticles=self.aligned)
        assert prot.validate() == []
        assert "without CTF correction" in prot.warnings()[0]  # simulated without CTF
        prot = self.newProtocol(DeepAlignProtReconstruct, inputParticles=self.aligned,
                                symmetryGroup="x7")
        assert any(e.startswith("Unknown symmetry 'x7'") for e in prot.validate())

    # ----------------------------------------------------------------- runs
    def test_reconstruct_true_poses(self):
        from scipion_deepalign.core.io import read_mrc

        prot = self.newProtocol(DeepAlignProtReconstruct, inputParticles=self.aligned)
        self.launchProtocol(prot)
        assert prot.isFinished(), _log(prot)
        volume, fsc = prot.outputVolume, prot.outputFSC
        assert volume.getSamplingRate() == pytest.approx(PIXEL_SIZE_A)
        half_maps = volume.getHalfMaps().split(",")
        assert len(half_maps) == 2 and all(os.path.exists(f) for f in half_maps)

        freq, values = (np.array(v, dtype=float) for v in fsc.getData())
        assert len(freq) == len(values) >= BOX_PX // 2
        resolution = prot.getResolution0143()
        # Noise-free projections at exact poses: the halves agree almost up to Nyquist (8 A).
        assert 2 * PIXEL_SIZE_A <= resolution < 3.0 * PIXEL_SIZE_A, resolution
        assert float(fsc.calculateResolution(0.143)) == pytest.approx(resolution, rel=0.1)
        assert any("Resolution (FSC 0.143)" in line for line in prot.summary())
        assert "deepalign reconstruct" in _log(prot)  # run as a subprocess

        data, pixel_size_a = read_mrc(volume.getFileName())
        assert pixel_size_a == pytest.approx(PIXEL_SIZE_A)
        corr = np.corrcoef(data.ravel(), self.data.volume.ravel())[0, 1]
        assert corr > 0.95, corr  # 0.99 measured

    def test_consensus_drops_scrambled(self):
        prot = self._consensus(self.aligned, self.scrambled, maxAngleDeg=10.0)
        self.launchProtocol(prot)
        assert prot.isFinished(), _log(prot)
        kept = {p.getObjId(): getattr(p, ATTR_ANGLE).get() for p in prot.outputParticles}
        dropped = {p.getObjId() for p in prot.outputParticlesDiscarded}
        assert len(kept) + len(dropped) == N_PARTICLES
        unchanged = set(range(1, N_PARTICLES + 1)) - self.scrambled_ids
        assert len(unchanged & set(kept)) >= 0.95 * len(unchanged)
        assert len(self.scrambled_ids & dropped) >= 0.95 * len(self.scrambled_ids)
        assert max(kept[i] for i in unchanged & set(kept)) < 1e-3
        assert prot.outputParticles.hasAlignmentProj()

        stats = prot.getStats()
        assert stats["n_common"] == N_PARTICLES and stats["n_agree"] == len(kept)
        summary = "\n".join(prot.summary())
        assert "5 deg" in summary and "15 deg" in summary and str(len(kept)) in summary
        # the command's one CSV schema, read back with ids and the same agree mask
        with open(prot._getExtraPath("consensus", "differences.csv")) as fh:
            rows = fh.read().strip().splitlines()
        assert len(rows) == N_PARTICLES + 1 and rows[0].startswith("image_name,agree")
        data = prot.getDifferences()
        assert sorted(data["ids"].tolist()) == list(range(1, N_PARTICLES + 1))
        assert data["agree"].sum() == len(kept)
        assert "deepalign consensus" in _log(prot)  # run as a subprocess

    def test_reconstruct_corrects_ctf(self):
        from scipion_deepalign.core.io import read_mrc

        corr = {}
        for correct in (True, False):
            prot = self.newProtocol(DeepAlignProtReconstruct, inputParticles=self.ctf_set,
                                    correctCtf=correct, halfSplit=1)
            self.launchProtocol(prot)
            assert prot.isFinished(), _log(prot)
            data, _ = read_mrc(prot.outputVolume.getFileName())
            corr[correct] = np.corrcoef(data.ravel(), self.ctf_data.volume.ravel())[0, 1]
        # measured 0.92 corrected, 0.70 uncorrected
        assert corr[True] > 0.85 and corr[True] > corr[False] + 0.1, corr
