"""RELION for ``bench_relion.py``: installing it, its pinned command lines, running a refinement
under a time cap while each iteration's poses are scored as they appear.

Every RELION program runs with its working directory at the folder of its input STAR file, so
the relative ``index@stack`` names of that file resolve as they do for DeepAlign (RELION reads
them relative to the working directory); every other path given to it is absolute.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

#: the RELION programs the benchmark runs
PROGRAMS = ("relion_refine_mpi", "relion_preprocess", "relion_reconstruct", "mpirun")
#: MPI: the master and one rank per half set (the sequential program refuses the halves)
MPI = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3"]
#: seconds between two looks at the refinement's folder
POLL_S = 5.0


class RelionMissing(RuntimeError):
    """RELION is absent and cannot be installed here (the message says why)."""


def ensure_relion(log) -> str:
    """RELION's version (``relion_refine --version``), installing the Debian package first
    when a program is missing (``apt-get install relion``, as root).

    Raises
    ------
    RelionMissing
        When a program is missing and ``apt-get`` is absent or this is not root.
    """
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        if shutil.which("apt-get") is None:
            raise RelionMissing(f"RELION skipped: {', '.join(missing)} not found and apt-get "
                                "is not available; install RELION 3.1 and Open MPI (mpirun) "
                                "and rerun in a new --work folder (the stack is normalised "
                                "by RELION)")
        if os.geteuid() != 0:
            raise RelionMissing(f"RELION skipped: {', '.join(missing)} not found; installing "
                                "it needs root (`apt-get install relion`)")
        log(f"installing RELION (missing: {', '.join(missing)}): apt-get install relion")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "relion"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RelionMissing(f"RELION skipped: `{' '.join(cmd)}` failed: "
                                    f"{done.stderr.strip()[-300:]}")
        still = [p for p in PROGRAMS if shutil.which(p) is None]
        if still:
            raise RelionMissing(f"RELION skipped: installed, but {', '.join(still)} missing")
    out = subprocess.run(["relion_refine", "--version"], capture_output=True, text=True)
    match = re.search(r"RELION version:\s*(\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def particle_diameter_a(volume, pixel_size_a: float, *, outside: float = 1e-3) -> float:
    """The diameter (A) a RELION user would give ``--particle_diameter``: twice the smallest
    radius outside which every projection along the three axes holds less than ``outside``
    of its mass, at most the box less two pixels (RELION needs the mask inside the box)."""
    import numpy as np

    box = volume.shape[0]
    yy, xx = np.indices((box, box)) - box // 2
    order = np.argsort(np.hypot(yy, xx), axis=None)  # pixels from the centre outwards
    radius = np.hypot(yy, xx).ravel()[order]
    need = 0.0
    for axis in range(3):
        p = np.clip(volume.sum(axis=axis), 0.0, None).ravel()[order]
        inside = np.cumsum(p) / p.sum()
        need = max(need, float(radius[np.searchsorted(inside, 1.0 - outside)]))
    return min(2.0 * np.ceil(need), box - 2.0) * pixel_size_a


def refine_options(*, resolution_a: float, diameter_a: float, local_sigma_deg=None,
                   first_iteration_cc: bool = True) -> list:
    """The pinned options of the 3D auto-refinement (RELION's GUI defaults where the issue
    pins nothing): global from HEALPix order 2 with local searches from order 4, or, with
    ``local_sigma_deg``, local searches from the input poses at order 4 (Gaussian prior of
    that width on the three angles, searched to 3 sigma). ``first_iteration_cc`` False drops
    ``--firstiter_cc`` (the first iteration then weighs the poses by likelihood too)."""
    start = ["--healpix_order", "2"] if local_sigma_deg is None else [
        "--healpix_order", "4", "--sigma_ang", f"{local_sigma_deg:g}"]
    cc = ["--firstiter_cc"] if first_iteration_cc else []
    return ["--auto_refine", "--split_random_halves", *cc,
            "--ini_high", f"{resolution_a:g}", "--dont_combine_weights_via_disc",
            "--pool", "3", "--pad", "2", "--ctf", "--particle_diameter", f"{diameter_a:g}",
            "--flatten_solvent", "--zero_mask", "--oversampling", "1", *start,
            "--auto_local_healpix_order", "4", "--offset_range", "5", "--offset_step", "2",
            "--sym", "C1", "--low_resol_join_halves", "40", "--norm", "--scale", "--j", "1"]


def refine_command(star, reference, out_root, options) -> list:
    """``mpirun ... relion_refine_mpi --i STAR --ref MAP --o ROOT <options>``."""
    return [*MPI, "relion_refine_mpi", "--i", os.path.basename(star),
            "--ref", os.path.abspath(reference), "--o", os.path.abspath(out_root), *options]


def shown(cmd) -> str:
    """A command line as the table prints it (folders of absolute paths left out)."""
    return " ".join(os.path.basename(w) if os.path.isabs(w) else w for w in cmd)


def normalise(stack_in, stack_out, *, bg_radius_px: int, log_path) -> list:
    """``relion_preprocess --operate_on IN --operate_out OUT --norm --bg_radius R``, as RELION's
    extraction normalises (mean 0, standard deviation 1 outside the radius); the command."""
    cmd = ["relion_preprocess", "--operate_on", os.path.abspath(stack_in), "--operate_out",
           os.path.abspath(stack_out), "--norm", "--bg_radius", str(bg_radius_px)]
    _run(cmd, log_path, cwd=os.path.dirname(os.path.abspath(stack_out)))
    return cmd


def reconstruct(star, out_map, log_path) -> list:
    """``relion_reconstruct --i STAR --o MAP --ctf`` (pixel size from the optics table)."""
    cmd = ["relion_reconstruct", "--i", os.path.basename(star), "--o",
           os.path.abspath(out_map), "--ctf"]
    _run(cmd, log_path, cwd=os.path.dirname(os.path.abspath(star)))
    return cmd


def _run(cmd, log_path, cwd) -> None:
    with open(log_path, "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"`{shown(cmd)}` failed (exit {done.returncode}), see {log_path}")


def _iteration_files(folder: Path, root: str) -> dict:
    """``{iteration: path}`` of the finished ``<root>_itNNN_data.star`` files: the iteration's
    sampling file written too and the data file unchanged since the last look."""
    found = {}
    for path in folder.glob(f"{root}_it[0-9][0-9][0-9]_data.star"):
        it = int(path.name[len(root) + 3:len(root) + 6])
        if (folder / f"{root}_it{it:03d}_sampling.star").exists():
            found[it] = path
    return found


def run_capped(cmd, *, star, cap_s: float, score, log_path, log) -> dict:
    """Run a refinement, scoring each iteration's data STAR as it appears, stopping it at
    ``cap_s`` seconds.

    Parameters
    ----------
    cmd : list of str
        The ``mpirun`` command (:func:`refine_command`); its ``--o`` root names the files.
    star : str
        Its input STAR (the working directory is its folder).
    cap_s : float
        Wall-clock cap; the process group is sent SIGTERM (then SIGKILL) when it is reached.
    score : callable
        ``score(path) -> dict`` for a data STAR (cheap: angular errors; maps come later).
    log_path : str
    log : callable
        ``log(message)`` for one-line progress.

    Returns
    -------
    dict
        ``iterations``: ``[{"iteration", "seconds" (data file's mtime from the start), "star"
        (a copy), **score}]``, ``seconds`` (wall time), ``stopped`` ("converged", "cap" or
        "exit N"), ``command``.
    """
    root_path = cmd[cmd.index("--o") + 1]
    folder, root = Path(root_path).parent, Path(root_path).name
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / "scored"
    kept.mkdir(exist_ok=True)
    sizes, done, rows = {}, set(), []
    with open(log_path, "w") as out:
        start = time.time()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                 cwd=os.path.dirname(os.path.abspath(star)),
                                 start_new_session=True)
        stopped = None
        while stopped is None:
            time.sleep(POLL_S)
            code = child.poll()
            if code is not None:
                stopped = "converged" if code == 0 else f"exit {code}"
            elif time.time() - start > cap_s:
                _stop(child)
                stopped = "cap"
            for it, path in sorted(_iteration_files(folder, root).items()):
                size = path.stat().st_size
                if it in done or (sizes.get(it) != size and stopped is None):
                    sizes[it] = size  # still being written: look again next time
                    continue
                done.add(it)
                row = _scored(path, kept, it, start, score, log)
                if row is not None:
                    rows.append(row)
    final = folder / f"{root}_data.star"  # written once, when the refinement converged
    if stopped == "converged" and final.exists():
        row = _scored(final, kept, 1 + max((r["iteration"] for r in rows), default=0), start,
                      score, log)
        if row is not None:
            rows.append(dict(row, final=True))
    seconds = min(time.time() - start, cap_s) if stopped == "cap" else time.time() - start
    return {"iterations": rows, "seconds": seconds, "stopped": stopped, "command": shown(cmd),
            "cap_s": cap_s}


def _scored(path, kept, it, start, score, log):
    """The row of one data STAR (a copy kept beside), None when it cannot be read (a file
    cut short by the cap)."""
    copy = kept / path.name
    shutil.copy2(path, copy)
    try:
        scores = score(str(copy))
    except (ValueError, KeyError, OSError) as exc:
        log(f"  iteration {it}: {path.name} not scored ({exc})")
        return None
    row = {"iteration": it, "seconds": path.stat().st_mtime - start, "star": str(copy),
           **scores}
    log(f"  iteration {it:3d} at {row['seconds'] / 60:6.1f} min: "
        + ", ".join(f"{k} {v:.3g}" for k, v in scores.items()))
    return row


def _stop(child) -> None:
    """SIGTERM to the refinement's process group (mpirun and its ranks), SIGKILL after 30 s."""
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
