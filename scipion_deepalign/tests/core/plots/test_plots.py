"""Figures: files written, and the plotted data equal the inputs."""
import numpy as np
import pytest

from scipion_deepalign.core.judge.fsc import fsc_curve
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
    assert legend[0].startswith("good (0.143: ") and f"{results[1].resolution_05_a:.1f} Å" in \
        legend[1]
    # the crossings are marked (a dot each) and labelled in Angstrom
    crossings = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(sorted(crossings[:, 0]), sorted(
        1 / r for res in results for r in (res.resolution_0143_a, res.resolution_05_a)))
    texts = [t.get_text() for t in ax.texts]
    assert f"{results[0].resolution_0143_a:.1f} Å" in texts and "FSC = 0.143" in texts
    # a top axis in Angstrom: the resolution of a tick is 1 / its frequency
    top = ax.child_axes[0]
    assert top.get_xlabel() == "Resolution (Å)"
    ticks = [float(t.get_text()) for t in top.get_xticklabels()]
    assert ticks and min(ticks) >= 2 * 2.0 - 1e-9  # none finer than Nyquist (4 A)
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


def _density_and_points(fig):
    from matplotlib.collections import PathCollection, QuadMesh

    ax = fig.axes[0]
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    return mesh[0], points


def test_plot_angular_distribution(tmp_path):
    angles = np.array([[0.0, 0.0, 5.0], [90.0, 90.0, 0.0], [270.0, 180.0, 0.0]])
    fig = plot_angular_distribution(angles, path=tmp_path / "dist.png")
    _png_ok(tmp_path / "dist.png")
    mesh, (points,) = _density_and_points(fig)
    assert np.ma.sum(mesh.get_array()) == 16 * 3  # every particle counted once, 4 x 4 cells
    offsets = points.get_offsets()
    np.testing.assert_allclose(offsets, np.deg2rad([[0, 90], [90, 0], [-90, -90]]), atol=1e-12)
    lon, lat = sphere_coordinates_rad(angles[:, :2])
    np.testing.assert_allclose(np.stack([lon, lat], 1), offsets)
    assert len(fig.axes) == 2 and "particles per bin" in fig.axes[1].get_ylabel()
    # no longitude labels across the map; tilt labels at the edge
    assert all(t.get_text() == "" for t in fig.axes[0].get_xticklabels())
    assert fig.axes[0].get_yticklabels()[0].get_text() == "tilt 30°"


@pytest.mark.parametrize("n", [30, 100_000])
def test_angular_distribution_scales_from_few_to_many_particles(tmp_path, n):
    from scipion_deepalign.core.geometry import random_angles_deg
    from scipion_deepalign.core.plots import POINTS_UP_TO

    fig = plot_angular_distribution(random_angles_deg(n, 0), path=tmp_path / "d.png")
    mesh, points = _density_and_points(fig)
    assert np.ma.sum(mesh.get_array()) == 16 * n
    assert len(points) == (1 if n <= POINTS_UP_TO else 0)  # points only while readable


def test_equal_area_bins_make_a_uniform_sphere_look_uniform():
    from scipion_deepalign.core.geometry import random_angles_deg
    from scipion_deepalign.core.plots import equal_area_histogram

    lon, lat = sphere_coordinates_rad(random_angles_deg(200_000, 1))
    _, lat_edges, counts, bin_deg2 = equal_area_histogram(lon, lat, n_bins=200)
    per_band = counts.mean(axis=1)
    # polar and equatorial bands hold the same mean count (2 % tolerance ~ 4 sigma)
    np.testing.assert_allclose(per_band, per_band.mean(), rtol=0.03)
    assert bin_deg2 * counts.size == pytest.approx(4 * np.pi * np.rad2deg(1) ** 2)


def test_plot_region_accuracy(tmp_path):
    centres = np.array([[0.0, 30.0], [120.0, 90.0], [-120.0, 150.0]])
    acc = np.array([0.9, 0.5, np.nan])
    fig = plot_region_accuracy(centres, acc, path=tmp_path / "acc.png")
    _png_ok(tmp_path / "acc.png")
    points = fig.axes[0].collections[0]
    np.testing.assert_allclose(points.get_offsets(), np.deg2rad([[0, 60], [120, 0], [-120, -60]]))
    np.testing.assert_array_equal(np.ma.filled(points.get_array(), np.nan), acc)
    # the region without a network is a grey cross named in the legend, not an empty circle
    np.testing.assert_allclose(fig.axes[0].collections[1].get_offsets(), np.deg2rad([[-120, -60]]))
    assert "no network (1 regions" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert "mean 0.70 over 2 networks" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="val_accuracy has 2 values for 3 region centres"):
        plot_region_accuracy(centres, acc[:2])


def test_plot_training_history(tmp_path):
    histories = {
        1: {"loss": [2.0, 1.0, 0.5], "accuracy": [0.3, 0.6, 0.8], "val_loss": [2.1, 1.2, 0.7],
            "val_accuracy": [0.2, 0.5, 0.7], "region": 1},
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
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["region 1", "region 3"]
    assert [t.get_text() for t in ax_acc.get_legend().get_texts()] == [
        "training", "validation (held-out images)"]
    assert all(float(t).is_integer() for t in ax_loss.get_xticks()
               if ax_loss.get_xlim()[0] <= t <= ax_loss.get_xlim()[1])
    assert fig.get_layout_engine() is not None  # constrained: titles never overlap
    with pytest.raises(ValueError, match="no 'accuracy'"):
        plot_training_history({1: {"loss": [1.0]}})
    with pytest.raises(ValueError, match="empty"):
        plot_training_history({})


def test_draws_into_given_figure():
    from matplotlib.figure import Figure
    fig = Figure()
    out = plot_angular_distribution(np.zeros((2, 3)), fig=fig)
    out = plot_angular_distribution(np.zeros((2, 3)), fig=fig)  # redrawn, not added
    assert out is fig and len(fig.axes) == 2  # the map and its colour bar


def test_training_history_names_the_shared_network(tmp_path):
    fig = plot_training_history({0: {"loss": [1.0], "accuracy": [0.5], "val_loss": [1.2],
                                     "val_accuracy": [0.4]}}, path=tmp_path / "h.png")
    ax_loss = fig.axes[0]
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["shared network"]
    assert ax_loss.lines[1].get_marker() == "o"  # one epoch still shows its validation point
    assert [t for t in ax_loss.get_xticks() if 0.5 <= t <= 1.5] == [1.0]


def test_plot_region_counts_for_the_shared_network(tmp_path):
    from scipion_deepalign.core.plots import plot_region_counts

    centres = np.array([[0.0, 30.0], [120.0, 90.0]])
    fig = plot_region_counts(centres, [12, 30], overall_accuracy=0.71, path=tmp_path / "c.png")
    _png_ok(tmp_path / "c.png")
    np.testing.assert_array_equal(fig.axes[0].collections[0].get_array(), [12, 30])
    assert "Shared network" in fig.axes[0].get_title() and "0.71" in fig.axes[0].get_title()
    assert "nan" not in fig.axes[0].get_title()


def test_figures_keep_constrained_layout_in_a_given_figure():
    from matplotlib.figure import Figure

    fig = Figure()
    plot_fsc([], fig=fig)
    assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
