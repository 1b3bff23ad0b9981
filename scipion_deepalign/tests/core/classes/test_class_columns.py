"""rlnClassNumber: 1-based in RELION STAR files, 0-based in the core, round-tripped through the
particle STAR writer and reader."""
import numpy as np
import pytest

from scipion_deepalign.core.io import columns, read_particles_star, write_particles
from scipion_deepalign.core.simulate import make_phantom, simulate_particles


def test_class_number_round_trips_through_star(tmp_path):
    images, particles = simulate_particles(make_phantom(16), 5, pixel_size_a=3.0, snr=1.0,
                                           seed=0)
    classes = np.array([0, 2, 1, 1, 0])
    columns.set_class_columns(particles.extra, classes, [0.9, 0.6, 0.7, 1.0, 0.55])
    write_particles(tmp_path / "p.mrcs", tmp_path / "p.star", images, particles)
    text = (tmp_path / "p.star").read_text()
    assert "_rlnClassNumber" in text and f"_{columns.CLASS_PROB_COLUMN}" in text
    back = read_particles_star(tmp_path / "p.star")
    np.testing.assert_array_equal(np.asarray(back.extra[columns.CLASS_COLUMN], float),
                                  classes + 1)  # RELION's convention in the file
    np.testing.assert_array_equal(columns.class_numbers(back.extra), classes)
    np.testing.assert_allclose(np.asarray(back.extra[columns.CLASS_PROB_COLUMN], float),
                               [0.9, 0.6, 0.7, 1.0, 0.55])


def test_invalid_class_numbers():
    with pytest.raises(ValueError, match="no rlnClassNumber column"):
        columns.class_numbers({})
    with pytest.raises(ValueError, match="integers from 1"):
        columns.class_numbers({columns.CLASS_COLUMN: np.array([1, 0])})
    with pytest.raises(ValueError, match="integers from 1"):
        columns.class_numbers({columns.CLASS_COLUMN: np.array([1.5])})
