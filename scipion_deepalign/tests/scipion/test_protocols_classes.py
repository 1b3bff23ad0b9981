# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""DeepAlignProtClasses3D: its form's checks, and a two-map mixture classified end to end
without the network (``deepalign classify``, 2 iterations, coarse step: the fastest settings)
with the answer checked against the truth and the per-iteration summary; its viewer draws the
class sizes, also per iteration."""
import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

import os

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from scipion_deepalign.tests import scipion_helpers as sh

PIXEL_SIZE_A = 4.0
BOX_PX = 32
N = 60


def _write_map(path, volume, pixel_size_a=PIXEL_SIZE_A):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(volume, np.float32))
        mrc.voxel_size = pixel_size_a
    return path


class TestClasses3D(BaseTest):
    """60 particles of two maps (the phantom, and the phantom with a ball of density masked
    away), SNR 3, no CTF, 70/30."""

    @classmethod
    def setUpClass(cls):
        from scipion_deepalign.core.classes.mixture import simulate_mixture
        from scipion_deepalign.tests.helpers import phantom_pair

        setupTestProject(cls)
        folder = cls.getOutputPath("sim")
        os.makedirs(folder, exist_ok=True)
        maps = phantom_pair(BOX_PX, radius_px=6.0)
        images, truth, cls.true_classes = simulate_mixture(
            maps, N, pixel_size_a=PIXEL_SIZE_A, fractions=(0.7, 0.3), snr=3.0, ctf=False,
            seed=3)
        stack = _write_map(os.path.join(folder, "particles.mrcs"), images)
        sqlite = sh.write_particles_sqlite(os.path.join(folder, "particles.sqlite"), stack,
                                           truth, with_poses=False)
        cls.particles = sh.import_particles(cls, sqlite, PIXEL_SIZE_A)
        cls.volumes = [sh.import_volume(cls, _write_map(os.path.join(folder, f"{n}.mrc"), m),
                                        PIXEL_SIZE_A, label=f"map {n}")
                       for n, m in zip("AB", maps)]
        small = _write_map(os.path.join(folder, "small.mrc"), maps[0][4:-4, 4:-4, 4:-4])
        cls.small = sh.import_volume(cls, small, PIXEL_SIZE_A, label="24 px")

    def _classes(self, volumes, **kwargs):
        from scipion_deepalign.protocols import DeepAlignProtClasses3D

        options = dict(inputParticles=self.particles, symmetryGroup="c1", useNetwork=False,
                       angularStepDeg=15.0, maxShiftPx=1.0, alignResolutionA="16",
                       localRefinement=False, useGpu=False, iterations=2)
        options.update(kwargs)
        prot = self.newProtocol(DeepAlignProtClasses3D, **options)
        for volume in volumes:
            prot.inputVolumes.append(volume)
        return prot

    def test_valid_form_has_no_errors(self):
        assert self._classes(self.volumes).validate() == []

    def test_a_set_of_volumes_gives_its_maps_in_order(self):
        from pwem.protocols import ProtImportVolumes

        imported = self.newProtocol(ProtImportVolumes, filesPath=self.getOutputPath("sim"),
                                    filesPattern="[AB].mrc", samplingRate=PIXEL_SIZE_A)
        self.launchProtocol(imported)
        prot = self._classes([imported.outputVolumes])
        assert prot.validate() == []
        names = [os.path.basename(v.getFileName()) for v in prot._inputVolumes()]
        assert len(names) == 2 and names[0] < names[1], names

    def test_one_volume_is_refused(self):
        text = "\n".join(self._classes(self.volumes[:1]).validate())
        assert "Give at least two reference volumes (one per class); 1 given." in text

    def test_volume_of_another_box_is_refused_by_name(self):
        text = "\n".join(self._classes([self.volumes[0], self.small]).validate())
        # the volume named by its file (the import's copy of small.mrc)
        assert "The reference volume 2 (" in text
        assert "small.mrc) box is 24 px but the particles box is 32 px." in text
        assert "reference volume 1" not in text

    def test_form_defaults_are_the_commands(self):
        from scipion_deepalign.core import defaults
        from scipion_deepalign.protocols import DeepAlignProtClasses3D

        prot = DeepAlignProtClasses3D()
        assert prot.regionSpacingDeg.get() == defaults.REGION_SPACING_DEG
        assert prot.numberOfEpochs.get() == defaults.train_default("epochs")
        assert prot.imagesPerEpoch.get() == defaults.train_default("images_per_epoch")
        assert prot.alignResolutionA.get() == defaults.TARGET_RESOLUTION
        assert prot.localRefinement.get() == defaults.REFINE
        assert prot.iterations.get() == defaults.CLASSIFY_ITERATIONS

    def test_command_line_with_and_without_the_network(self):
        from scipion_deepalign.core import defaults

        prot = self._classes(self.volumes)
        command, args = prot._classifyCommand()
        assert command == "classify" and "--global" not in args
        assert args[args.index("--iterations") + 1] == 2
        assert args[args.index("--out") + 1] == prot._classifyFolder().path
        assert [a for a in args if str(a).endswith(".mrc")][-2:] == [
            a for i, a in enumerate(args) if i and args[i - 1] == "--volume"]
        command, args = self._classes(self.volumes, useNetwork=True)._classifyCommand()
        assert command == "run" and "--global" not in args and "--epochs" in args
        assert "--iterations" not in args
        assert args[args.index("--class-output") + 1] == defaults.train_default("class_output")
        assert args[args.index("--class-prior") + 1] == defaults.CLASS_PRIOR
        _, args = self._classes(self.volumes, useNetwork=True, classOutput=1,
                                classPrior=1)._classifyCommand()
        assert args[args.index("--class-output") + 1] == "head"
        assert args[args.index("--class-prior") + 1] == "estimated"
        import argparse

        from scipion_deepalign.cli import run

        parser = argparse.ArgumentParser()
        run.add_args(parser)
        parsed = parser.parse_args([str(a) for a in args])  # deepalign run takes the line
        assert (parsed.class_output, parsed.class_prior) == ("head", "estimated")
        # deepalign classify has no network: neither option reaches it
        _, args = self._classes(self.volumes, classOutput=1, classPrior=1)._classifyCommand()
        assert "--class-output" not in args and "--class-prior" not in args

    def test_classifies_a_mixture(self):
        prot = self._classes(self.volumes)
        try:
            self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise
        classes = prot.outputClasses
        assert classes.getSize() == 2
        found = {}  # item id -> class id
        for cls in classes.iterItems(orderBy="id"):
            assert cls.hasAlignmentProj()
            rep = cls.getRepresentative()
            assert os.path.exists(rep.getFileName()) and rep.getSamplingRate() == PIXEL_SIZE_A
            found.update({p.getObjId(): cls.getObjId() for p in cls.iterItems()})
        assert sorted(found) == list(range(1, N + 1))  # every particle, once
        labels = np.array([found[i] for i in range(1, N + 1)]) - 1
        # the maps are the classes in the form's order: no label matching needed, but the
        # accuracy after the best matching is what a classification is judged by
        accuracy = max(np.mean(labels == self.true_classes),
                       np.mean(labels == 1 - self.true_classes))
        assert np.mean(labels == self.true_classes) == accuracy
        print(f"class accuracy {accuracy:.3f}")
        assert accuracy >= 0.9, accuracy  # chance is 0.5 (0.7 by always answering A)
        # rlnClassNumber round-trips into the SetOfClasses3D
        from scipion_deepalign.convert import item_class_ids
        from scipion_deepalign.core.io import read_particles_star

        prot._createFilenameTemplates()
        star = read_particles_star(prot._getFileName("classified_star"))
        assert item_class_ids(star) == found
        sizes = [cls.getSize() for cls in classes.iterItems(orderBy="id")]
        assert sizes == [int(np.sum(labels == k)) for k in (0, 1)]
        assert prot.outputVolumes.getSize() == 2
        summary = "\n".join(prot.summary())
        assert f"class 1: {sizes[0]} particles ({100 * sizes[0] / N:.1f} %)" in summary
        # the per-iteration report of deepalign classify, in the summary
        report = prot.classifyReport()
        iterations = report["iterations"]
        assert [it["iteration"] for it in iterations] == [1, 2] or (
            report["stopped"] == "converged" and len(iterations) == 1), report
        assert iterations[-1]["class_sizes"] == sizes
        assert "deepalign classify: " in summary
        for it in iterations:
            assert (f"iteration {it['iteration']}: class sizes "
                    f"{', '.join(map(str, it['class_sizes']))}; changed class ") in summary
        assert " iterations)" in "\n".join(prot.methods())
        print(summary)
        self._check_viewer(prot, sizes, iterations)

    def _check_viewer(self, prot, sizes, iterations):
        from scipion_deepalign.viewers import DeepAlignClassesViewer

        viewer = DeepAlignClassesViewer(project=self.proj, protocol=prot)
        assert viewer.classSizes() == ([1, 2], sizes)
        labels, results = viewer.classFscs()
        assert len(results) == 2 and labels[0].startswith("class 1")
        paths = viewer.savePngs(self.getOutputPath("pngs"))
        names = sorted(os.path.basename(p) for p in paths)
        assert names[:2] == ["doShowClassSizes.png", "doShowDistribution.png"], names
        assert "doShowFsc.png" in names and "doShowIterations.png" in names
        assert viewer.classSizesPerIteration() == iterations
        assert all(os.path.getsize(p) > 10_000 for p in paths)
        print("viewer PNGs:", paths)
