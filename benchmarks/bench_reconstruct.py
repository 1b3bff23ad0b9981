"""Reconstruction throughput: half maps of N particles per second, by thread count.

``python benchmarks/bench_reconstruct.py --sizes 2000,20000 --box 64 --threads 1,2``

Times :func:`scipion_deepalign.core.judge.reconstruct.reconstruct_half_maps` (with CTF and shifts,
c1) on images of Gaussian noise (the cost does not depend on what the images show) at random
poses, after one small warm-up call that compiles the gridding loop. Prints a Markdown table
with the load average before the run; run it alone on the machine (DEVELOPERS.md).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from scipion_deepalign.core.judge.reconstruct import reconstruct_half_maps
from scipion_deepalign.core.particles import CTFParams


def _particles(n: int, box: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, box, box)).astype(np.float32)
    angles = np.stack([rng.uniform(0, 360, n), np.degrees(np.arccos(rng.uniform(-1, 1, n))),
                       rng.uniform(0, 360, n)], axis=1)
    shifts = rng.uniform(-3, 3, (n, 2))
    ctf = CTFParams(defocus_u_a=rng.uniform(1e4, 2.5e4, n),
                    defocus_v_a=rng.uniform(1e4, 2.5e4, n),
                    defocus_angle_deg=rng.uniform(0, 180, n))
    return images, angles, shifts, ctf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000", help="particle counts, comma-separated")
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--pixel-size", type=float, default=3.0)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    threads = [int(x) for x in args.threads.split(",")]
    load = os.getloadavg()[0]
    warm = _particles(8, args.box)
    reconstruct_half_maps(warm[0], warm[1], shifts_px=warm[2], ctf=warm[3],
                          pixel_size_a=args.pixel_size)
    print(f"half maps, {args.box} px, CTF, shifts, c1; load average {load:.2f} before")
    print("| particles | threads | seconds | particles/s |")
    print("|---|---|---|---|")
    for n in sizes:
        images, angles, shifts, ctf = _particles(n, args.box)
        for t in threads:
            start = time.perf_counter()
            reconstruct_half_maps(images, angles, shifts_px=shifts, ctf=ctf,
                                  pixel_size_a=args.pixel_size, threads=t)
            seconds = time.perf_counter() - start
            print(f"| {n} | {t} | {seconds:.1f} | {n / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
