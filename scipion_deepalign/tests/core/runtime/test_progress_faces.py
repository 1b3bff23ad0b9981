"""Every long core loop reports its progress: the increments add up to the whole, arrive in
several pieces, and reporting changes no result."""
import logging

import numpy as np
import pytest

from scipion_deepalign.core.align.align import align_particles
from scipion_deepalign.core.judge.reconstruct import reconstruct_half_maps
from scipion_deepalign.core.regions import nearest_regions, region_centres_deg
from scipion_deepalign.core.simulate import clean_particle_images, make_phantom, simulate_particles

PIXEL_A = 4.0


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, n=1, **info):
        self.calls.append(n)

    @property
    def total(self):
        return sum(self.calls)


@pytest.fixture(scope="module")
def volume():
    return make_phantom(32, seed=0)


def test_simulation_reports_particles_and_chunks_change_nothing(volume):
    record = _Recorder()
    images, parts = simulate_particles(volume, 60, pixel_size_a=PIXEL_A, snr=np.inf,
                                       max_shift_px=2.0, seed=3, progress=record)
    assert record.total == 60 and len(record.calls) >= 10
    np.testing.assert_allclose(images, clean_particle_images(volume, parts), atol=1e-6)


def test_alignment_reports_the_particles_share_of_each_chunk(volume):
    images, parts = simulate_particles(volume, 12, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       seed=1)
    centres = region_centres_deg(30.0, "c1")
    hints = nearest_regions(parts.angles_deg, centres, "c1", k=2)
    options = dict(pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=8.0, device="cpu",
                   region_hints=hints, centres_deg=centres)
    record = _Recorder()
    reported = align_particles(images, volume, progress=record, **options)
    assert record.total == pytest.approx(12) and len(record.calls) >= 5
    # reporting changes nothing (up to the last bit: BLAS threads may sum in another order)
    np.testing.assert_allclose(reported.angles_deg,
                               align_particles(images, volume, **options).angles_deg,
                               rtol=0, atol=1e-9)


def test_reconstruction_reports_both_halves(volume):
    images, parts = simulate_particles(volume, 40, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       seed=2)
    record = _Recorder()
    reconstruct_half_maps(images, parts.angles_deg, pixel_size_a=PIXEL_A, batch_size=8,
                          progress=record)
    assert record.total == 40 and len(record.calls) == 6  # 20 + 20 particles in batches of 8


def test_training_logs_each_epoch_with_rate_eta_and_metrics(caplog, tmp_path):
    pytest.importorskip("keras")
    from scipion_deepalign.core.cnn import TrainConfig, train_regions

    images, parts = simulate_particles(make_phantom(32, symmetry="d2"), 120,
                                       pixel_size_a=PIXEL_A, snr=1.0, seed=3)
    config = TrainConfig(pixel_size_a=PIXEL_A, target_box_px=16, epochs=2, batch_size=32,
                         positives_per_region=32, min_particles_per_region=5,
                         network="regional", training_source="particles", patience=0)
    caplog.set_level(logging.INFO, logger="scipion_deepalign")
    train_regions(images, parts.angles_deg, out_dir=tmp_path, symmetry="d2",
                  spacing_deg=90.0, config=config, regions=[1])
    lines = [r.getMessage() for r in caplog.records if "training region 1" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("training region 1 (1 of 1): 50% (1 of 2 epochs), ")
    assert "ETA" in lines[0] and "val_accuracy=" in lines[0] and "loss=" in lines[0]
    assert lines[1].startswith("training region 1 (1 of 1): 100% (2 of 2 epochs), ")



def test_alignment_progress_counts_the_refinement_and_reaches_the_whole_at_its_end(
        volume, monkeypatch):
    """The local refinement is part of the progress (weighted by its work against the gallery
    search's, block by block): the reports only increase, each block's search stops short of
    the block, and the whole is reached by the last refinement's last report, not before."""
    from scipion_deepalign.core.align import local_refinement

    images, parts = simulate_particles(volume, 12, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                                       seed=1)
    events = []
    refine_poses = local_refinement.refine_poses

    def refine(*args, **kwargs):
        events.append("refine")
        out = refine_poses(*args, **kwargs)
        events.append("refined")
        return out

    monkeypatch.setattr(local_refinement, "refine_poses", refine)
    align_particles(images, volume, pixel_size_a=PIXEL_A, max_shift_px=2.0, step_deg=8.0,
                    device="cpu", refine=True, block_size=6, progress=events.append)
    steps = [e for e in events if not isinstance(e, str)]
    assert all(n > 0 for n in steps)
    done = np.cumsum([0.0 if isinstance(e, str) else e for e in events])
    assert done[-1] == pytest.approx(12)
    starts = [i for i, e in enumerate(events) if e == "refine"]
    ends = [i for i, e in enumerate(events) if e == "refined"]
    assert len(starts) == 2  # one refinement per block of 6
    for block, (i, j) in enumerate(zip(starts, ends)):
        assert done[i] < 6 * block + 6 - 1  # the search left the refinement's share
        assert done[j] == pytest.approx(6 * block + 6)  # the block done with its refinement
        assert any(not isinstance(e, str) for e in events[i:j])  # reported as it refined
    assert ends[-1] == len(events) - 1  # nothing after the last refinement ...
    assert np.all(done[:starts[-1] + 1] < 12 - 1)  # ... and the whole only within it
