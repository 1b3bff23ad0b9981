# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""DeepAlignProtClasses3D: its form's checks, and a two-map mixture classified end to end
without the network (``deepalign classify``, 2 iterations, coarse step: the fastest settings)
with the answer checked against the truth and the per-iteration summary; its viewer draws the
class sizes, also per iteration. The network refined by iterations ("Refine the classes by
iterations?", ``deepalign classify --cnn``): its command line (the defaults' values, parsed by
``classify``'s own parser), the STAR its output reads, its checks and summary lines, and the
same mixture classified end to end by a tiny network (about 30 s on two cores)."""
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

    def test_one_volume_starts_the_classes_from_it(self):
        """One volume without the network: ``classify --classes K`` from it; with the network
        (one map per class) or fewer than 2 classes it is refused, saying what to change."""
        from scipion_deepalign.core import defaults

        prot = self._classes(self.volumes[:1], oneMapClasses=3)
        assert prot.validate() == [] and prot._fromOneMap() and prot._numberOfClasses() == 3
        command, args = prot._classifyCommand()
        assert command == "classify" and args[args.index("--classes") + 1] == 3
        assert args[args.index("--split-resolution") + 1] == defaults.CLASSIFY_SPLIT_RESOLUTION
        assert args.count("--volume") == 1
        assert "--classes" not in self._classes(self.volumes)._classifyCommand()[1]
        text = "\n".join(self._classes(self.volumes[:1], useNetwork=True).validate())
        assert "One reference volume: the network learns one map per class." in text
        assert ("Classes from one map must be at least 2, got 1."
                in self._classes(self.volumes[:1], oneMapClasses=1).validate())
        assert "Give one reference volume per class" in "\n".join(
            self._classes([]).validate())
        assert ("The split resolution must be a positive number of Angstrom, got 0.0."
                in self._classes(self.volumes[:1], splitResolutionA=0.0).validate())

    def test_classifies_from_one_map(self):
        """One volume, "Classes from one map" 2: deepalign classify --classes 2 end to end,
        two classes out (the first ones by the variance split, at 16 A for this 24-A part)."""
        prot = self._classes(self.volumes[:1], oneMapClasses=2, splitResolutionA=16.0)
        try:
            self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise
        assert prot.outputClasses.getSize() == 2 and prot.outputVolumes.getSize() == 2
        found = {p.getObjId(): cls.getObjId() for cls in prot.outputClasses.iterItems()
                 for p in cls.iterItems()}
        labels = np.array([found[i] for i in range(1, N + 1)]) - 1
        accuracy = max(np.mean(labels == self.true_classes),
                       np.mean(labels != self.true_classes))
        print(f"class accuracy from one map {accuracy:.3f}")
        assert accuracy >= 0.8, accuracy  # chance 0.5
        summary = "\n".join(prot.summary())
        assert "from one map" in summary and "first classes by the variance split" in summary
        assert "started from the one reference map" in "\n".join(prot.methods())

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
        assert prot.iterateNetwork.get() is False  # one pass of the network by default
        assert prot.finetuneEpochs.get() == defaults.CLASSIFY_FINETUNE_EPOCHS

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
        assert args[args.index("--class-search") + 1] == defaults.CLASS_SEARCH
        _, args = self._classes(self.volumes, useNetwork=True, classOutput=1,
                                classPrior=1, classSearch=1)._classifyCommand()
        assert args[args.index("--class-search") + 1] == "mean"
        assert args[args.index("--class-output") + 1] == "head"
        assert args[args.index("--class-prior") + 1] == "estimated"
        import argparse

        from scipion_deepalign.cli import run

        parser = argparse.ArgumentParser()
        run.add_args(parser)
        parsed = parser.parse_args([str(a) for a in args])  # deepalign run takes the line
        assert (parsed.class_output, parsed.class_prior, parsed.class_search) == (
            "head", "estimated", "mean")
        # deepalign classify has no network: neither option reaches it
        _, args = self._classes(self.volumes, classOutput=1, classPrior=1)._classifyCommand()
        assert "--class-output" not in args and "--class-prior" not in args

    def test_iterated_network_command_line_is_classify_cnn_with_the_defaults(self):
        import argparse

        from scipion_deepalign.cli import classify
        from scipion_deepalign.core import defaults
        from scipion_deepalign.core.align.search_plan import SearchOptions
        from scipion_deepalign.protocols import DeepAlignProtClasses3D

        prot = DeepAlignProtClasses3D()  # the form's defaults, then the iterated network
        prot.useNetwork.set(True)
        prot.iterateNetwork.set(True)
        prot.inputParticles.set(self.particles)
        for volume in self.volumes:
            prot.inputVolumes.append(volume)
        command, args = prot._classifyCommand()
        assert command == "classify" and "--cnn" in args

        def value(option):
            return args[args.index(option) + 1]

        assert value("--iterations") == defaults.CLASSIFY_ITERATIONS
        assert value("--spacing") == defaults.REGION_SPACING_DEG
        assert value("--epochs") == defaults.train_default("epochs")
        assert value("--images-per-epoch") == defaults.train_default("images_per_epoch")
        assert value("--finetune-epochs") == defaults.CLASSIFY_FINETUNE_EPOCHS
        assert value("--overlap") == SearchOptions.default("overlap_deg")
        assert value("--follow") == SearchOptions.default("follow_deg")
        assert value("--probability-mass") == SearchOptions.default("probability_mass")
        assert value("--max-regions") == SearchOptions.default("max_regions")
        assert value("--out") == prot._classifyFolder().path
        # run's options only: classify --cnn trains the joint output, searches uniformly
        assert "--class-output" not in args and "--class-prior" not in args
        # deepalign classify takes the line, and its network checks pass
        parser = argparse.ArgumentParser()
        classify.add_args(parser)
        parsed = parser.parse_args([str(a) for a in args])
        classify._check_network_args(parsed, "c1")
        assert parsed.cnn and parsed.iterations == defaults.CLASSIFY_ITERATIONS
        assert (parsed.spacing, parsed.epochs, parsed.images_per_epoch,
                parsed.finetune_epochs) == (defaults.REGION_SPACING_DEG,
                                            defaults.train_default("epochs"),
                                            defaults.train_default("images_per_epoch"),
                                            defaults.CLASSIFY_FINETUNE_EPOCHS)
        assert parsed.top_k == defaults.TOP_K  # left to the command's default
        # the global search's line has no network option (classify refuses them without --cnn)
        prot.useNetwork.set(False)
        command, args = prot._classifyCommand()
        assert command == "classify" and "--cnn" not in args
        assert "--spacing" not in args and "--finetune-epochs" not in args
        classify._check_network_args(parser.parse_args([str(a) for a in args]), "c1")

    def test_classified_star_is_the_classify_folders_when_iterating(self):
        folder = self._classes(self.volumes, useNetwork=True, iterateNetwork=True)
        one_pass = self._classes(self.volumes, useNetwork=True)
        for prot in (folder, one_pass):
            prot._createFilenameTemplates()
        star = folder._getFileName("classified_star")
        assert star == folder._classifyFolder().star_path()
        assert os.path.dirname(star) == folder._getFileName("classify_dir")
        assert one_pass._getFileName("classified_star") == os.path.join(
            one_pass._getFileName("classify_dir"), "aligned.star")

    def test_form_shows_the_options_of_each_path(self):
        def shown(prot, name):
            return prot.evalParamCondition(name)

        for network, iterate, iterations, finetune, one_pass in (
                (False, False, True, False, False), (False, True, True, False, False),
                (True, False, False, False, True), (True, True, True, True, False)):
            prot = self._classes(self.volumes, useNetwork=network, iterateNetwork=iterate)
            assert shown(prot, "iterateNetwork") == network
            assert shown(prot, "iterations") == iterations, (network, iterate)
            assert shown(prot, "finetuneEpochs") == finetune, (network, iterate)
            assert shown(prot, "regionSpacingDeg") == network
            assert shown(prot, "oneMapClasses") == (not network)
            for name in ("classOutput", "classPrior"):
                assert shown(prot, name) == one_pass, (name, network, iterate)
            assert prot._iterates() == iterations

    def test_iterated_network_bad_iterations_and_finetune_epochs_are_refused(self):
        errors = self._classes(self.volumes, useNetwork=True, iterateNetwork=True,
                               iterations=0, finetuneEpochs=0).validate()
        assert "Iterations must be at least 1, got 0." in errors
        assert "Fine-tuning epochs must be at least 1, got 0." in errors
        # both hidden in one pass of the network: not checked
        assert self._classes(self.volumes, useNetwork=True, iterations=0,
                             finetuneEpochs=0).validate() == []

    def test_iterated_network_summary_says_how_each_network_was_trained(self):
        from scipion_deepalign.core.io import write_json

        prot = self._classes(self.volumes, useNetwork=True, iterateNetwork=True)
        self.proj.saveProtocol(prot)
        path = prot._classifyFolder().report_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        net = dict(train_seconds=12.4, predict_seconds=1.0, class_accuracy=None,
                   pairs_per_particle=1.5, reused=False, model_dir="m")
        its = [dict(iteration=1, class_sizes=[40, 20], changed_fraction=None,
                    resolution_0143_a=[20.0, None],
                    network=dict(net, epochs=20, fine_tuned_from=None)),
               dict(iteration=2, class_sizes=[42, 18], changed_fraction=0.05,
                    resolution_0143_a=[18.0, 21.0],
                    network=dict(net, epochs=2, fine_tuned_from="it001/model/shared.keras"))]
        write_json(path, {"iterations": its, "inputs": {}, "stopped": "iterations"})
        assert prot.classifyReport()["iterations"] == its
        lines = prot._iterationLines()
        assert lines[0] == ("deepalign classify: 2 iterations (stopped: the iterations given "
                            "ran)")
        assert lines[1] == ("iteration 1: class sizes 40, 20; changed class -; FSC 0.143 "
                            "20.0 A, -; network trained 20 epochs (12 s), 1.50 (class, "
                            "region) pairs per particle")
        assert "; network fine-tuned 2 epochs (12 s)" in lines[2]
        # one pass of the network has no iterations (the same folder, not read)
        assert self._classes(self.volumes, useNetwork=True).classifyReport() is None

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

    def test_classifies_a_mixture_with_the_iterated_network(self):
        """``classify --cnn`` through the form: a tiny network (12 regions, 2 epochs of 512
        projections, 1 fine-tuning epoch), 2 iterations; the output read from the classify
        folder's STAR."""
        pytest.importorskip("keras")
        prot = self._classes(self.volumes, useNetwork=True, iterateNetwork=True,
                             regionSpacingDeg=60.0, numberOfEpochs=2, imagesPerEpoch=512,
                             finetuneEpochs=1)
        try:
            self.launchProtocol(prot)
        except Exception:
            print(sh.run_log(prot))
            raise
        found = {p.getObjId(): cls.getObjId()
                 for cls in prot.outputClasses.iterItems(orderBy="id") for p in cls.iterItems()}
        assert sorted(found) == list(range(1, N + 1))
        labels = np.array([found[i] for i in range(1, N + 1)]) - 1
        accuracy = np.mean(labels == self.true_classes)
        print(f"class accuracy {accuracy:.3f}")
        assert accuracy >= 0.8, accuracy  # chance 0.5 (0.7 by always answering A)
        from scipion_deepalign.convert import item_class_ids
        from scipion_deepalign.core.io import read_particles_star

        prot._createFilenameTemplates()
        assert prot._getFileName("classified_star") == prot._classifyFolder().star_path()
        assert item_class_ids(read_particles_star(prot._getFileName("classified_star"))) \
            == found
        report = prot.classifyReport()
        nets = [it["network"] for it in report["iterations"]]
        assert nets[0]["epochs"] <= 2 and nets[0]["fine_tuned_from"] is None
        assert all(n["fine_tuned_from"] for n in nets[1:])
        summary = "\n".join(prot.summary())
        assert "deepalign classify --cnn" in summary and "; network trained " in summary
        assert "network was fine-tuned" in "\n".join(prot.methods())
        print(summary)

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
