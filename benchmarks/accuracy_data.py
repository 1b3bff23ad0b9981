"""The data sets ``bench_accuracy.py`` judges on and the scores against their truth: the maps,
the simulated particles (training subset with wrong poses, low-passed reference), pose errors,
region hit rates and the reliability of the top-1 probability.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scipion_deepalign.core.defaults import TARGET_RESOLUTION, default_max_shift_px
from scipion_deepalign.core.geometry import random_angles_deg
from scipion_deepalign.core.imageops import low_pass_volume
from scipion_deepalign.core.io import read_volume
from scipion_deepalign.core.simulate import simulate_particles
from scipion_deepalign.core.symmetry import symmetric_pose_distance_deg

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: name -> (file, pixel size if the header has none, search resolution in A of
#: ``--align-resolution map``)
MAPS = {
    "8zpm": ("8zpm_64_2A.mrc", 2.0, 8.0),
    "70S": ("clean70SRibosome_vol_65p.mrc", 5.0, 20.0),
}


def make_dataset(name, snr, args):
    filename, default_pixel, align_res = MAPS[name]
    volume, pixel = read_volume(str(Path(args.data) / filename))
    pixel = pixel or default_pixel
    volume = volume[:64, :64, :64]  # the 65-voxel ribosome: cropped to 64
    images, parts = simulate_particles(volume, args.n, pixel_size_a=pixel, snr=snr,
                                       max_shift_px=3.0, seed=args.seed + 1,
                                       defocus_range_a=(10000.0, 25000.0))
    # never the exact map: low-passed to 8 A, or to 1.5 x Nyquist when that is coarser
    resolution = max(args.reference_resolution, 3.0 * pixel)
    reference = low_pass_volume(volume, pixel_size_a=pixel, resolution_a=resolution)
    rng = np.random.default_rng(args.seed + 2)
    n_train = int(round(args.train_fraction * args.n))
    train = np.arange(n_train)
    test = np.arange(n_train, args.n)
    train_angles = parts.angles_deg[train].copy()
    wrong = rng.random(n_train) < args.wrong
    train_angles[wrong] = random_angles_deg(int(wrong.sum()), rng)
    if args.align_resolution == "auto":
        align_res = TARGET_RESOLUTION
    elif args.align_resolution != "map":
        align_res = float(args.align_resolution)
    max_shift = args.max_shift or default_max_shift_px(volume.shape[0])
    return dict(name=f"{name}@{snr:g}", images=images, parts=parts, reference=reference,
                max_shift=max_shift,
                pixel=pixel, align_res=align_res, train=train, test=test, device=args.device,
                train_angles=train_angles, ref_res=resolution, n_wrong=int(wrong.sum()))


def errors(angles, truth, symmetry="c1"):
    err = symmetric_pose_distance_deg(angles, truth, symmetry)
    return {f"within{t}": float(np.mean(err <= t)) for t in (5, 10, 15)} | {
        "median_err": float(np.median(err))}


def region_hits(probs, truth_regions):
    order = np.argsort(-probs, axis=1, kind="stable")
    return (float(np.mean(order[:, 0] == truth_regions)),
            float(np.mean((order[:, :2] == truth_regions[:, None]).any(axis=1))))


def reliability(probs, truth_regions, bins=(0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0001)):
    top = probs.max(axis=1)
    hit = probs.argmax(axis=1) == truth_regions
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (top >= lo) & (top < hi)
        if sel.any():
            rows.append((lo, min(hi, 1.0), int(sel.sum()), float(top[sel].mean()),
                         float(hit[sel].mean())))
    return rows
