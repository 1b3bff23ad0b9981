"""core.progress: log lines every ~10 % with rate and ETA off a terminal, a bar on one."""
import io
import logging

import pytest

from scipion_deepalign.core.runtime.progress import Progress, advance, format_duration


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def logger(caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    return logging.getLogger("test.progress")


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_off_a_terminal_one_line_per_ten_percent_with_rate_and_eta(logger, caplog):
    clock = _Clock()
    with Progress(1000, "align", logger=logger, stream=io.StringIO(), clock=clock) as p:
        for _ in range(100):
            clock.now += 0.2
            p(10)
    lines = _messages(caplog)
    assert len(lines) == 10
    assert lines[3] == "align: 40% (400 of 1000 particles), 50 particles/s, ETA 12.0 s"
    assert lines[-1] == "align: 100% (1000 of 1000 particles), 50 particles/s, 20.0 s in all"


def test_slow_items_give_seconds_per_item_and_info(logger, caplog):
    clock = _Clock()
    p = Progress(4, "train shared network", unit="epochs", logger=logger, clock=clock,
                 log_step=0.25)
    clock.now = 30.0
    p.update(1, loss=0.51234, val_accuracy=0.8)
    assert _messages(caplog) == ["train shared network: 25% (1 of 4 epochs), 30 s per epoch, "
                                 "ETA 1.5 min, loss=0.5123 val_accuracy=0.8"]


def test_big_updates_give_one_line_not_many(logger, caplog):
    p = Progress(100, "predict", logger=logger, stream=io.StringIO())
    p(55)
    p(45)
    assert [line.split(" (")[0] for line in _messages(caplog)] == ["predict: 55%", "predict: 100%"]


def test_quiet_logger_prints_nothing(caplog):
    quiet = logging.getLogger("test.progress.quiet")
    quiet.setLevel(logging.WARNING)
    stream = _TTY()
    with Progress(10, "x", logger=quiet, stream=stream) as p:
        p(10)
    assert stream.getvalue() == "" and not caplog.records


def test_terminal_gets_a_tqdm_bar_and_no_log_lines(logger, caplog):
    pytest.importorskip("tqdm")
    stream = _TTY()
    with Progress(50, "simulate", logger=logger, stream=stream) as p:
        for _ in range(5):
            p(10, loss=0.5)
    text = stream.getvalue()
    assert "simulate: 100%" in text and "50/50" in text and "particle/s" in text
    assert "loss=0.5" in text and not _messages(caplog)


def test_advance_ignores_none_and_format_duration():
    advance(None, 3)
    seen = []
    advance(lambda n, **kw: seen.append((n, kw)), 2, loss=1.0)
    assert seen == [(2, {"loss": 1.0})]
    assert [format_duration(s) for s in (4.21, 210, 4500)] == ["4.2 s", "3.5 min", "1.25 h"]


def test_summary_lists_files_numbers_and_stages():
    import io as _io

    from scipion_deepalign.cli.summary import Summary, spread

    summary = Summary("run").wrote("run1/aligned.star", "300 particles").wrote("run1/model")
    summary.add("score", "median 0.5").stage("train", 12.0).stage("align", 90.0)
    stream = _io.StringIO()
    summary.print(stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("deepalign run: done in ")
    assert lines[1:] == ["  wrote run1/aligned.star (300 particles)", "  wrote run1/model",
                         "  score: median 0.5", "  time per stage: train 12.0 s, align 1.5 min"]
    assert spread([1, 2, 6]) == "1-6 (median 2)" and spread([]) == "none"


def test_shares_add_up_and_the_whole_is_shown_only_when_done(logger, caplog):
    """Two weighted phases of one block (a search at 0.3, a refinement at 0.7) add up to the
    block; a remainder under one item is not rounded up to 100 %."""
    from scipion_deepalign.core.runtime.progress import share

    p = Progress(10, "align", logger=logger, stream=io.StringIO(), log_step=0.5)
    assert share(None, 0.5) is None
    search, refine = share(p, 0.3), share(p, 0.7)
    for _ in range(10):
        search(1)
    for _ in range(3):
        refine(10 / 3 - 0.2)  # 9.6 of 10 done
    assert p.done == 9 and not any("100%" in line for line in _messages(caplog))
    refine(0.6 / 0.7)
    assert p.done == 10 and _messages(caplog)[-1].startswith("align: 100% (10 of 10")
