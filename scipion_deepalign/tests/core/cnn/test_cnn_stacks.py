"""Training and prediction read a stack on demand a chunk at a time (issue 11: memory does
not grow with the number of particles) and give what they give on the same images in memory.
"""
import numpy as np
import pytest

pytest.importorskip("keras")

from scipion_deepalign.core.cnn import TrainConfig, predict_probabilities, train_regions  # noqa: E402
from scipion_deepalign.core.cnn.data import preprocess_images  # noqa: E402
from scipion_deepalign.core.io import images as images_module  # noqa: E402
from scipion_deepalign.core.simulate import make_phantom, simulate_particles  # noqa: E402

SYM, SPACING, BOX = "d2", 90.0, 32


class RecordingStack:
    """Images read on demand, without a ``shape``: remembers the largest read."""

    def __init__(self, images):
        self._images, self.largest = images, 0

    def __len__(self):
        return len(self._images)

    def __getitem__(self, index):
        out = np.array(self._images[index])
        self.largest = max(self.largest, len(out))
        return out


@pytest.fixture(scope="module")
def particles():
    volume = make_phantom(BOX, symmetry=SYM, seed=0)
    return simulate_particles(volume, 120, pixel_size_a=4.0, snr=1.0, ctf=True,
                              max_shift_px=1.5, seed=3)


def test_preprocessing_in_chunks_equals_all_at_once(particles):
    images, parts = particles
    whole = preprocess_images(images, input_box_px=24, shifts_px=parts.shifts_px,
                              chunk=len(images))
    stack = RecordingStack(images)
    chunked = preprocess_images(stack, input_box_px=24, shifts_px=parts.shifts_px, chunk=7)
    assert stack.largest == 7
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    assert chunked.shape == (120, 24, 24) and chunked.dtype == np.float32


def test_training_and_prediction_read_a_chunk_at_a_time(particles, tmp_path, monkeypatch):
    images, parts = particles
    monkeypatch.setattr(images_module, "READ_CHUNK_BYTES", 10 * 4 * BOX * BOX)  # 10 images
    config = TrainConfig(pixel_size_a=4.0, target_box_px=24, epochs=1, batch_size=32,
                         seed=0, network="shared", training_source="particles",
                         images_per_epoch=256)
    stack = RecordingStack(images)
    report = train_regions(stack, parts.angles_deg, out_dir=tmp_path, symmetry=SYM,
                           spacing_deg=SPACING, config=config, shifts_px=parts.shifts_px)
    assert report.trained == [1, 2, 3, 4]
    assert 1 <= stack.largest <= 10, stack.largest  # never the whole training set
    stack = RecordingStack(images)
    lazy = predict_probabilities(stack, tmp_path, chunk_size=16)
    assert stack.largest == 16
    np.testing.assert_allclose(lazy, predict_probabilities(images, tmp_path), atol=1e-5)
