"""Figure plumbing shared by :mod:`.curves` and :mod:`.sphere` (private)."""
from __future__ import annotations

from matplotlib.figure import Figure

__all__ = ["figure", "finish", "curve_labels"]

DPI = 110


def figure(fig, figsize):
    """A new constrained-layout Figure, or ``fig`` cleared and switched to constrained layout
    (a Scipion viewer's pyplot figure), so that titles, labels and colour bars never overlap."""
    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    fig.clear()
    fig.set_layout_engine("constrained")
    return fig


def finish(fig, path):
    """Save to ``path`` (format from its extension: .png, .svg, .pdf) if given; return fig."""
    if path is not None:
        fig.savefig(path, dpi=DPI)
    return fig


def curve_labels(labels, n, default):
    """``labels`` checked against ``n`` curves, or ``"<default> 1"``, ``"<default> 2"``..."""
    if labels is None:
        return [f"{default} {i + 1}" for i in range(n)]
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for {n} curves")
    return labels
