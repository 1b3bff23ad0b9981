"""DeepAlignProtPredict / DeepAlignProtAlign: form checks, and train -> predict -> align end to
end on simulated particles with known poses (the answer is checked against the truth)."""
import os

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

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

    def test_k_larger_than_number_of_regions(self):
        text = _errors_text(self._predict(_model(numberOfRegions=4), topK=5))
        assert "k = 5 regions per particle is more than the 4 regions of the model." in text
        text = _errors_text(self._align(_model(numberOfRegions=4), topK=5))
        assert "more than the 4 regions" in text

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

    def test_max_shift_larger_than_half_box(self):
        text = _errors_text(self._align(_model(), maxShiftPx=17.0))
        assert "Max shift 17.0 px must be between 0 and half the box (16 px)." in text

    def test_unknown_symmetry(self):
        assert "Unknown symmetry 'q3'" in _errors_text(self._align(_model(), symmetryGroup="q3"))

    def test_empty_particles(self):
        from pwem.objects import SetOfParticles

        empty = SetOfParticles(filename=self.getOutputPath("empty.sqlite"))
        empty.setSamplingRate(PIXEL_SIZE_A)
        prot = self._predict()
        prot.inputParticles.set(empty)
        assert "The input set is empty." in _errors_text(prot)
