"""Training from projections of the reference map, softened labels, the near-chance warning."""
import numpy as np
import pytest

from scipion_deepalign.core.cnn.config import TrainConfig
from scipion_deepalign.core.cnn.data import region_targets
from scipion_deepalign.core.cnn.history import near_chance_warnings
from scipion_deepalign.core.cnn.model_folder import SHARED_MODEL, read_model_config
from scipion_deepalign.core.cnn.synthetic import ProjectionSource, estimate_noise_model
from scipion_deepalign.core.regions import region_centres_deg, region_distances_deg
from scipion_deepalign.core.simulate import make_phantom, simulate_particles

BOX, PIXEL = 32, 4.0


@pytest.fixture(scope="module")
def data():
    volume = make_phantom(BOX, seed=2)
    images, parts = simulate_particles(volume, 400, pixel_size_a=PIXEL, snr=1.0,
                                       max_shift_px=1.0, seed=5)
    return volume, images, parts


def test_noise_model_measures_the_simulated_snr():
    volume = make_phantom(BOX, seed=1)
    for snr in (0.1, 1.0):
        images, _ = simulate_particles(volume, 300, pixel_size_a=PIXEL, snr=snr, ctf=False,
                                       seed=int(10 * snr))
        from scipion_deepalign.core.simulate import signal_mask_radius_px
        model = estimate_noise_model(images, mask_radius_px=signal_mask_radius_px(volume))
        assert model.snr == pytest.approx(snr, rel=0.3)
        # white noise: flat spectrum (away from DC)
        assert model.psd[1:].std() / model.psd[1:].mean() < 0.2


def test_projection_source_matches_particle_statistics(data):
    volume, images, parts = data
    from scipion_deepalign.core.simulate import signal_mask_radius_px
    radius = signal_mask_radius_px(volume)
    noise = estimate_noise_model(images, mask_radius_px=radius)
    source = ProjectionSource(volume, input_box_px=BOX, input_pixel_size_a=PIXEL, noise=noise,
                              ctf=parts.ctf, max_shift_px=1.0)
    made, angles = source.draw(np.random.default_rng(1), 300)
    assert made.shape == (300, BOX, BOX) and angles.shape == (300, 3)
    again = estimate_noise_model(made, mask_radius_px=radius)
    assert again.snr == pytest.approx(noise.snr, rel=0.25)
    assert again.noise_variance == pytest.approx(noise.noise_variance, rel=0.15)


def test_soft_labels_sum_to_one_and_peak_at_the_nearest_centre():
    centres = region_centres_deg(30.0, "c1")
    angles = np.random.default_rng(3).uniform([0, 0, 0], [360, 180, 360], (50, 3))
    nearest = np.argmin(region_distances_deg(angles, centres, "c1"), axis=1)
    hard = region_targets(angles, centres, "c1")
    soft = region_targets(angles, centres, "c1", label_sigma_deg=12.0)
    assert np.array_equal(hard.argmax(axis=1), nearest) and np.all(hard.sum(axis=1) == 1)
    assert np.allclose(soft.sum(axis=1), 1.0) and np.array_equal(soft.argmax(axis=1), nearest)
    assert np.all(soft.max(axis=1) < 1.0)  # softened towards the neighbours


def test_a_model_trained_only_from_projections_beats_chance(data, tmp_path):
    from scipion_deepalign.core.cnn import predict_probabilities, train_regions

    volume, images, parts = data
    spacing = 60.0
    config = TrainConfig(pixel_size_a=PIXEL, target_box_px=16, epochs=10, batch_size=64,
                         images_per_epoch=2048, seed=0, training_source="projections")
    report = train_regions(images, None, out_dir=tmp_path, symmetry="c1", spacing_deg=spacing,
                           config=config, reference=volume, ctf=parts.ctf)
    centres = region_centres_deg(spacing, "c1")
    chance = 1.0 / len(centres)
    probs = predict_probabilities(images, tmp_path)
    truth = np.argmin(region_distances_deg(parts.angles_deg, centres, "c1"), axis=1)
    accuracy = np.mean(probs.argmax(axis=1) == truth)
    assert accuracy > 3 * chance, (accuracy, chance)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)  # softmax head
    history = report.histories["shared"]
    assert history["training_source"] == "projections" and history["noise_snr"] > 0
    assert report.warnings == []
    # the default trunk is the polar one, and the model folder says so
    import keras

    assert read_model_config(tmp_path)["config"]["trunk"] == "polar"
    assert any(layer.name == "polar_resampling"
               for layer in keras.models.load_model(tmp_path / SHARED_MODEL).layers)


def test_trunk_choices():
    assert TrainConfig().trunk == "polar"
    assert TrainConfig(trunk="cartesian").trunk == "cartesian"
    # the paper's per-region networks keep the paper's trunk, and the record says so
    assert TrainConfig(network="regional", training_source="particles").trunk == "cartesian"
    with pytest.raises(ValueError, match="trunk must be one of"):
        TrainConfig(trunk="spherical")


def test_projection_source_needs_a_reference(data, tmp_path):
    from scipion_deepalign.core.cnn import train_regions

    _, images, parts = data
    with pytest.raises(ValueError, match="reference map"):
        train_regions(images, None, out_dir=tmp_path, spacing_deg=60.0,
                      config=TrainConfig(pixel_size_a=PIXEL, training_source="projections"))
    with pytest.raises(ValueError, match="shared network"):
        TrainConfig(training_source="projections", network="regional")


def test_near_chance_models_are_reported():
    at_chance = {"val_loss": [3.7, 3.6], "val_accuracy": [0.02, 0.03]}
    good = {"val_loss": [3.0, 2.0], "val_accuracy": [0.2, 0.5]}
    messages = near_chance_warnings({"shared": at_chance}, 42)
    assert len(messages) == 1 and "near chance" in messages[0] and "0.030" in messages[0]
    assert near_chance_warnings({"shared": good}, 42) == []
    assert len(near_chance_warnings({3: {"val_loss": [1.0], "val_accuracy": [0.52]}}, 42)) == 1


def test_noise_curriculum_starts_at_a_tenth_of_the_noise_and_reaches_it():
    from scipion_deepalign.core.cnn.synthetic import noise_ramp_scale

    assert noise_ramp_scale(0, 10) == pytest.approx(0.1)
    assert noise_ramp_scale(5, 10) == pytest.approx(0.1 ** 0.5)  # geometric
    assert noise_ramp_scale(10, 10) == noise_ramp_scale(40, 10) == 1.0
    assert noise_ramp_scale(0, 0) == 1.0  # no curriculum
    with pytest.raises(ValueError, match="noise_ramp_epochs"):
        TrainConfig(noise_ramp_epochs=-1)
    # the ramp takes at most the first half of a short training, none for particles
    assert TrainConfig(epochs=60, noise_ramp_epochs=15).ramp_epochs == 15
    assert TrainConfig(epochs=6, noise_ramp_epochs=15).ramp_epochs == 3
    assert TrainConfig(training_source="particles").ramp_epochs == 0


def test_projection_batches_follow_the_noise_curriculum(data):
    """Each epoch draws its projections with the curriculum's noise amplitude, and that
    amplitude multiplies exactly the noise (same draw, only the noise scaled)."""
    from scipion_deepalign.core.cnn.data import ProjectionBatches
    from scipion_deepalign.core.cnn.synthetic import noise_ramp_scale
    from scipion_deepalign.core.simulate import signal_mask_radius_px

    volume, images, parts = data
    noise = estimate_noise_model(images, mask_radius_px=signal_mask_radius_px(volume))
    source = ProjectionSource(volume, input_box_px=BOX, input_pixel_size_a=PIXEL, noise=noise,
                              ctf=parts.ctf, max_shift_px=1.0)
    clean, _ = source.draw(np.random.default_rng(7), 64, noise_scale=0.0)
    full, _ = source.draw(np.random.default_rng(7), 64)
    tenth, _ = source.draw(np.random.default_rng(7), 64, noise_scale=0.1)
    np.testing.assert_allclose(tenth - clean, 0.1 * (full - clean), atol=1e-6 * np.abs(full).max())
    assert np.var(full - clean) == pytest.approx(noise.noise_variance, rel=0.1)

    scales = []
    real_draw = source.draw

    def draw(rng, n, **kw):
        scales.append(kw["noise_scale"])
        return real_draw(rng, n, **kw)

    source.draw = draw
    batches = ProjectionBatches(source, region_centres_deg(60.0, "c1"), "c1", batch_size=32,
                                n_images=32, seed=0, noise_ramp_epochs=4)
    for _ in range(6):
        batches[0]
        batches.on_epoch_end()
    assert scales == [noise_ramp_scale(e, 4) for e in range(6)]
    assert scales[0] == pytest.approx(0.1) and scales[4:] == [1.0, 1.0]
