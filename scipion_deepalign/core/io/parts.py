"""Work split into parts: part I of N of a particle STAR, the part record, and the merge.

A *part* is a contiguous, balanced slice of the input order: part ``I`` (1-based) of ``N``
holds the input rows ``(I-1)*n//N .. I*n//N - 1`` (:func:`part_rows`). A command run on one
part writes its particles plus a single-row block ``data_deepalign_part`` (:data:`PART_BLOCK`)
holding the :class:`PartRecord`: the part index, ``N``, the number of input particles, the
input rows covered, a digest of the input's image names and one of the command's options
(so that a part made with other options is neither reused nor merged). :func:`merge_parts` joins a
complete set of part files back into the input order and refuses, naming the files, any set
that is not exactly parts ``1..N`` of one input:

1. every file holds a part record;
2. all files have the same ``N``, input count and input digest (same input, same split);
3. all files were made with the same options;
4. no part index appears twice;
5. no part index of ``1..N`` is missing;
6. each record's rows are those :func:`part_rows` gives for its index.

Particles dropped inside a part (``--skip-bad``) are simply absent from the merge.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass

import numpy as np

from ..particles import OPTICS_FIELDS, CTFParams, Particles
from . import columns
from .images import output_root, relocate_image_names
from .star import read_particles_star
from .star_tables import read_star_blocks
from .star_write import write_particles_star

__all__ = ["DEFAULT_PART_SIZE", "PART_BLOCK", "PartRecord", "parse_part", "count_parts",
           "part_rows", "names_digest", "part_record", "part_path", "write_part_star",
           "read_part_record", "is_complete_part", "check_part_set", "merge_parts",
           "concatenate_particles"]

#: Particles per part that the protocols use unless told otherwise.
DEFAULT_PART_SIZE = 20000
#: STAR block holding the part record of a part output.
PART_BLOCK = "deepalign_part"
_FIELDS = columns.PART_RECORD_COLUMNS


@dataclass(frozen=True)
class PartRecord:
    """Which part of which input a part file holds (``first_row``/``stop_row``: 0-based,
    half-open range of input rows; ``options``: digest of the command's options)."""

    index: int
    n_parts: int
    n_input: int
    first_row: int
    stop_row: int
    digest: str
    options: str = "-"

    def same_split(self, other: PartRecord) -> bool:
        return (self.n_parts, self.n_input, self.digest) == (
            other.n_parts, other.n_input, other.digest)


def parse_part(text: str) -> tuple[int, int]:
    """``"2/5"`` -> ``(2, 5)``; ``ValueError`` unless ``1 <= I <= N``."""
    index, sep, count = str(text).partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        raise ValueError(f"part must be I/N with integers, e.g. 2/5, got {text!r}") from None
    if not sep or not 1 <= index <= count:
        raise ValueError(f"part I/N needs 1 <= I <= N, got {text!r}")
    return index, count


def count_parts(n_particles: int, part_size: int = DEFAULT_PART_SIZE) -> int:
    """Parts of at most ``part_size`` particles needed for ``n_particles`` (at least 1)."""
    if part_size < 1:
        raise ValueError(f"part size must be positive, got {part_size}")
    return max(1, math.ceil(n_particles / part_size))


def part_rows(n_particles: int, index: int, n_parts: int) -> slice:
    """Input rows of part ``index`` (1-based) of ``n_parts``: sizes differ by at most one."""
    if not 1 <= index <= n_parts:
        raise ValueError(f"part {index}/{n_parts}: need 1 <= I <= N")
    if n_parts > n_particles:
        raise ValueError(f"{n_parts} parts for {n_particles} particles: every part needs "
                         "at least one particle")
    return slice((index - 1) * n_particles // n_parts, index * n_particles // n_parts)


def names_digest(image_names) -> str:
    """Short digest of the image names of an input (tells one input from another)."""
    h = hashlib.sha256("\n".join(map(str, image_names)).encode())
    return h.hexdigest()[:16]


def part_record(particles: Particles, index: int, n_parts: int, *,
                options=()) -> PartRecord:
    """The record of part ``index``/``n_parts`` of the input ``particles``, made by a command
    with the words ``options`` (those that change the result)."""
    rows = part_rows(len(particles), index, n_parts)
    return PartRecord(index, n_parts, len(particles), rows.start, rows.stop,
                      names_digest(particles.image_names), names_digest(options))


def part_path(out_star, index: int, n_parts: int) -> str:
    """File of part ``index`` when a run with ``--out out_star`` splits itself in parts:
    ``out_parts/part_003_of_008.star`` beside ``out.star``."""
    stem = os.path.splitext(os.fspath(out_star))[0]
    return os.path.join(f"{stem}_parts", f"part_{index:03d}_of_{n_parts:03d}.star")


def write_part_star(path, particles: Particles, record: PartRecord) -> None:
    """Write a part's particles with its record (atomically: a file there is complete)."""
    block = {_FIELDS[k]: [getattr(record, k)] for k in _FIELDS}
    write_particles_star(path, particles, single_row_blocks={PART_BLOCK: block})


def read_part_record(path) -> PartRecord | None:
    """The part record of a STAR file (None if it has none)."""
    block = read_star_blocks(path).get(PART_BLOCK)
    if block is None or any(c not in block for c in _FIELDS.values()):
        return None
    values = {k: block[c][0] for k, c in _FIELDS.items()}
    text = ("digest", "options")
    return PartRecord(**{k: (str(v) if k in text else int(v)) for k, v in values.items()})


def is_complete_part(path, record: PartRecord) -> bool:
    """Whether ``path`` is already the output of this part (same part of the same input)."""
    if not os.path.isfile(path):
        return False
    try:
        return read_part_record(path) == record
    except (ValueError, OSError):
        return False


def check_part_set(records: dict) -> list[str]:
    """``{path: PartRecord or None}`` -> the files in part order; ``ValueError`` naming the
    files for the first broken rule of the module docstring."""
    if not records:
        raise ValueError("no part files given")
    missing = [p for p, r in records.items() if r is None]
    if missing:
        raise ValueError(f"not part outputs (no data_{PART_BLOCK} block): {', '.join(missing)}")
    (first, ref), *rest = records.items()
    other = [p for p, r in rest if not r.same_split(ref)]
    if other:
        raise ValueError(f"parts of different inputs or splits: {first} is part of "
                         f"{ref.n_parts} of {ref.n_input} particles (input {ref.digest}), "
                         f"unlike {', '.join(other)}")
    other = [p for p, r in rest if r.options != ref.options]
    if other:
        raise ValueError(f"parts made with different options: {first} unlike "
                         f"{', '.join(other)}")
    by_index = {}
    for path, record in records.items():
        if record.index in by_index:
            raise ValueError(f"part {record.index}/{ref.n_parts} given twice: "
                             f"{by_index[record.index]} and {path}")
        by_index[record.index] = path
    absent = [i for i in range(1, ref.n_parts + 1) if i not in by_index]
    if absent:
        raise ValueError(f"incomplete set: part(s) {', '.join(map(str, absent))} of "
                         f"{ref.n_parts} missing (given: {', '.join(records)})")
    for path, record in records.items():
        rows = part_rows(ref.n_input, record.index, ref.n_parts)
        if (record.first_row, record.stop_row) != (rows.start, rows.stop):
            raise ValueError(f"{path}: part {record.index}/{ref.n_parts} covers rows "
                             f"{record.first_row}..{record.stop_row - 1}, expected "
                             f"{rows.start}..{rows.stop - 1}")
    return [by_index[i] for i in range(1, ref.n_parts + 1)]


def merge_parts(paths, out_star) -> Particles:
    """Join part files (any order) into ``out_star`` in the input order; returns them."""
    paths = [os.fspath(p) for p in paths]
    if os.path.abspath(out_star) in {os.path.abspath(p) for p in paths}:
        raise ValueError(f"the merged output {out_star} is one of the parts")
    ordered = check_part_set({p: read_part_record(p) for p in paths})
    merged = concatenate_particles([read_particles_star(p) for p in ordered], ordered)
    write_particles_star(out_star, merged)
    return merged


# ----------------------------------------------------------------------------- joining
def _stack(values, paths, what):
    present = [v is not None for v in values]
    if any(present) and not all(present):
        raise ValueError(f"{what} only in some parts: "
                         f"{', '.join(p for p, v in zip(paths, present) if not v)} lack it")
    return np.concatenate(values) if all(present) else None


def _ctf(parts, paths):
    ctfs = [p.ctf for p in parts]
    if _stack([None if c is None else c.defocus_u_a for c in ctfs], paths, "CTF") is None:
        return None
    optics = {}
    for name in OPTICS_FIELDS:  # one float if every part agrees, else per particle
        values = [getattr(c, name) for c in ctfs]
        same = all(np.ndim(v) == 0 and v == values[0] for v in values)
        optics[name] = values[0] if same else np.concatenate([c.per_particle(name)
                                                              for c in ctfs])
    return CTFParams(
        defocus_u_a=np.concatenate([c.defocus_u_a for c in ctfs]),
        defocus_v_a=np.concatenate([c.defocus_v_a for c in ctfs]),
        defocus_angle_deg=np.concatenate([c.defocus_angle_deg for c in ctfs]),
        phase_shift_deg=_stack([c.phase_shift_deg for c in ctfs], paths, "rlnPhaseShift"),
        **optics)


def concatenate_particles(parts, paths) -> Particles:
    """One :class:`Particles` of ``parts`` (read from ``paths``) in order; image names are
    made relative to the first part's root; ``ValueError`` naming a part that differs."""
    first = parts[0]
    for part, path in zip(parts[1:], paths[1:]):
        if (part.box_px, part.pixel_size_a) != (first.box_px, first.pixel_size_a):
            raise ValueError(f"{path} has {part.box_px} px at {part.pixel_size_a} A, "
                             f"{paths[0]} {first.box_px} px at {first.pixel_size_a} A")
        if set(part.extra) != set(first.extra):
            raise ValueError(f"{path} and {paths[0]} have different columns: "
                             f"{sorted(set(part.extra) ^ set(first.extra))}")
    root = output_root(paths[0], first.root)
    names = [n for p in parts for n in relocate_image_names(p.image_names, p.root, root)]
    return Particles(
        image_names=names, pixel_size_a=first.pixel_size_a, box_px=first.box_px,
        angles_deg=_stack([p.angles_deg for p in parts], paths, "angles"),
        shifts_px=_stack([p.shifts_px for p in parts], paths, "shifts"),
        ctf=_ctf(parts, paths), root=root, optics=first.optics,
        extra={c: np.concatenate([np.asarray(p.extra[c]) for p in parts]) for c in first.extra},
        optics_group=_stack([p.optics_group for p in parts], paths, "rlnOpticsGroup"))
