# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""DeepAlignProtTrain / DeepAlignProtRefine: form checks and one end-to-end refine run.

Inputs are simulated (box 32, 4 A/px) and imported with pwem's own import protocols; the
end-to-end test checks the answer (model geometry, aligned poses vs truth).
"""
import os

import numpy as np
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.constants import NETWORK_KINDS
from scipion_deepalign.core.defaults import TRAINING_SOURCES
from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
BOX_PX = 32


def _errors_text(prot):
    return "\n".join(prot.validate())


class TestTrainValidate(BaseTest):
    """Each `_validate` rule of the training side, without running anything."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        data = sh.simulate_dataset(cls.getOutputPath("sim"), n=30, box_px=BOX_PX,
                                   pixel_size_a=PIXEL_SIZE_A, seed=1)
        cls.aligned = sh.import_particles(cls, data.sqlite_path, PIXEL_SIZE_A,
                                          label="aligned")
        sqlite = os.path.join(cls.getOutputPath("sim"), "no_poses.sqlite")
        sh.write_particles_sqlite(sqlite, data.stack_path, data.truth, with_poses=False)
        cls.unaligned = sh.import_particles(cls, sqlite, PIXEL_SIZE_A, label="no poses")
        cls.volume = sh.import_volume(cls, data.volume_path, PIXEL_SIZE_A)

    def _train(self, **kwargs):
        from scipion_deepalign.protocols import DeepAlignProtTrain

        options = dict(inputTrainingParticles=self.aligned, symmetryGroup="c1",
                       regionSpacingDeg=60.0, targetResolutionA=10.0,
                       trainingSource=TRAINING_SOURCES.index("particles"))
        options.update(kwargs)
        return self.newProtocol(DeepAlignProtTrain, **options)

    def test_valid_form_has_no_errors(self):
        assert self._train().validate() == []

    def test_training_from_projections_needs_the_volume_not_the_angles(self):
        projections = TRAINING_SOURCES.index("projections")
        ok = self._train(trainingSource=projections, inputTrainingParticles=self.unaligned,
                         inputVolume=self.volume)
        assert ok.validate() == []
        text = _errors_text(self._train(trainingSource=projections,
                                        inputTrainingParticles=self.unaligned))
        assert "Training from projections needs the reference volume." in text
        text = _errors_text(self._train(trainingSource=projections, inputVolume=self.volume,
                                        networkKind=NETWORK_KINDS.index("regional")))
        assert "trains the shared network" in text
        text = _errors_text(self._train(trainingSource=TRAINING_SOURCES.index("both"),
                                        inputTrainingParticles=self.unaligned,
                                        inputVolume=self.volume))
        assert "no 3D projection alignment" in text

    def test_volume_of_another_pixel_size_than_the_training_particles(self):
        other = sh.import_volume(self, self.volume.getFileName(), 2 * PIXEL_SIZE_A,
                                 label="coarse")
        text = _errors_text(self._train(trainingSource=TRAINING_SOURCES.index("projections"),
                                        inputTrainingParticles=self.unaligned,
                                        inputVolume=other))
        assert (f"The reference volume pixel size is {2 * PIXEL_SIZE_A:g} A but the training "
                f"particles pixel size is {PIXEL_SIZE_A:g} A.") in text

    def test_training_set_without_projection_alignment(self):
        text = _errors_text(self._train(inputTrainingParticles=self.unaligned))
        assert "no 3D projection alignment" in text

    def test_target_resolution_finer_than_nyquist(self):
        text = _errors_text(self._train(targetResolutionA=5.0))
        assert "Target resolution 5 A cannot be reached with 4 A pixels" in text

    @pytest.mark.filterwarnings("ignore")
    def test_spacing_outside_sane_range(self):
        for spacing in (2.0, 150.0):
            text = _errors_text(self._train(regionSpacingDeg=spacing))
            assert "Region spacing must be between 5 and 90 deg" in text, spacing

    def test_empty_training_set(self):
        from pwem.objects import SetOfParticles

        empty = SetOfParticles(filename=self.getOutputPath("empty.sqlite"))
        empty.setSamplingRate(PIXEL_SIZE_A)
        empty.setAlignmentProj()
        prot = self._train()
        prot.inputTrainingParticles.set(empty)
        assert "The training set is empty." in _errors_text(prot)

    def test_unknown_symmetry(self):
        text = _errors_text(self._train(symmetryGroup="x7"))
        assert "Unknown symmetry 'x7'" in text

    def test_epochs_at_least_one(self):
        assert "Max epochs must be at least 1." in _errors_text(self._train(numberOfEpochs=0))

    def test_few_particles_per_region_warn(self):
        # 30 particles for 12 regions: 2.5 per region, below the minimum of 10 (the wizard's
        # rule and words)
        regional = NETWORK_KINDS.index("regional")
        text = "\n".join(self._train(networkKind=regional).warnings())
        assert "gives 12 region(s)" in text and "about 2 per region" in text
        assert "fewer than the minimum of 10 per region" in text
        # the shared network skips no region, so it has nothing to warn about
        assert self._train(networkKind=NETWORK_KINDS.index("shared")).warnings() == []

    def test_a_network_trained_near_chance_is_a_warning(self):
        import json

        prot = self._train()
        prot._createFilenameTemplates()
        model_dir = prot._getFileName("model_dir")
        os.makedirs(model_dir, exist_ok=True)
        with open(os.path.join(model_dir, "config.json"), "w") as fh:
            json.dump({"n_regions": 12}, fh)
        with open(os.path.join(model_dir, "history_shared.json"), "w") as fh:
            json.dump({"region": "shared", "loss": [2.5, 2.4], "val_loss": [2.5, 2.45],
                       "val_accuracy": [0.08, 0.1]}, fh)
        try:
            text = "\n".join(prot.warnings())
            assert "near chance (0.083)" in text
            assert "near chance" in "\n".join(prot.summary())
        finally:  # unsaved protocols share their folder: leave nothing for the other tests
            import shutil
            shutil.rmtree(model_dir)

    def test_summary_reports_network_geometry_before_training(self):
        summary = "\n".join(self._train(targetResolutionA=16.0).summary())
        assert "Network input: 16 px at 8 A/px (12 regions)" in summary

    # ------------------------------------------------------------- refine
    def _refine(self, **kwargs):
        from scipion_deepalign.protocols import DeepAlignProtRefine

        options = dict(inputParticles=self.unaligned, inputVolume=self.volume,
                       inputTrainingParticles=self.aligned, symmetryGroup="c1",
                       regionSpacingDeg=60.0, targetResolutionA=10.0, topK=2, maxShiftPx=4.0,
                       trainingSource=TRAINING_SOURCES.index("particles"))
        options.update(kwargs)
        return self.newProtocol(DeepAlignProtRefine, **options)

    def test_refine_valid_form_has_no_errors(self):
        assert self._refine().validate() == []

    def test_refine_k_is_a_most_and_at_least_one(self):
        assert self._refine(topK=13).validate() == []  # more than the 12 regions: all kept
        text = _errors_text(self._refine(topK=0))
        assert "The number of regions kept per particle (k) must be at least 1." in text

    def test_refine_max_shift_larger_than_half_box(self):
        text = _errors_text(self._refine(maxShiftPx=20.0))
        assert "Max shift 20.0 px must be between 0 and half the box (16 px)" in text

    def test_refine_reused_model_of_other_symmetry(self):
        from scipion_deepalign.objects import DeepAlignModel

        model = DeepAlignModel("/nonexistent", symmetry="d2", spacingDeg=30.0,
                               numberOfRegions=13, particleBoxPx=BOX_PX,
                               particlePixelSizeA=PIXEL_SIZE_A)
        prot = self._refine(trainModel=False)
        prot.inputModel.set(model)
        assert "The model was trained for symmetry d2, not c1." in _errors_text(prot)

    def test_refine_from_projections_needs_no_training_particles(self):
        prot = self._refine(trainingSource=TRAINING_SOURCES.index("projections"))
        prot.inputTrainingParticles.set(None)
        assert prot.validate() == []
        prot = self._refine(trainingSource=TRAINING_SOURCES.index("particles"))
        prot.inputTrainingParticles.set(None)
        assert "Choose the training particles." in _errors_text(prot)

    def test_refine_without_model_nor_training(self):
        text = _errors_text(self._refine(trainModel=False))
        assert "Choose a trained model, or train a new one." in text


class TestRefine(BaseTest):
    """The one-form path on 200 simulated particles: trains, predicts, aligns."""

    N = 200

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("sim")
        cls.data = sh.simulate_dataset(folder, n=cls.N, box_px=BOX_PX, pixel_size_a=PIXEL_SIZE_A,
                                       snr=2.0, max_shift_px=1.5, seed=11)
        cls.aligned = sh.import_particles(cls, cls.data.sqlite_path, PIXEL_SIZE_A,
                                          label="pre-aligned")
        cls.volume = sh.import_volume(cls, cls.data.volume_path, PIXEL_SIZE_A)

    def test_refine_end_to_end(self):
        from scipion_deepalign.convert import read_set_poses
        from scipion_deepalign.core.io import read_regions_star
        from scipion_deepalign.core.regions import assign_regions
        from scipion_deepalign.core.symmetry import symmetric_direction_distance_deg
        from scipion_deepalign.protocols import DeepAlignProtRefine

        # regional networks, 12 regions in two steps that run side by side (threads = 3)
        prot = self.newProtocol(
            DeepAlignProtRefine, inputParticles=self.aligned, inputVolume=self.volume,
            inputTrainingParticles=self.aligned, symmetryGroup="c1", regionSpacingDeg=60.0,
            targetResolutionA=16.0, numberOfEpochs=2, batchSize=32, positivesPerRegion=128,
            regionsPerStep=6, networkKind=NETWORK_KINDS.index("regional"), topK=2,
            trainingSource=TRAINING_SOURCES.index("particles"), useProbabilityMass=False,
            angularStepDeg=8.0, maxShiftPx=3.0, useGpu=False,
            numberOfThreads=3)
        try:
            self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise
        model = prot.outputModel
        assert model.getNumberOfRegions() == 12 and model.getNetworkKind() == "regional"
        assert len([f for f in os.listdir(model.getModelDir()) if f.endswith(".keras")]) == 12
        out = prot.outputParticles
        assert out.getSize() == self.N and out.hasAlignmentProj()
        assert out.getSamplingRate() == PIXEL_SIZE_A
        ids, angles, shifts = read_set_poses(out)
        truth = self.data.truth.subset(ids - 1)
        centres, _, _ = read_regions_star(model.getRegionsFile())
        true_region, _ = assign_regions(truth.angles_deg, centres, "c1")
        top = np.array([[p._deepalign_region1.get(), p._deepalign_region2.get()]
                        for p in out.iterItems()])
        hit = np.any(top == (true_region + 1)[:, None], axis=1)
        assert hit.sum() >= 20, f"true region in the top 2 for {hit.sum()} particles only"
        error = symmetric_direction_distance_deg(angles, truth.angles_deg, "c1")
        assert np.median(error[hit]) < 8.0, np.median(error[hit])
        shift_error = np.linalg.norm(shifts - truth.shifts_px, axis=1)
        assert np.median(shift_error[hit]) < 1.5
        summary = "\n".join(prot.summary())
        assert "Networks trained: 12" in summary
        assert "Median change of projection direction from the input alignment" in summary

    def test_refine_from_projections_without_a_training_subset(self):
        """The default path: no pre-aligned particles, the network learns from the map."""
        from scipion_deepalign.convert import read_set_poses
        from scipion_deepalign.core.symmetry import symmetric_direction_distance_deg
        from scipion_deepalign.protocols import DeepAlignProtRefine

        prot = self.newProtocol(
            DeepAlignProtRefine, inputParticles=self.aligned, inputVolume=self.volume,
            symmetryGroup="c1", regionSpacingDeg=60.0, targetResolutionA=16.0,
            numberOfEpochs=4, imagesPerEpoch=1024, angularStepDeg=8.0, maxShiftPx=3.0,
            useGpu=False, numberOfThreads=1)
        try:
            self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise
        summary = "\n".join(prot.summary())
        assert "Trained from projections." in summary
        assert "Regions searched per particle:" in summary
        ids, angles, _ = read_set_poses(prot.outputParticles)
        truth = self.data.truth.subset(ids - 1)
        error = symmetric_direction_distance_deg(angles, truth.angles_deg, "c1")
        # a network that never saw a particle's pose still guides the search for most
        assert np.mean(error < 10.0) > 0.5, np.mean(error < 10.0)
