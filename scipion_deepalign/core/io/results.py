"""The result files of the ``deepalign`` commands besides STAR files and maps: their names and
their one reader and writer each, so that the command writing a file and the protocol
reading it back share the schema.

* ``deepalign consensus --out DIR``: :data:`CONSENSUS_OUTPUTS` in ``DIR``; ``differences.csv``
  by :func:`write_differences_csv` / :func:`read_differences_csv`, ``summary.json`` by
  :func:`write_json` / :func:`read_json`;
* ``deepalign reconstruct --halves --out MAP.mrc``: the half maps at
  :func:`half_map_paths` and the ``--fsc-json`` file (:func:`write_fsc_json`);
* ``deepalign align --out ALIGNED.star``: the summary at :func:`summary_path`
  (:func:`write_json`).

JSON and CSV files are written atomically (:mod:`..runtime.atomic`).
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from ..runtime.atomic import atomic_open

__all__ = ["CONSENSUS_OUTPUTS", "write_differences_csv", "read_differences_csv",
           "half_map_paths", "summary_path", "write_json", "read_json", "write_fsc_json"]

#: what ``deepalign consensus --out DIR`` writes in ``DIR``: the agreeing and disagreeing
#: particles, the per-particle differences and the summary's numbers
CONSENSUS_OUTPUTS = ("agree.star", "disagree.star", "differences.csv", "summary.json")


def half_map_paths(out_path) -> tuple[str, str]:
    """``MAP_half1.mrc`` and ``MAP_half2.mrc`` beside the map ``out_path``."""
    stem, ext = os.path.splitext(os.fspath(out_path))
    return f"{stem}_half1{ext or '.mrc'}", f"{stem}_half2{ext or '.mrc'}"


def summary_path(out_path) -> str:
    """``NAME.summary.json`` beside a command's output ``NAME.star``: its summary's numbers."""
    stem, _ = os.path.splitext(os.fspath(out_path))
    return f"{stem}.summary.json"


def write_json(path, data) -> None:
    """``data`` (numbers, strings, lists, dicts; numpy scalars and arrays converted) as JSON,
    atomically."""
    def plain(value):
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable ({path})")

    with atomic_open(path) as fh:
        json.dump(data, fh, indent=1, default=plain)


def read_json(path) -> dict:
    """A JSON file written by :func:`write_json`; ValueError naming ``path`` if it is not."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None


def write_fsc_json(path, result, n_particles: int) -> None:
    """The FSC of two half maps as JSON, atomically.

    Keys: ``frequency_inv_a`` and ``fsc`` (lists), ``resolution_0143_a`` and
    ``resolution_05_a`` (Å; None when not finite), ``limited_by_sampling`` (the curve stays
    above 0.143 up to Nyquist) and ``n_particles``.

    Parameters
    ----------
    path : str or path-like
    result : FSCResult
        Of :func:`~scipion_deepalign.core.judge.fsc.fsc_curve`.
    n_particles : int
        Particles of both halves together.
    """
    def number(value):
        return None if value is None or not np.isfinite(value) else float(value)

    write_json(path, {"frequency_inv_a": np.asarray(result.frequency_inv_a).tolist(),
                      "fsc": np.asarray(result.fsc).tolist(),
                      "resolution_0143_a": number(result.resolution_0143_a),
                      "resolution_05_a": number(result.resolution_05_a),
                      "limited_by_sampling": bool(result.limited_by_sampling),
                      "n_particles": int(n_particles)})


def write_differences_csv(path, names, result) -> None:
    """``differences.csv`` of a consensus, atomically.

    Columns: ``image_name``, ``agree`` (0/1) and, per pair ``i_j`` of inputs (1-based),
    ``direction_deg_i_j``, ``inplane_deg_i_j`` and (with shifts) ``shift_px_i_j``.

    Parameters
    ----------
    path : str or path-like
    names : sequence of str, length N
        The particles' names (one row each).
    result : ConsensusResult
        Of :func:`~scipion_deepalign.core.judge.consensus.angular_consensus` on N particles.
    """
    header = ["image_name", "agree"]
    columns = []
    for p, (i, j) in enumerate(result.pairs):
        tag = f"{i + 1}_{j + 1}"
        header += [f"direction_deg_{tag}", f"inplane_deg_{tag}"]
        columns += [result.direction_diff_deg[:, p], result.inplane_diff_deg[:, p]]
        if result.shift_diff_px is not None:
            header.append(f"shift_px_{tag}")
            columns.append(result.shift_diff_px[:, p])
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row, name in enumerate(names):
            writer.writerow([name, int(result.agree[row])]
                            + [f"{c[row]:.4f}" for c in columns])


def read_differences_csv(path) -> dict:
    """What :func:`write_differences_csv` wrote.

    Returns
    -------
    dict
        ``image_name`` (list of N str), ``agree`` (ndarray of shape (N,), bool), ``pairs``
        (ndarray of shape (P, 2), 0-based), ``direction_diff_deg``, ``inplane_diff_deg`` and
        ``shift_diff_px`` (ndarrays of shape (N, P); the last None when the file has no shift
        columns).

    Raises
    ------
    ValueError
        Naming ``path`` when it has no ``direction_deg_`` column.
    """
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    tags = [c[len("direction_deg_"):] for c in header if c.startswith("direction_deg_")]
    if not tags:
        raise ValueError(f"{path}: not a differences.csv of deepalign consensus (no "
                         "direction_deg_ column)")
    pairs = np.array([[int(k) - 1 for k in tag.split("_")] for tag in tags], dtype=np.int64)

    def table(prefix):
        if f"{prefix}{tags[0]}" not in header:
            return None
        cols = [header.index(f"{prefix}{tag}") for tag in tags]
        return np.array([[float(r[c]) for c in cols] for r in body]).reshape(len(body), -1)

    return {"image_name": [r[0] for r in body],
            "agree": np.array([r[1] == "1" for r in body], dtype=bool),
            "pairs": pairs.reshape(-1, 2), "direction_diff_deg": table("direction_deg_"),
            "inplane_diff_deg": table("inplane_deg_"), "shift_diff_px": table("shift_px_")}
