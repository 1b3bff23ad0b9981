"""`deepalign demo` (what `make demo` runs) end to end on a tiny set: files, report, numbers."""
import numpy as np

from scipion_deepalign.cli import main
from scipion_deepalign.demo import DemoConfig, run_demo


def test_demo_command_writes_report_and_plots(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "300", "--box", "32", "--spacing", "60",
                 "--epochs", "1", "--images-per-epoch", "256"]) == 0
    report = (out / "report.md").read_text()
    for section in ("## Regional classifiers", "## Alignment", "## Reconstruction",
                    "## Angular consensus"):
        assert section in report
    for png in ("particles.png", "fsc.png", "angular_errors.png", "training_curves.png",
                "consensus_differences.png"):
        assert (out / png).stat().st_size > 1000, png
    assert (out / "map_deepalign.mrc").exists() and (out / "particles_truth.star").exists()


def test_demo_result_is_judged_against_the_simulated_truth(tmp_path):
    cfg = DemoConfig(n_particles=300, box_px=32, snr=1.0, spacing_deg=60.0, epochs=3,
                     images_per_epoch=1024, compare_n=100)
    result = run_demo(tmp_path, cfg)
    glob, deep = result.methods["Global search"], result.methods["DeepAlign"]
    assert len(deep.index) == 300 and len(glob.index) == 100
    assert set(glob.index) <= set(result.test_index)
    # the global search over the whole unit finds most poses of this easy set
    assert np.median(glob.error_deg) < 15.0
    # the regional search costs a fraction of the global one per particle
    ratio = (glob.n_comparisons / 100) / (deep.n_comparisons / 300)
    searched = result.search_info["mean_regions_searched"]
    # (measured 1.35, with 7.4 of the 12 regions searched: the default mass and most regions
    # spend regions on the particles this 3-epoch network is unsure of)
    assert 1 <= searched <= cfg.top_k and ratio > 1.2
    # true poses give the better map: the oracle bounds what any alignment reaches
    truth_map = result.maps["True poses"].fsc_truth
    assert truth_map.resolution_05_a <= result.maps["DeepAlign"].fsc_truth.resolution_05_a + 0.5


def test_demo_rejects_unknown_symmetry_before_any_work(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--symmetry", "x3"]) == 2
    assert "--symmetry" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
