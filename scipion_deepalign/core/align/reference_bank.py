"""The prepared references of every gallery direction (:class:`ReferenceBank`), made once per
alignment by :meth:`.search.Search.reference_bank` and sliced by every block of particles."""
from __future__ import annotations

import numpy as np

__all__ = ["ReferenceBank"]


class ReferenceBank:
    """The prepared references of every gallery direction, made once per alignment.

    Every block of particles meets the same directions again: slicing their rows is much
    cheaper than rotating and transforming them for each block. The power ``|R(k)|**2`` is
    recomputed from the rows taken.
    """

    def __init__(self, matrix, n_psi: int, *, with_power: bool):
        self.matrix, self.n_psi, self.with_power = matrix, int(n_psi), with_power

    def subset(self, directions, *, xp) -> ReferenceBank:
        """The bank of gallery directions ``directions`` (indices into this one), in that
        order, gathered on the bank's device (``xp``): the references of a second search over
        directions this bank holds, instead of preparing them again."""
        return ReferenceBank(self.matrix[xp.asarray(self.rows_of(directions))], self.n_psi,
                             with_power=self.with_power)

    def rows_of(self, directions) -> np.ndarray:
        """The bank's rows of gallery directions ``directions`` (indices), every in-plane copy
        of each, direction-major as :meth:`.search.Search.references` lays them out."""
        directions = np.asarray(directions, dtype=np.int64)
        return (directions[:, None] * self.n_psi + np.arange(self.n_psi)).ravel()

    def take(self, start: int, stop: int):
        """``(matrix, power)`` of the in-plane copies of gallery directions ``start:stop``, in
        the layout of :meth:`.search.Search.references` (direction-major, then in-plane angle)."""
        return self.references(self.matrix[start * self.n_psi:stop * self.n_psi])

    def references(self, matrix):
        """``(matrix, power)`` of rows taken from this bank: the power ``|R(k)|**2`` where the
        bank carries it, else None."""
        if not self.with_power:
            return matrix, None
        f = matrix.shape[1] // 2
        return matrix, matrix[:, :f] ** 2 + matrix[:, f:] ** 2
