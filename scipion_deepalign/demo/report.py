"""Pictures and the Markdown report of a demo run (:func:`.pipeline.run_demo`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..core import defaults, plots
from ..core.cnn.history import read_histories, region_accuracy
from ..core.projection import project

#: angles under which the report counts particles (those of the consensus summaries)
THRESHOLDS_DEG = defaults.CONSENSUS_REPORT_THRESHOLDS_DEG


def plot_particle_gallery(result, *, n: int = 6, path=None) -> Figure:
    """A few simulated particles above noiseless projections at their true poses."""
    idx = np.arange(min(n, len(result.images)))
    clean = project(result.volume, result.true_angles_deg[idx])
    fig = Figure(figsize=(2.0 * len(idx), 4.4), layout="constrained")
    axes = fig.subplots(2, len(idx), squeeze=False)
    for col, i in enumerate(idx):
        rot, tilt, psi = result.true_angles_deg[i]
        axes[0, col].imshow(result.images[i], cmap="gray")
        axes[0, col].set_title(f"#{i + 1}\nrot {rot:.0f} tilt {tilt:.0f}", fontsize=8)
        axes[1, col].imshow(clean[col], cmap="gray")
        axes[1, col].set_title(f"psi {psi:.0f}", fontsize=8)
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("particle (CTF, noise)")
    axes[1, 0].set_ylabel("true projection")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def write_plots(result) -> dict:
    """Write every PNG of the demo into ``result.out_dir``; returns name -> file name."""
    out = result.out_dir
    files = {}

    def save(key, name, fn, *args, **kwargs):
        fn(*args, path=out / name, **kwargs)
        files[key] = name

    save("gallery", "particles.png", plot_particle_gallery, result)
    save("truth_distribution", "true_directions.png", plots.plot_angular_distribution,
         result.true_angles_deg)
    histories = read_histories(out / "model")
    if histories:
        save("training", "training_curves.png", plots.plot_training_history, histories)
    centres, val_acc = region_accuracy(out / "model")
    if np.isfinite(val_acc).any():
        save("region_accuracy", "region_val_accuracy.png", plots.plot_region_accuracy,
             centres, val_acc)
    maps = list(result.maps.values())
    save("fsc", "fsc.png", plots.plot_fsc,
         [m.fsc_halves for m in maps] + [m.fsc_truth for m in maps],
         [f"{m.label}: half maps" for m in maps] + [f"{m.label}: map vs phantom" for m in maps])
    methods = list(result.methods.values())
    save("errors", "angular_errors.png", plots.plot_sorted_angular_differences,
         [m.error_deg[np.isin(m.index, result.compare_index)] for m in methods],
         [f"{m.name} vs truth" for m in methods],
         threshold_deg=defaults.CONSENSUS_MAX_ANGLE_DEG)
    deep = result.methods["DeepAlign"]
    save("distribution", "deepalign_directions.png", plots.plot_angular_distribution,
         deep.angles_deg)
    save("consensus", "consensus_differences.png", plots.plot_sorted_angular_differences,
         [result.consensus.direction_diff_deg[:, 0]], ["DeepAlign vs global search"],
         threshold_deg=defaults.CONSENSUS_MAX_ANGLE_DEG)
    return files


def _method_rows(result) -> list:
    """Accuracy and cost of each method on the particles both aligned."""
    compare = result.compare_index
    rows = ["| method | comparisons / particle | align time / particle (ms) | median error (deg) | "
            + " | ".join(f"within {t:.0f} deg" for t in THRESHOLDS_DEG)
            + " | median shift error (px) |",
            "|---" * (5 + len(THRESHOLDS_DEG)) + "|"]
    for m in result.methods.values():
        on_compare = np.isin(m.index, compare)
        err, shift_err = m.error_deg[on_compare], m.shift_error_px[on_compare]
        fractions = " | ".join(f"{np.mean(err < t):.1%}" for t in THRESHOLDS_DEG)
        rows.append(
            f"| {m.name} | {m.n_comparisons / len(m.index):,.0f} | "
            f"{1000 * m.seconds / len(m.index):.1f} | {np.median(err):.2f} | {fractions} | "
            f"{np.median(shift_err):.2f} |")
    return rows


def _map_rows(result) -> list:
    rows = ["| poses | FSC 0.143 of the half maps (A) | FSC 0.5 of the map vs the phantom (A) |",
            "|---|---|---|"]
    for m in result.maps.values():
        rows.append(f"| {m.label} | {m.fsc_halves.resolution_0143_a:.1f} | "
                    f"{m.fsc_truth.resolution_05_a:.1f} |")
    return rows


def write_report(result, files: dict) -> Path:
    """Write ``report.md`` summarising the run; returns its path."""
    cfg = result.config
    deep, glob = result.methods["DeepAlign"], result.methods["Global search"]
    rep = result.train_report
    agree = result.consensus.agree
    deep_on_sample = deep.error_deg[result.compare_index]

    def per(value, method):
        return max(value, 1e-9) / len(method.index)
    lines = [
        "# DeepAlign demo report", "",
        "Simulated data from the built-in phantom: every number below is measured against the "
        "poses the simulator used.", "",
        "## Data",
        f"- {cfg.n_particles} particles, box {cfg.box_px} px, {cfg.pixel_size_a} A/px, "
        f"symmetry {cfg.symmetry}, CTF (defocus 1-3 um), SNR {cfg.snr}, shifts up to "
        f"{cfg.max_shift_px} px.",
        (f"- Training subset: {len(result.train_index)} particles "
         f"({cfg.train_fraction:.0%}) with their true poses; the other "
         f"{len(result.test_index)} are the test set."
         if cfg.training_source != "projections" else
         f"- The network is trained from projections of the reference map (with the "
         f"particles' CTFs and measured noise): no particle pose is used; scores below are "
         f"on {len(result.test_index)} test particles."),
        "- The reference map for the alignment is the phantom itself.", "",
        f"![particles]({files['gallery']})", "",
        "## Regional classifiers",
        f"- {len(result.centres_deg)} regions at {cfg.spacing_deg} deg spacing, "
        f"images downsampled to {cfg.cnn_resolution_a} A, {cfg.epochs} epochs max, "
        + (f"{cfg.images_per_epoch} new projections per epoch."
           if cfg.training_source == "projections" else
           f"{cfg.positives_per_region} augmented positives per region and epoch."),
        (f"- Trained one shared-trunk network with {rep.n_regions} region outputs in "
         if rep.network == "shared" else
         f"- Trained {len(rep.trained)} regional networks ({len(rep.reused)} reused, "
         f"{len(rep.too_few)} skipped for too few particles) in ")
        +
        f"{result.timings_s['train (DeepAlign)']:.0f} s.",
        f"- Region accuracy on the test set: top-1 {result.region_top1:.1%}, "
        f"top-{cfg.top_k} {result.region_topk:.1%} (chance {result.region_chance_topk:.1%}).",
        "",
    ]
    for key in ("training", "region_accuracy"):
        if key in files:
            lines += [f"![{key}]({files[key]})", ""]
    lines += [
        "## Alignment: DeepAlign (predicted regions, adaptive number, around the kept poses) "
        "against a global search", "",
        f"DeepAlign aligned all {len(deep.index)} particles; the global search over the whole "
        f"asymmetric unit (the same direction grid, in-plane angles and shifts) aligned a random "
        f"sample of {len(glob.index)} test particles, and both are compared on that sample. "
        f"Search at {cfg.align_resolution_a} A.", "",
        *_method_rows(result), "",
        f"Per particle, DeepAlign made "
        f"{per(glob.n_comparisons, glob) / per(deep.n_comparisons, deep):.1f}x "
        f"fewer image-reference comparisons and took "
        f"{per(glob.seconds, glob) / per(deep.seconds, deep):.1f}x less alignment time "
        f"(it searched {result.search_info.get('mean_regions_searched', 0):.2f} regions per "
        f"particle on average; {result.search_info.get('fallback_fraction', 0):.1%} of the "
        "particles went to the global fallback).", "",
        *[f"- WARNING: {m}" for m in rep.warnings], "",
        f"![errors]({files['errors']})", "",
        "## Reconstruction (all particles)", "",
        *_map_rows(result), "",
        f"![fsc]({files['fsc']})", "",
        "## Angular consensus (DeepAlign vs global search, 10 deg, on the sample)",
        f"- {agree.sum()} of {len(agree)} particles agree ({agree.mean():.1%}); DeepAlign's median "
        f"error vs truth is {np.median(deep_on_sample[agree]):.2f} deg on the agreeing ones and "
        f"{np.median(deep_on_sample[~agree]) if (~agree).any() else float('nan'):.2f} deg on "
        "the others.", "",
        f"![consensus]({files['consensus']})", "",
        "## Timings (s)", "",
        "| step | seconds |", "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in result.timings_s.items()], "",
    ]
    path = result.out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
