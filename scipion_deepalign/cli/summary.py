"""The one-screen summary every ``deepalign`` command prints when it ends (stdout).

::

    deepalign subset: done in 0.4 s
      wrote train.star (30 of 300 particles)
      particles per region: 0-1 (median 1) over 42 regions

``wrote`` lines name every file written; ``add`` lines give the key numbers; ``stage``
records the time a stage took (listed in one ``time per stage`` line).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from ..core.runtime.progress import format_duration

__all__ = ["Summary", "spread"]


def spread(values, unit: str = "") -> str:
    """``"min-max (median m)"`` of ``values`` with ``unit`` (``"none"`` when empty)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return "none"
    return (f"{values.min():.3g}-{values.max():.3g}{unit} "
            f"(median {np.median(values):.3g}{unit})")


class Summary:
    """Lines of a command's summary, printed by :meth:`print`."""

    def __init__(self, command: str):
        self.command = command
        self.lines: list[str] = []
        self.stages: list[tuple[str, float]] = []
        self._start = time.perf_counter()

    def wrote(self, path, detail: str = "") -> Summary:
        self.lines.append(f"wrote {path}" + (f" ({detail})" if detail else ""))
        return self

    def add(self, label: str, value) -> Summary:
        self.lines.append(f"{label}: {value}")
        return self

    def stage(self, name: str, seconds: float) -> Summary:
        self.stages.append((name, float(seconds)))
        return self

    def text(self) -> str:
        seconds = time.perf_counter() - self._start
        lines = [f"deepalign {self.command}: done in {format_duration(seconds)}"] + self.lines
        if self.stages:
            lines.append("time per stage: " + ", ".join(
                f"{name} {format_duration(s)}" for name, s in self.stages))
        return "\n  ".join(lines)

    def print(self, stream=None) -> None:
        print(self.text(), file=sys.stdout if stream is None else stream, flush=True)

