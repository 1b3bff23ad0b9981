"""The K sweep of ``bench_classes.py`` (stage ``ksweep``): comparisons per particle and class
accuracy of ``deepalign run`` and of the global search over K = 1, 2, 4 maps."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
from classes_maps import BOX, MAP, PIXEL_A, ksweep_maps


def ksweep_slug(args) -> str:
    return (f"ksweep-k{'_'.join(map(str, args.ks))}-n{args.ksweep_n}-snr{args.snr:g}"
            f"-s{args.seed}")


_COMPARISONS = re.compile(r"^\s*comparisons: (\d+)\b.*?(?:; (\d+) refinement candidates)?$",
                          re.MULTILINE)


def comparisons_of_log(text: str, n: int) -> dict:
    """Comparisons per particle of a ``deepalign run`` / ``align`` log (its summary's
    ``comparisons: N (...); R refinement candidates`` line): search and refinement apart."""
    found = _COMPARISONS.findall(text)
    if not found:
        return {"search_per_particle": None, "refine_per_particle": None}
    search, refine = found[-1]
    return {"search_per_particle": int(search) / n,
            "refine_per_particle": int(refine or 0) / n}


def stage_ksweep(b) -> dict:
    """For each K of ``--ks``: ``--ksweep-n`` particles of the K maps of :func:`ksweep_maps`
    (equal proportions, SNR ``--snr``, not normalised: no RELION here), each map low-passed as
    a reference; ``deepalign run --volume ...`` (defaults, cold) and ``deepalign align --global
    --volume ...`` (defaults). Comparisons per particle (search, refinement), balanced class
    accuracy, wall time."""
    from dataclasses import replace

    from classes_report import balanced_accuracy

    from scipion_deepalign.core.classes import simulate_mixture
    from scipion_deepalign.core.imageops import low_pass_volume
    from scipion_deepalign.core.io import (
        read_particles_star,
        read_volume,
        write_mrc,
        write_particles_star,
    )
    from scipion_deepalign.core.io.columns import class_numbers

    start = time.perf_counter()
    volume, _ = read_volume(str(Path(b.args.data) / MAP))
    volume = volume[:BOX, :BOX, :BOX]
    rows = []
    for k in b.args.ks:
        folder = b.work / "ksweep" / f"K{k}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        maps = ksweep_maps(volume, k, part_radius_a=b.args.part_radius)
        images, parts, classes = simulate_mixture(
            maps, b.args.ksweep_n, pixel_size_a=PIXEL_A, snr=b.args.snr, ctf=True,
            max_shift_px=3.0, seed=b.args.seed)
        write_mrc(str(folder / "particles.mrcs"), images, pixel_size_a=PIXEL_A, stack=True)
        names = [f"{i + 1:06d}@particles.mrcs" for i in range(len(images))]
        star = folder / "particles.star"
        write_particles_star(str(star), replace(parts, image_names=names, root=str(folder),
                                                angles_deg=None, shifts_px=None))
        volumes = []
        for i, m in enumerate(maps):
            path = folder / f"reference_{i + 1}.mrc"
            write_mrc(str(path), low_pass_volume(m, pixel_size_a=PIXEL_A,
                                                 resolution_a=b.args.reference_resolution),
                      pixel_size_a=PIXEL_A)
            volumes += ["--volume", str(path)]
        epochs = ["--epochs", str(b.args.epochs)] if b.args.epochs else []
        ways = (("run", ["run", "--particles", str(star), *volumes, "--out",
                         str(folder / "run"), *epochs], folder / "run" / "aligned.star"),
                ("global", ["align", "--global", "--particles", str(star), *volumes, "--out",
                            str(folder / "global.star")], folder / "global.star"))
        for way, words, out in ways:
            b.log(f"ksweep: K = {k}, {way}")
            rec = b.deepalign(words, f"ksweep/K{k}/{way}.log")
            text = (b.work / "ksweep" / f"K{k}" / f"{way}.log").read_text()
            acc = None
            if k > 1:
                found = class_numbers(read_particles_star(str(out), datadir=str(folder)).extra)
                acc = balanced_accuracy(np.asarray(found), classes, k)[0]
            rows.append({"k": k, "way": way, "n": int(len(images)), **rec,
                         **comparisons_of_log(text, len(images)), "balanced_accuracy": acc,
                         "map_change": [float(np.linalg.norm(maps[0] - m)
                                              / np.linalg.norm(maps[0])) for m in maps]})
    return {"seconds": time.perf_counter() - start, "rows": rows,
            "settings": {"ks": list(b.args.ks), "n": b.args.ksweep_n, "snr": b.args.snr,
                         "seed": b.args.seed, "part_radius_a": b.args.part_radius,
                         "epochs": b.args.epochs, "slug": ksweep_slug(b.args)}}
