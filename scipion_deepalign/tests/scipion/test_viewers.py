"""Viewers render real PNGs (Agg, no display) from real protocol outputs, and the plotted
data are the protocols' numbers."""
import os

import numpy as np
import pytest

pytest.importorskip("pwem")

from pyworkflow.object import Pointer  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from scipion_deepalign.protocols.protocol_consensus import DeepAlignProtConsensus  # noqa: E402
from scipion_deepalign.protocols.protocol_reconstruct import DeepAlignProtReconstruct  # noqa: E402
from scipion_deepalign.viewers import (  # noqa: E402
    DeepAlignAngularDifferencesViewer,
    DeepAlignAngularDistributionViewer,
    DeepAlignFscViewer,
    DeepAlignTrainingViewer,
)

N_PARTICLES = 120
BOX_PX = 32
PIXEL_SIZE_A = 4.0


def _png_ok(path):
    assert os.path.getsize(path) > 2000, path
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def _viewer(cls, project, protocol):
    viewer = cls(project=project, protocol=protocol)
    viewer.setProtocol(protocol)
    return viewer


class TestViewers(BaseTest):
    """Inputs: true poses and a copy with 25 % random poses; runs: two reconstructions and a
    consensus."""

    @classmethod
    def setUpClass(cls):
        from scipion_deepalign.core.geometry import random_angles_deg
        from scipion_deepalign.tests.scipion_helpers import (
            import_particles,
            simulate_dataset,
            write_particles_sqlite,
        )

        setupTestProject(cls)
        work = cls.proj.getTmpPath("viewer_inputs")
        os.makedirs(work, exist_ok=True)
        data = simulate_dataset(work, n=N_PARTICLES, box_px=BOX_PX, pixel_size_a=PIXEL_SIZE_A,
                                snr=100.0, ctf=False, seed=5)
        true_set = import_particles(cls, data.sqlite_path, PIXEL_SIZE_A, label="true poses")
        rng = np.random.default_rng(1)
        copy = data.truth.subset(slice(None))
        cls.scrambled_rows = rng.permutation(N_PARTICLES)[:N_PARTICLES // 4]
        copy.angles_deg = copy.angles_deg.copy()
        copy.angles_deg[cls.scrambled_rows] = random_angles_deg(len(cls.scrambled_rows), rng)
        noisy_set = import_particles(
            cls, write_particles_sqlite(os.path.join(work, "scrambled.sqlite"),
                                        data.stack_path, copy),
            PIXEL_SIZE_A, label="25% scrambled")

        cls.rec_true = cls.newProtocol(DeepAlignProtReconstruct, inputParticles=true_set)
        cls.rec_true.setObjLabel("true poses")
        cls.rec_noisy = cls.newProtocol(DeepAlignProtReconstruct, inputParticles=noisy_set)
        cls.rec_noisy.setObjLabel("scrambled poses")
        cls.consensus = cls.newProtocol(DeepAlignProtConsensus,
                                        inputSets=[true_set, noisy_set], maxAngleDeg=7.5,
                                        symmetryGroup="c1")
        for prot in (cls.rec_true, cls.rec_noisy, cls.consensus):
            cls.launchProtocol(prot)
        cls.png_dir = cls.proj.getTmpPath("viewer_pngs")

    def test_fsc_viewer_overlays_reconstructions(self):
        viewer = _viewer(DeepAlignFscViewer, self.proj, self.rec_true)
        viewer.compareWith.append(Pointer(self.rec_noisy, extended="outputFSC"))
        path = os.path.join(self.png_dir, "fsc.png")
        os.makedirs(self.png_dir, exist_ok=True)
        plotter, = viewer.plotFsc(path=path)
        _png_ok(path)

        ax = plotter.getFigure().axes[0]
        lines = ax.get_lines()
        for line, prot in zip(lines[:2], (self.rec_true, self.rec_noisy)):
            freq, values = (np.array(v, dtype=float) for v in prot.outputFSC.getData())
            np.testing.assert_allclose(line.get_xdata(), freq)
            np.testing.assert_allclose(line.get_ydata(), values)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[0].startswith("true poses") and legend[1].startswith("scrambled poses")
        # the legend's 0.143 resolution is the protocol's own
        assert f"0.143: {self.rec_true.getResolution0143():.1f} Å" in legend[0]
        # random poses for a quarter of the particles blur the map: worse resolution
        assert self.rec_noisy.getResolution0143() > self.rec_true.getResolution0143() + 0.5

    def test_angular_differences_viewer(self):
        viewer = _viewer(DeepAlignAngularDifferencesViewer, self.proj, self.consensus)
        path = os.path.join(self.png_dir, "differences.png")
        os.makedirs(self.png_dir, exist_ok=True)
        plotter, = viewer.plotDifferences(path=path)
        _png_ok(path)

        data = self.consensus.getDifferences()
        sorted_line = plotter.getFigure().axes[0].get_lines()[0]
        np.testing.assert_allclose(sorted_line.get_ydata(),
                                   np.sort(data["direction_diff_deg"][:, 0]))
        # the threshold line is at the protocol's threshold
        threshold = plotter.getFigure().axes[0].get_lines()[-1]
        assert np.allclose(threshold.get_ydata(), 7.5)
        # three quarters of the particles have identical poses: the curve is 0 up to there
        n_zero = np.sum(sorted_line.get_ydata() < 1e-3)
        assert n_zero == N_PARTICLES - len(self.scrambled_rows) + np.sum(
            data["direction_diff_deg"][self.scrambled_rows, 0] < 1e-3)

    def test_angular_distribution_viewer(self):
        from scipion_deepalign.convert import read_set_poses
        from scipion_deepalign.core.plots import sphere_coordinates_rad

        viewer = _viewer(DeepAlignAngularDistributionViewer, self.proj, self.consensus)
        outputs = dict(viewer.alignedOutputs())
        assert set(outputs) == {"outputParticles", "outputParticlesDiscarded"}
        _, angles, _ = read_set_poses(self.consensus.outputParticles)
        np.testing.assert_allclose(outputs["outputParticles"], angles)  # c1: nothing folded

        paths = viewer.savePngs(self.png_dir)
        assert [os.path.basename(p) for p in paths] == ["doShowDistribution.png",
                                                         "doShowDistribution_2.png"]
        for p in paths:
            _png_ok(p)
        plotter = viewer.plotDistribution()[0]
        from matplotlib.collections import PathCollection

        points, = [c for c in plotter.getFigure().axes[0].collections
                   if isinstance(c, PathCollection)]
        offsets = points.get_offsets()
        np.testing.assert_allclose(np.asarray(offsets).T, sphere_coordinates_rad(angles),
                                   atol=1e-6)


class _TrainRun:
    """Stand-in for a finished training protocol: only its ``outputModel`` is read."""

    def __init__(self, model):
        self.outputModel = model

    def getObjLabel(self):
        return "train"


def test_training_viewer(tmp_path):
    pytest.importorskip("keras")
    from pyworkflow.project import Manager

    from scipion_deepalign.core.cnn.config import TrainConfig
    from scipion_deepalign.core.cnn.train import train_regions
    from scipion_deepalign.core.simulate import make_phantom, simulate_particles
    from scipion_deepalign.objects import DeepAlignModel

    volume = make_phantom(24, seed=0)
    images, truth = simulate_particles(volume, 80, pixel_size_a=4.0, snr=10.0, ctf=False,
                                       seed=0)
    model_dir = tmp_path / "model"
    report = train_regions(images, truth.angles_deg, out_dir=model_dir, spacing_deg=90.0,
                           regions=[1, 2],
                           config=TrainConfig(pixel_size_a=4.0, epochs=2, batch_size=16,
                                              positives_per_region=32,
                                              min_particles_per_region=3, network="regional",
                                              training_source="particles"))
    assert report.trained == [1, 2]

    project = Manager().createProject(f"viewer_training_{tmp_path.name}")
    run = _TrainRun(DeepAlignModel.fromModelDir(str(model_dir)))
    viewer = DeepAlignTrainingViewer(project=project, protocol=run)
    viewer.setProtocol(run)
    paths = viewer.savePngs(str(tmp_path / "pngs"))
    assert [os.path.basename(p) for p in paths] == ["doShowHistory.png",
                                                     "doShowRegionAccuracy.png"]
    for p in paths:
        _png_ok(p)

    history = viewer.plotHistory()[0].getFigure()
    loss_lines = history.axes[0].get_lines()
    assert len(loss_lines) == 4  # 2 regions x (training, validation)
    np.testing.assert_allclose(loss_lines[0].get_ydata(), report.histories[1]["loss"])
    np.testing.assert_allclose(loss_lines[3].get_ydata(), report.histories[2]["val_loss"])

    accuracy = viewer.plotRegionAccuracy()[0].getFigure().axes[0].collections[0].get_array()
    assert len(accuracy) == report.n_regions
    np.testing.assert_allclose(accuracy[:2], [max(report.histories[r]["val_accuracy"])
                                              for r in (1, 2)])
    assert np.all(np.isnan(np.asarray(accuracy, dtype=float)[2:]))  # untrained regions


def test_training_viewer_shared_network(tmp_path):
    pytest.importorskip("keras")
    from pyworkflow.project import Manager

    from scipion_deepalign.core.cnn.config import TrainConfig
    from scipion_deepalign.core.cnn.train import train_regions
    from scipion_deepalign.core.simulate import make_phantom, simulate_particles
    from scipion_deepalign.objects import DeepAlignModel

    volume = make_phantom(24, seed=0)
    images, truth = simulate_particles(volume, 80, pixel_size_a=4.0, snr=10.0, ctf=False,
                                       seed=0)
    model_dir = tmp_path / "model"
    report = train_regions(images, truth.angles_deg, out_dir=model_dir, spacing_deg=90.0,
                           config=TrainConfig(pixel_size_a=4.0, epochs=2, batch_size=16,
                                              images_per_epoch=128,
                                              network="shared", training_source="particles"))
    project = Manager().createProject(f"viewer_shared_{tmp_path.name}")
    run = _TrainRun(DeepAlignModel.fromModelDir(str(model_dir)))
    viewer = DeepAlignTrainingViewer(project=project, protocol=run)
    viewer.setProtocol(run)
    for p in viewer.savePngs(str(tmp_path / "pngs")):
        _png_ok(p)

    history = viewer.plotHistory()[0].getFigure()
    legend = [t.get_text() for t in history.axes[0].get_legend().get_texts()]
    assert legend == ["shared network"]
    assert history.axes[0].lines[1].get_linestyle() == "--"  # the validation curve is drawn
    regions = viewer.plotRegionAccuracy()[0].getFigure().axes[0]
    counts = np.asarray(regions.collections[0].get_array())
    assert counts.sum() == sum(report.histories["shared"]["n_particles_per_region"])
    assert "Shared network" in regions.get_title() and "nan" not in regions.get_title()
