"""The gallery search of one block of particles: every particle against every reference of its
tiles, the running N best kept (:class:`.search.BestPoses`).

Two schedules give the same comparisons, hence the same poses:

* **by tile sets** (:func:`search_by_tile_sets`, whenever the prepared references of every
  direction fit in a :class:`.reference_bank.ReferenceBank`): the particles are grouped by the
  set of gallery groups they search (identical for particles with the same regions), and each
  group meets all its references in large GEMMs, the references gathered from the bank by
  index. No loop over regions or tiles: one GEMM per group and chunk of references, the same code on
  numpy and cupy (the bank lives on the device).
* **by gallery groups** (:func:`search_by_gallery_groups`): for every group of tiles, its
  particles against its references (sliced from the bank, or prepared chunk by chunk when the
  bank would be too large). Used when the tile sets hold few particles each (fewer than
  :data:`MIN_PARTICLES_PER_SET` on average: a GEMM over a handful of particles reads all the
  references for little work, and gathering them costs more than it saves), and without a bank.

A comparison is one (particle, reference direction, in-plane angle) triple, counted as the
search makes it (:mod:`.cost`).
"""
from __future__ import annotations

import numpy as np

from ..runtime.progress import advance
from .search import BestPoses

__all__ = ["REFS_PER_CHUNK", "MIN_PARTICLES_PER_SET", "wants_bank", "search_block",
           "block_comparisons", "search_by_tile_sets", "search_by_gallery_groups",
           "tile_set_groups"]

#: references (direction x in-plane angle) met by a GEMM at once
REFS_PER_CHUNK = 2048
#: particles per tile set, on average, from which the search by tile sets is used: below it,
#: each GEMM reads a set's references for a handful of particles (memory-bound) and the gather
#: is a fifth of the time; on 2 shared CPU cores at 17 particles per set the two schedules were
#: within the load's noise (docs/benchmarks_align.md); the GPU's case is many particles per set
MIN_PARTICLES_PER_SET = 32


def search_block(engine, galleries, bank, spectra, power, rows, n_best, progress=None):
    """Running N best of the block of particles ``rows`` over their galleries.

    Parameters
    ----------
    engine : search.Search
    galleries : gallery.GalleryGroups
    bank : reference_bank.ReferenceBank or None
        Prepared references of every gallery direction; ``None`` prepares them chunk by chunk
        (:func:`search_by_gallery_groups`).
    spectra, power : arrays of shape (n, F)
        :meth:`Search.particles` of the block (``power`` None without a CTF on references).
    rows : int ndarray of shape (n,)
        Consecutive particle indices of the block (``galleries.members`` hold such indices).
    n_best : int
    progress : callable, optional

    Returns
    -------
    best : BestPoses
        ``ref`` indices are gallery direction index * P + in-plane index.
    n_comparisons : int
    """
    local = [m[(m >= rows[0]) & (m <= rows[-1])] - rows[0] for m in galleries.members]
    if bank is not None:
        sets = tile_set_groups(local, len(spectra))
        if len(spectra) >= MIN_PARTICLES_PER_SET * max(1, len(sets)):
            return search_by_tile_sets(engine, galleries, bank, spectra, power, local, n_best,
                                       progress, sets=sets)
    return search_by_gallery_groups(engine, galleries, spectra, power, local, n_best, progress,
                                    bank=bank)


def block_comparisons(galleries, rows, n_psi: int) -> int:
    """The comparisons :func:`search_block` makes for the block of particles ``rows``
    (consecutive), known before it runs: every (direction, in-plane angle) of their tiles."""
    return int(n_psi) * sum(int(((m >= rows[0]) & (m <= rows[-1])).sum()) * (hi - lo)
                            for m, (lo, hi) in zip(galleries.members, galleries.bounds))


def wants_bank(galleries, n: int, block_size: int, *, follows: bool = False) -> bool:
    """Whether a :class:`.reference_bank.ReferenceBank` pays for its memory: when several
    blocks meet the same references, when a second search around the kept poses (``follows``)
    meets them again, or when the one block is searched by tile sets (each reference met by several
    sets) over more than one gallery group. Otherwise every chunk of references is prepared
    once anyway, as it is met."""
    if n > block_size or follows:
        return True
    if len(galleries.bounds) < 2:
        return False
    return n >= MIN_PARTICLES_PER_SET * max(1, len(tile_set_groups(galleries.members, n)))


def tile_set_groups(local, n: int) -> list:
    """Particles that search the same gallery groups, and those groups.

    Parameters
    ----------
    local : list of G int ndarrays
        Particles (0-based in the block) of each gallery group.
    n : int
        Particles in the block.

    Returns
    -------
    list of (particles, groups) int ndarrays, every particle that searches something once.
    """
    need = np.zeros((n, max(1, len(local))), dtype=bool)
    for g, members in enumerate(local):
        need[members, g] = True
    searched = np.flatnonzero(need.any(axis=1))
    if len(searched) == 0:
        return []
    packed = np.packbits(need[searched], axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    splits = np.cumsum(np.bincount(inverse))[:-1]
    return [(searched[part], np.flatnonzero(need[searched[first[u]]]))
            for u, part in enumerate(np.split(order, splits))]


def search_by_tile_sets(engine, galleries, bank, spectra, power, local, n_best,
                        progress=None, *, sets=None):
    """:func:`search_block` with the references of each particle group gathered from ``bank``
    (``local``: the block's particles of every gallery group; ``sets``: their
    :func:`tile_set_groups`, computed when None)."""
    n = len(spectra)
    best = BestPoses(n, n_best)
    groups = tile_set_groups(local, n) if sets is None else sets
    p = engine.n_psi
    work = max(1, sum(len(who) * sum(galleries.bounds[g][1] - galleries.bounds[g][0]
                                     for g in tiles) for who, tiles in groups))
    n_comparisons = 0
    for who, tiles in groups:
        directions = np.concatenate([np.arange(*galleries.bounds[g]) for g in tiles])
        refs = bank.rows_of(directions)
        for r0 in range(0, len(refs), REFS_PER_CHUNK):
            chunk = refs[r0:r0 + REFS_PER_CHUNK]
            references = _gather(bank, chunk, engine.xp)
            n_comparisons += engine.keep_best(spectra, power, who, references, best,
                                              ref_base=r0)
            advance(progress, n * len(who) * len(chunk) / (p * work))
        best.ref[who] = refs[best.ref[who]]  # positions in the group's list -> gallery refs
    return best, n_comparisons


def _gather(bank, refs, xp):
    """``(matrix, power)`` of the bank's references ``refs`` (as :meth:`ReferenceBank.take`):
    a slice where they are consecutive, else gathered on the bank's device."""
    if refs[-1] - refs[0] + 1 == len(refs):
        matrix = bank.matrix[int(refs[0]):int(refs[-1]) + 1]
    else:
        matrix = bank.matrix[xp.asarray(refs)]
    return bank.references(matrix)


def search_by_gallery_groups(engine, galleries, spectra, power, local, n_best, progress=None,
                             *, bank=None):
    """:func:`search_block` group of tiles by group of tiles, the references of each chunk of
    directions sliced from ``bank`` or, without one, prepared from the projections."""
    n = len(spectra)
    best = BestPoses(n, n_best)
    work = max(1, sum(len(i) * (hi - lo) for i, (lo, hi) in zip(local, galleries.bounds)))
    chunk = max(1, REFS_PER_CHUNK // engine.n_psi)
    n_comparisons = 0
    for idx, (lo, hi) in zip(local, galleries.bounds):
        if len(idx) == 0:
            continue
        for d0 in range(lo, hi, chunk):
            d1 = min(hi, d0 + chunk)
            refs = (bank.take(d0, d1) if bank is not None
                    else engine.references(galleries.projections[d0:d1]))
            n_comparisons += engine.keep_best(spectra, power, idx, refs, best,
                                              ref_base=d0 * engine.n_psi)
            advance(progress, n * len(idx) * (d1 - d0) / work)  # the particles' share
    return best, n_comparisons
