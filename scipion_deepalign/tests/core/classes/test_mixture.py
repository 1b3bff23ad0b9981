"""Simulated mixtures: classes in their proportions, each image made from its own map."""
import numpy as np
import pytest

from scipion_deepalign.core.classes import simulate_mixture
from scipion_deepalign.core.simulate import clean_particle_images
from scipion_deepalign.tests.helpers import phantom_pair


def test_noiseless_images_are_their_class_maps_projections():
    a, b = phantom_pair()
    images, particles, classes = simulate_mixture([a, b], 12, pixel_size_a=4.0, snr=np.inf,
                                                  max_shift_px=1.0, seed=1)
    assert set(classes.tolist()) == {0, 1}
    for c, volume in enumerate((a, b)):
        rows = np.flatnonzero(classes == c)
        np.testing.assert_allclose(images[rows],
                                   clean_particle_images(volume, particles.subset(rows)),
                                   atol=1e-5)


def test_fractions_and_one_noise_level():
    a, b = phantom_pair()
    images, _, classes = simulate_mixture([a, b], 400, pixel_size_a=4.0, fractions=[0.8, 0.2],
                                          snr=0.01, ctf=False, seed=2)
    assert 0.72 < np.mean(classes == 0) < 0.88
    corner = images[:, :4, :4].reshape(len(images), -1)  # background: noise only
    assert corner[classes == 0].std() == pytest.approx(corner[classes == 1].std(), rel=0.1)


def test_invalid_fractions():
    a, b = phantom_pair()
    with pytest.raises(ValueError, match="fractions must be 2 non-negative numbers"):
        simulate_mixture([a, b], 4, pixel_size_a=4.0, fractions=[0.5, 0.6])
