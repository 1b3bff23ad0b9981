"""``deepalign demo``: the whole job on the built-in phantom, with plots and a report.

Simulates particles (CTF, noise), trains the regional classifiers on a 10 % subset with known
poses, predicts the top regions, aligns inside them and, as the baseline, over the whole
asymmetric unit, reconstructs half maps, computes FSCs and an angular consensus, and writes
``report.md`` and PNGs into ``--out``.
"""
from __future__ import annotations

import argparse
import logging

import numpy as np

from ..core import defaults
from .common import (
    check_symmetry,
    ensure_out_dir,
    positive_float,
    positive_int,
)

log = logging.getLogger("deepalign")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", metavar="DIR",
                        help="output folder; default demo_output")
    parser.add_argument("--n", type=positive_int, default=None, help="number of particles")
    parser.add_argument("--box", type=positive_int, default=None, help="box size in pixels")
    parser.add_argument("--snr", type=positive_float, default=None, help="signal-to-noise ratio")
    parser.add_argument("--spacing", type=positive_float, default=None, metavar="DEG",
                        help="region spacing in degrees")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--positives-per-region", type=positive_int, default=None, metavar="N")
    parser.add_argument("--images-per-epoch", type=positive_int, default=None, metavar="N")
    parser.add_argument("--training-source", default=None,
                        choices=defaults.TRAINING_SOURCES,
                        help="what the network is trained on (default: deepalign run's)")
    parser.add_argument("--network", default=None, choices=defaults.NETWORKS,
                        help="one CNN per region (paper) or one shared-trunk network")
    parser.add_argument("--symmetry", default=None, help="point group of the phantom")
    parser.add_argument("--seed", type=int, default=None)


def main(args) -> int:
    overrides = {"n_particles": args.n, "box_px": args.box, "snr": args.snr,
                 "spacing_deg": args.spacing, "epochs": args.epochs,
                 "positives_per_region": args.positives_per_region,
                 "images_per_epoch": args.images_per_epoch,
                 "training_source": args.training_source,
                 "network": args.network, "symmetry": args.symmetry, "seed": args.seed}
    if args.symmetry is not None:
        overrides["symmetry"] = check_symmetry(args.symmetry)
    from ..demo import DemoConfig, run_demo, write_plots, write_report  # imports TensorFlow

    config = DemoConfig(**{k: v for k, v in overrides.items() if v is not None})
    out = ensure_out_dir(args.out)
    result = run_demo(out, config)
    report = write_report(result, write_plots(result))
    print(f"report: {report}")
    deep = result.methods["DeepAlign"]
    print(f"region accuracy top-{config.top_k}: {result.region_topk:.1%}; "
          f"DeepAlign median angular error {float(np.median(deep.error_deg)):.2f} deg; "
          f"FSC 0.143 {result.maps['DeepAlign'].fsc_halves.resolution_0143_a:.1f} A")
    return 0
