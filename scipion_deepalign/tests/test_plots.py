"""Figures: files written, and the plotted data equal the inputs."""
import numpy as np
import pytest

from scipion_deepalign.core.fsc import fsc_curve
from scipion_deepalign.core.plots import (
    plot_angular_distribution,
    plot_fsc,
    plot_region_accuracy,
    plot_sorted_angular_differences,
    plot_training_history,
    sphere_coordinates_rad,
)


def _png_ok(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_fsc(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16,) * 3)
    results = [fsc_curve(a, a + s * rng.standard_normal(a.shape), pixel_size_a=2.0)
               for s in (0.5, 2.0)]
    fig = plot_fsc(results, ["good", "bad"], path=tmp_path / "fsc.png")
    _png_ok(tmp_path / "fsc.png")
    ax = fig.axes[0]
    for line, res in zip(ax.lines, results):
        np.testing.assert_allclose(line.get_xdata(), res.frequency_inv_a)
        np.testing.assert_allclose(line.get_ydata(), res.fsc)
    thresholds = sorted(line.get_ydata()[0] for line in ax.lines[2:])
    assert thresholds == [0.143, 0.5]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("good (0.143: ") and f"{results[1].resolution_05_a:.1f} A" in \
        legend[1]
    with pytest.raises(ValueError, match="labels has 1 entries for 2 curves"):
        plot_fsc(results, ["one"])


def test_plot_sorted_angular_differences(tmp_path):
    d1 = np.array([12.0, 1.0, 3.0, 40.0])
    d2 = np.array([2.0, 0.5, 5.0])
    fig = plot_sorted_angular_differences([d1, d2], ["A vs B", "A vs C"], threshold_deg=10,
                                          path=tmp_path / "diff.png")
    _png_ok(tmp_path / "diff.png")
    ax_sorted, ax_hist = fig.axes
    np.testing.assert_array_equal(ax_sorted.lines[0].get_ydata(), np.sort(d1))
    np.testing.assert_array_equal(ax_sorted.lines[0].get_xdata(), np.arange(4))
    np.testing.assert_array_equal(ax_sorted.lines[1].get_ydata(), np.sort(d2))
    assert ax_sorted.lines[2].get_ydata()[0] == 10
    legend = [t.get_text() for t in ax_sorted.get_legend().get_texts()]
    assert legend == ["A vs B (50% < 10 deg)", "A vs C (100% < 10 deg)"]
    assert len(ax_hist.patches) == 2  # one step histogram per input


def test_plot_angular_distribution(tmp_path):
    angles = np.array([[0.0, 0.0, 5.0], [90.0, 90.0, 0.0], [270.0, 180.0, 0.0]])
    fig = plot_angular_distribution(angles, path=tmp_path / "dist.png")
    _png_ok(tmp_path / "dist.png")
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(offsets, np.deg2rad([[0, 90], [90, 0], [-90, -90]]), atol=1e-12)
    lon, lat = sphere_coordinates_rad(angles[:, :2])
    np.testing.assert_allclose(np.stack([lon, lat], 1), offsets)


def test_plot_region_accuracy(tmp_path):
    centres = np.array([[0.0, 30.0], [120.0, 90.0], [-120.0, 150.0]])
    acc = np.array([0.9, 0.5, np.nan])
    fig = plot_region_accuracy(centres, acc, path=tmp_path / "acc.png")
    _png_ok(tmp_path / "acc.png")
    points = fig.axes[0].collections[0]
    np.testing.assert_allclose(points.get_offsets(), np.deg2rad([[0, 60], [120, 0], [-120, -60]]))
    np.testing.assert_array_equal(np.ma.filled(points.get_array(), np.nan), acc)
    with pytest.raises(ValueError, match="val_accuracy has 2 values for 3 region centres"):
        plot_region_accuracy(centres, acc[:2])


def test_plot_training_history(tmp_path):
    histories = {
        0: {"loss": [2.0, 1.0, 0.5], "accuracy": [0.3, 0.6, 0.8], "val_loss": [2.1, 1.2, 0.7],
            "val_accuracy": [0.2, 0.5, 0.7], "region": 0},
        3: {"loss": [1.5, 1.4], "accuracy": [0.4, 0.45]},
    }
    fig = plot_training_history(histories, path=tmp_path / "hist.png")
    _png_ok(tmp_path / "hist.png")
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.lines) == 3 and len(ax_acc.lines) == 3
    np.testing.assert_array_equal(ax_loss.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(ax_loss.lines[0].get_ydata(), [2.0, 1.0, 0.5])
    np.testing.assert_array_equal(ax_loss.lines[1].get_ydata(), [2.1, 1.2, 0.7])
    assert ax_loss.lines[1].get_linestyle() == "--"
    np.testing.assert_array_equal(ax_acc.lines[2].get_ydata(), [0.4, 0.45])
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["region 0", "region 3"]
    with pytest.raises(ValueError, match="no 'accuracy'"):
        plot_training_history({1: {"loss": [1.0]}})
    with pytest.raises(ValueError, match="empty"):
        plot_training_history({})


def test_draws_into_given_figure():
    from matplotlib.figure import Figure
    fig = Figure()
    out = plot_angular_distribution(np.zeros((2, 3)), fig=fig)
    assert out is fig and len(fig.axes) == 1
