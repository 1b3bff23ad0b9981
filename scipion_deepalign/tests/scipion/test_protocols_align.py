# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""DeepAlignProtPredict / DeepAlignProtAlign: form checks, and train -> predict -> align end to
end on simulated particles with known poses (the answer is checked against the truth)."""
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

import os

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.core.defaults import TRAINING_SOURCES
from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
BOX_PX = 32


def _errors_text(prot):
    return "\n".join(prot.validate())


def _model(**kwargs):
    from scipion_deepalign.objects import DeepAlignModel

    options = dict(symmetry="c1", spacingDeg=60.0, numberOfRegions=12, particleBoxPx=BOX_PX,
                   particlePixelSizeA=PIXEL_SIZE_A, networkBoxPx=16, networkPixelSizeA=8.0)
    options.update(kwargs)
    return DeepAlignModel("/nonexistent/model", **options)


class TestAlignValidate(BaseTest):
    """Each `_validate` rule of prediction and alignment, without running anything."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        data = sh.simulate_dataset(cls.getOutputPath("sim"), n=20, box_px=BOX_PX,
                                   pixel_size_a=PIXEL_SIZE_A, seed=2, with_poses=False)
        cls.particles = sh.import_particles(cls, data.sqlite_path, PIXEL_SIZE_A)
        cls.volume = sh.import_volume(cls, data.volume_path, PIXEL_SIZE_A)
        small = os.path.join(cls.getOutputPath("sim"), "small.mrc")
        import mrcfile

        with mrcfile.new(small) as mrc:
            mrc.set_data(np.zeros((24, 24, 24), np.float32))
        cls.other_volume = sh.import_volume(cls, small, 5.0, label="24 px at 5 A")

    def _predict(self, model=None, **kwargs):
        from scipion_deepalign.protocols import DeepAlignProtPredict

        prot = self.newProtocol(DeepAlignProtPredict, inputParticles=self.particles, **kwargs)
        prot.inputModel.set(model or _model())
        return prot

    def _align(self, model=None, **kwargs):
        from scipion_deepalign.protocols import DeepAlignProtAlign

        options = dict(inputParticles=self.particles, inputVolume=self.volume,
                       symmetryGroup="c1", maxShiftPx=4.0)
        options.update(kwargs)
        prot = self.newProtocol(DeepAlignProtAlign, **options)
        if model is not None:
            prot.inputModel.set(model)
        return prot

    def test_valid_forms_have_no_errors(self):
        assert self._predict().validate() == []
        assert self._align(_model()).validate() == []

    def test_k_is_a_most_and_at_least_one(self):
        # the default k (16) suits a model of 4 regions: a most, all 4 kept
        assert self._predict(_model(numberOfRegions=4), topK=5).validate() == []
        assert self._align(_model(numberOfRegions=4), topK=5).validate() == []
        text = _errors_text(self._predict(_model(numberOfRegions=4), topK=0))
        assert "The number of regions kept per particle (k) must be at least 1." in text

    def test_model_of_another_field_of_view(self):
        text = _errors_text(self._predict(_model(particleBoxPx=64)))
        assert "do not have the field of view the model was trained on (64 px at 4 A)" in text

    def test_model_trained_for_other_symmetry(self):
        text = _errors_text(self._align(_model(symmetry="d2", numberOfRegions=4)))
        assert "The model was trained for symmetry d2, not c1." in text

    def test_volume_and_particles_differ(self):
        text = _errors_text(self._align(_model(), inputVolume=self.other_volume))
        assert "The reference volume box is 24 px but the particles box is 32 px." in text
        assert ("The reference volume pixel size is 5 A but the particles pixel size is 4 A."
                in text)

    def test_no_region_hints_and_no_model(self):
        text = _errors_text(self._align())
        assert "carry no predicted regions" in text and "no trained model" in text

    def test_region_hints_of_a_missing_model(self):
        from pwem.objects import Integer, SetOfParticles, String

        hinted = SetOfParticles(filename=self.getOutputPath("hinted.sqlite"))
        hinted.copyInfo(self.particles)
        for p in self.particles.iterItems():
            p = p.clone()
            p._deepalign_region1 = Integer(1)
            hinted.append(p)
        hinted._deepalignModelDir = String("/nonexistent/model")
        prot = self._align()
        prot.inputParticles.set(hinted)
        text = _errors_text(prot)
        assert "The model of the particles' predicted regions is not readable" in text
        assert "carry no predicted regions" not in text

    def test_global_search_needs_no_hints_nor_model(self):
        assert self._align(globalSearch=True).validate() == []

    def test_search_resolution_finer_than_nyquist(self):
        text = _errors_text(self._align(_model(), alignResolutionA=6.0))
        assert "Search resolution 6 A is finer than the Nyquist of the particles (8 A)." in text

    def test_max_shift_larger_than_half_box(self):
        text = _errors_text(self._align(_model(), maxShiftPx=17.0))
        assert "Max shift 17.0 px must be between 0 and half the box (16 px)." in text

    def test_unknown_symmetry(self):
        assert "Unknown symmetry 'q3'" in _errors_text(self._align(_model(), symmetryGroup="q3"))

    def test_particles_without_ctf_warn(self):
        from pwem.objects import SetOfParticles

        no_ctf = SetOfParticles(filename=self.getOutputPath("no_ctf.sqlite"))
        no_ctf.setSamplingRate(PIXEL_SIZE_A)
        prot = self._align(globalSearch=True)
        prot.inputParticles.set(no_ctf)
        assert any("no CTF" in w for w in prot.warnings())
        assert not any("no CTF" in w for w in self._align(globalSearch=True).warnings())

    def test_automatic_step_warns_when_the_search_is_large(self):
        # 32 px, global, no refinement: the automatic step (4 deg) means about 240,000
        # references; with the refinement (default) the automatic step is 8 deg (about 30,000)
        warned = [any("automatic angular step" in w for w in self._align(**kw).warnings())
                  for kw in (dict(globalSearch=True, localRefinement=False),
                             dict(globalSearch=True, angularStepDeg=10.0,
                                  localRefinement=False),
                             dict(globalSearch=True))]
        assert warned == [True, False, False]

    def test_phase_flipped_particles_use_flipped_mode(self):
        from pwem.objects import SetOfParticles

        flipped = SetOfParticles(filename=self.getOutputPath("flipped.sqlite"))
        flipped.setSamplingRate(PIXEL_SIZE_A)
        flipped.setIsPhaseFlipped(True)
        prot = self._align(globalSearch=True)
        assert prot._ctfMode() == "apply"
        prot.inputParticles.set(flipped)
        assert prot._ctfMode() == "flipped"

    def test_cites_deepalign(self):
        assert "JimenezMoreno2021" in self._align()._citations()

    def test_empty_particles(self):
        from pwem.objects import SetOfParticles

        empty = SetOfParticles(filename=self.getOutputPath("empty.sqlite"))
        empty.setSamplingRate(PIXEL_SIZE_A)
        prot = self._predict()
        prot.inputParticles.set(empty)
        assert "The input set is empty." in _errors_text(prot)


class TestTrainPredictAlign(BaseTest):
    """Train -> predict -> align on 300 simulated particles (12 regions, box 32 at 4 A)."""

    N_TRAIN = 240
    N_ALL = 300

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("sim")
        cls.data = sh.simulate_dataset(folder, n=cls.N_ALL, box_px=BOX_PX,
                                       pixel_size_a=PIXEL_SIZE_A, snr=1.0, max_shift_px=2.0,
                                       seed=5, with_poses=False)
        train_sqlite = os.path.join(folder, "train.sqlite")
        sh.write_particles_sqlite(train_sqlite, cls.data.stack_path,
                                  cls.data.truth.subset(np.arange(cls.N_TRAIN)))
        cls.train_set = sh.import_particles(cls, train_sqlite, PIXEL_SIZE_A, label="train")
        cls.all_set = sh.import_particles(cls, cls.data.sqlite_path, PIXEL_SIZE_A, label="all")
        cls.volume = sh.import_volume(cls, cls.data.volume_path, PIXEL_SIZE_A)

    def _launch(self, prot):
        try:
            return self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise

    def test_train_predict_align(self):
        from scipion_deepalign.convert import read_set_poses
        from scipion_deepalign.core.io import read_regions_star
        from scipion_deepalign.core.regions import assign_regions
        from scipion_deepalign.core.symmetry import symmetric_direction_distance_deg
        from scipion_deepalign.protocols import (
            DeepAlignProtAlign,
            DeepAlignProtPredict,
            DeepAlignProtTrain,
        )

        truth = self.data.truth
        # --- train the shared-trunk network (one step: the fastest kind to test)
        train = self.newProtocol(
            DeepAlignProtTrain, inputTrainingParticles=self.train_set, symmetryGroup="c1",
            regionSpacingDeg=60.0, targetResolutionA=16.0, numberOfEpochs=3, batchSize=32,
            imagesPerEpoch=2048, networkKind=1, useGpu=False,
            trainingSource=TRAINING_SOURCES.index("particles"))
        self._launch(train)
        model = train.outputModel
        assert model.getNumberOfRegions() == 12 and model.getSymmetry() == "c1"
        assert model.getNetworkKind() == "shared"
        assert (model.getNetworkBoxPx(), model.getNetworkPixelSizeA()) == (16, 8.0)
        assert "shared.keras" in os.listdir(model.getModelDir())
        assert "Validation accuracy" in "\n".join(train.summary())

        # --- predict: top-2 regions of every particle, exactly what the core predicts
        predict = self.newProtocol(DeepAlignProtPredict, inputParticles=self.all_set,
                                   inputModel=model, topK=2, useGpu=False)
        self._launch(predict)
        predicted = predict.outputParticles
        assert predicted.getSize() == self.N_ALL
        top = np.array([[p._deepalign_region1.get(), p._deepalign_region2.get()]
                        for p in predicted.iterItems()])
        probs = np.array([[p._deepalign_regionProb1.get(), p._deepalign_regionProb2.get()]
                          for p in predicted.iterItems()])
        from scipion_deepalign.core.cnn.predict import predict_regions

        core_regions, core_probs = predict_regions(self.data.images, model.getModelDir(),
                                                   top_k=2)
        np.testing.assert_array_equal(top, core_regions + 1)  # Scipion attributes are 1-based
        np.testing.assert_allclose(probs, core_probs, atol=1e-4)
        assert "300 particles: top region probability mean" in "\n".join(predict.summary())
        centres, _, _ = read_regions_star(model.getRegionsFile())
        true_region, _ = assign_regions(truth.angles_deg, centres, "c1")
        hit = np.any(top == (true_region + 1)[:, None], axis=1)
        assert hit.sum() >= 30, f"true region in the top 2 for {hit.sum()} particles only"

        # --- align inside the predicted regions
        align = self.newProtocol(DeepAlignProtAlign, inputParticles=predicted,
                                 inputVolume=self.volume, symmetryGroup="c1",
                                 angularStepDeg=8.0, maxShiftPx=3.0, useGpu=False)
        self._launch(align)
        aligned = align.outputParticles
        assert aligned.getSize() == self.N_ALL
        assert aligned.hasAlignmentProj()
        assert aligned.getSamplingRate() == PIXEL_SIZE_A
        ids, angles, shifts = read_set_poses(aligned)
        rows = ids - 1  # imported in stack order
        error = symmetric_direction_distance_deg(angles, truth.angles_deg[rows], "c1")
        hit_rows = hit[rows]
        # particles whose true region was predicted are aligned close to the truth (the
        # others depend on the CNN's accuracy, tested with the core)
        assert np.median(error[hit_rows]) < 8.0, np.median(error[hit_rows])
        shift_error = np.linalg.norm(shifts - truth.shifts_px[rows], axis=1)
        assert np.median(shift_error[hit_rows]) < 1.5
        scores = np.array([p._deepalign_score.get() for p in aligned.iterItems()])
        assert np.all(np.isfinite(scores))
        assert "Aligned 300 of 300 particles" in "\n".join(align.summary())

        # --- the same alignment with the regions predicted on the fly from the model
        on_the_fly = self.newProtocol(DeepAlignProtAlign, inputParticles=self.all_set,
                                      inputModel=model, topK=2, inputVolume=self.volume,
                                      symmetryGroup="c1", angularStepDeg=8.0, maxShiftPx=3.0,
                                      useGpu=False)
        self._launch(on_the_fly)
        ids2, angles2, shifts2 = read_set_poses(on_the_fly.outputParticles)
        np.testing.assert_array_equal(ids2, ids)
        np.testing.assert_allclose(shifts2, shifts, atol=1e-4)
        assert symmetric_direction_distance_deg(angles2, angles, "c1").max() < 1e-3
