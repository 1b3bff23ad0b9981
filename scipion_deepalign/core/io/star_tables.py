"""Generic STAR tables (through :mod:`emtable`): every block of a file, read as text, and
written atomically in RELION 3.1 layout.

Columns are read as text and converted with numpy (:func:`column_values`), because emtable's
type guess looks at the first row only and breaks on columns such as ``0`` followed by
``0.5``. emtable keeps rows as named tuples, so column names must be Python identifiers not
starting with ``_`` (``rlnAngleRot`` and the names of :mod:`.columns` are fine);
:func:`write_star_blocks` checks this.
"""
from __future__ import annotations

import os
import re

import numpy as np
from emtable import Table

from ..runtime.atomic import atomic_open

__all__ = ["read_star_blocks", "write_star_blocks", "column_values", "float_column"]

_DATA_LINE = re.compile(r"^data_(\S*)")


def read_star_blocks(path) -> dict:
    """All tables of a STAR file as ``{block name: {column: ndarray of str}}``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict of str to dict of str to ndarray of shape (rows,)
        Block names without ``data_`` (``""`` for a bare ``data_``); values are text, see
        :func:`column_values` to convert them.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    ValueError
        Naming ``path``: a file that is not text, has no ``data_`` block, has a block name
        twice (e.g. two STAR files joined: one would silently hide the other), or a table
        emtable cannot parse.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"STAR file not found: {path}")
    offsets = _block_offsets(path)
    if not offsets:
        raise ValueError(f"{path}: not a STAR file (no data_ block)")
    names = [name for name, _ in offsets]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: block data_{repeated[0]} appears {names.count(repeated[0])} "
                         "times (one table per block name: are two STAR files joined?)")
    blocks = {}
    with open(path) as f:
        for name, pos in offsets:
            f.seek(pos)
            table = Table()
            try:
                table.readStar(f, tableName=name, guessType=False)
            except Exception as exc:  # emtable raises bare Exceptions on malformed tables
                raise ValueError(f"{path}: cannot parse block data_{name} ({exc})") from exc
            cols = table.getColumnNames()
            rows = list(table)
            blocks[name] = {c: np.array([getattr(r, c) for r in rows], dtype=str)
                            for c in cols}
    return blocks


def _block_offsets(path) -> list:
    """``[(block name, offset of its data_ line)]`` in file order; ValueError naming ``path``
    when it is not text."""
    offsets = []
    try:
        with open(path) as f:
            while True:
                pos = f.tell()
                line = f.readline()
                if not line:
                    break
                m = _DATA_LINE.match(line)
                if m:
                    offsets.append((m.group(1), pos))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a STAR file (not {exc.encoding} text: byte "
                         f"0x{exc.object[exc.start]:02x}, {exc.reason})") from None
    return offsets


def column_values(texts) -> np.ndarray:
    """Text values as int64 when all are integers, else float64, else str."""
    texts = np.asarray(texts, dtype=str)
    for dtype in (np.int64, np.float64):
        try:
            return texts.astype(dtype)
        except ValueError:
            pass
    return texts


def float_column(block, name, path) -> np.ndarray:
    """Column ``name`` of ``block`` as float64; ``ValueError`` naming ``path`` if not numeric."""
    try:
        return block[name].astype(np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: column {name} is not numeric ({exc})") from exc



def _py(v):
    """numpy scalar -> Python scalar, so emtable formats floats with 6 decimals."""
    return v.item() if isinstance(v, np.generic) else v


def _write_table(f, name, columns: dict, *, single_row=False):
    table = Table(columns=list(columns))
    values = [np.asarray(v) for v in columns.values()]
    for i in range(len(values[0])):
        table.addRow(*[_py(v[i]) for v in values])
    table.writeStar(f, tableName=name, singleRow=single_row)


def write_star_blocks(path, blocks: dict, *, single_row=()) -> None:
    """Write ``{block name: {column: values}}`` as a RELION 3.1 STAR file, atomically.

    Column names must be Python identifiers (emtable keeps rows as named tuples).
    """
    path = os.fspath(path)
    for bname, cols in blocks.items():
        for c in cols:
            if not c.isidentifier() or c.startswith("_"):
                raise ValueError(f"STAR column name {c!r} (block {bname}) must be an "
                                 "identifier not starting with '_'")
        lengths = {len(np.atleast_1d(v)) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of block {bname} for {path} differ in length: "
                             f"{sorted(lengths)}")
    with atomic_open(path) as f:
        for bname, cols in blocks.items():
            f.write("\n# version 30001\n")
            cols = {c: np.atleast_1d(v) for c, v in cols.items()}
            _write_table(f, bname, cols, single_row=bname in single_row)
