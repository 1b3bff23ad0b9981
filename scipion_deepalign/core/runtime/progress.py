"""Progress of long steps: a bar on a terminal, INFO log lines everywhere else.

Every long loop of the package (simulation, prediction, alignment, training, reconstruction)
reports through a :class:`Progress`:

* on a terminal (``stream.isatty()``) with INFO logging on and ``tqdm`` installed: a tqdm
  bar with rate and ETA, and no log lines;
* otherwise (a pipe, a file, a Scipion step log): one INFO line on the logger each time
  another ``log_step`` of the total is done (default :data:`DEFAULT_LOG_STEP`, 10 %), e.g.
  ``align: 40% (400 of 1000 particles), 52.3 particles/s, ETA 12 s``;
* nothing when the logger does not show INFO (``deepalign -q``).

Core functions take a ``progress`` callable, called with the number of items just finished
(a :class:`Progress` is one; None reports nothing), so the core never decides how progress
is shown. ``tqdm`` is imported only when a bar is drawn.
"""
from __future__ import annotations

import logging
import sys
import time

__all__ = ["Progress", "DEFAULT_LOG_STEP", "set_log_step", "format_duration", "advance",
           "share"]

DEFAULT_LOG_STEP = 0.10
_settings = {"log_step": DEFAULT_LOG_STEP}
_LOGGER = logging.getLogger("scipion_deepalign.progress")


def set_log_step(fraction: float) -> None:
    """Fraction of the total between two progress log lines, for every later :class:`Progress`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"log step must be in (0, 1], got {fraction}")
    _settings["log_step"] = float(fraction)


def format_duration(seconds: float) -> str:
    """``"4.2 s"``, ``"3.5 min"`` or ``"1.25 h"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def advance(progress, n: int = 1, **info) -> None:
    """Call ``progress(n, **info)`` unless ``progress`` is None (for core loops)."""
    if progress is not None:
        progress(n, **info)


def share(progress, fraction: float):
    """``progress`` for a part of the work that counts as ``fraction`` of its items: called
    with ``n``, it reports ``n * fraction`` (None stays None). Phases of one loop (a search,
    then a refinement) weighted by their work add up to the whole this way."""
    if progress is None:
        return None
    fraction = float(fraction)
    return lambda n=1, **info: progress(n * fraction, **info)


class Progress:
    """Progress of ``total`` items of one step, shown as a bar or as log lines.

    Parameters
    ----------
    total : int
        Items the step will do (particles, epochs, ...).
    label : str
        Name of the step, first word of every line (``"align"``).
    unit : str, keyword-only
        Plural name of the items (``"particles"``).
    logger : logging.Logger, keyword-only
        Where the lines go (default ``scipion_deepalign.progress``).
    log_step : float, keyword-only
        Fraction of ``total`` between lines (default: :func:`set_log_step`'s, 10 %).
    stream : file, keyword-only
        Where a bar would be drawn (default ``sys.stderr``); no bar unless it is a TTY.
    clock : callable, keyword-only
        Seconds, for tests (default ``time.perf_counter``).

    Use as a context manager, or call :meth:`close`; ``progress(n, **info)`` is
    :meth:`update`.
    """

    def __init__(self, total: int, label: str, *, unit: str = "particles", logger=None,
                 log_step: float | None = None, stream=None, clock=time.perf_counter):
        self.total, self.label, self.unit = max(int(total), 0), label, unit
        self.logger = _LOGGER if logger is None else logger
        self.step = _settings["log_step"] if log_step is None else float(log_step)
        self.done, self._exact, self._clock = 0, 0.0, clock
        self._start = clock()
        self._next = self._threshold(1)
        self._bar = self._make_bar(sys.stderr if stream is None else stream)

    def _threshold(self, k: int) -> int:
        return max(1, int(round(k * self.step * self.total)))

    def _make_bar(self, stream):
        if not (self.logger.isEnabledFor(logging.INFO) and _isatty(stream)):
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.total, desc=self.label, unit=self.unit.rstrip("s") or "it",
                    file=stream, dynamic_ncols=True, leave=True)

    def __call__(self, n: int = 1, **info) -> None:
        self.update(n, **info)

    def update(self, n: int = 1, **info) -> None:
        """``n`` more items done; ``info`` (e.g. ``loss=0.3``) is shown with the rate.

        ``n`` may be fractional (a share of a block of work); whole items are shown."""
        self._exact += n
        # whole items only once done (not rounded up: 100 % only at the very end)
        before, self.done = self.done, min(int(self._exact + 1e-6), self.total)
        if self._bar is not None:
            if info:
                self._bar.set_postfix({k: _short(v) for k, v in info.items()}, refresh=False)
            self._bar.update(self.done - before)
            return
        if self.done == before and not info:
            return
        if self.done >= self._next or self.done >= self.total:
            self.logger.info("%s", self.line(info))
            k = 1
            while self._threshold(k) <= self.done:
                k += 1
            self._next = self._threshold(k) if self.done < self.total else float("inf")

    def line(self, info=None) -> str:
        """The log line for the items done so far."""
        elapsed = max(self._clock() - self._start, 1e-9)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.label}: {percent:.0f}% ({self.done} of {self.total} {self.unit}), "
        text += _rate(self.done / elapsed, self.unit)
        if self.done < self.total and self.done:
            text += f", ETA {format_duration((self.total - self.done) * elapsed / self.done)}"
        else:
            text += f", {format_duration(elapsed)} in all"
        if info:
            text += ", " + " ".join(f"{k}={_short(v)}" for k, v in info.items())
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _rate(per_second: float, unit: str) -> str:
    if per_second >= 100:
        return f"{per_second:.0f} {unit}/s"
    if per_second >= 1 or per_second == 0:
        return f"{per_second:.3g} {unit}/s"
    return f"{1 / per_second:.3g} s per {unit.rstrip('s')}"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
