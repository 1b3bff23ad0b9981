"""Defaults and choice lists shared by every face of DeepAlign: one place per fact.

The GUI forms (``protocols/``), the command line (``cli/``) and the wizards read their
defaults here or from :class:`~scipion_deepalign.core.cnn.config.TrainConfig`, so that a
value cannot differ between them (``tests/test_defaults.py`` compares the CLI parsers with
the protocol forms). Light module: no Keras, no Scipion.
"""
from __future__ import annotations

from dataclasses import fields

from .align.local_refinement import REFINE
from .align.matching import CTF_MODES
from .cnn.config import HEADS, LOSSES, NETWORKS, TRAINING_SOURCES, TRUNKS, TrainConfig
from .runtime.backend import DEVICES

__all__ = ["NETWORKS", "LOSSES", "HEADS", "TRUNKS", "TRAINING_SOURCES", "CTF_MODES", "DEVICES",
           "REGION_SPACING_DEG", "TOP_K", "PROPOSED_TARGET_RESOLUTION_A",
           "MAX_SHIFT_BOX_FRACTION", "CONSENSUS_MAX_ANGLE_DEG", "train_default",
           "default_max_shift_px", "RECONSTRUCT_THREADS", "REFINE"]

#: angular distance between neighbouring region centres (degrees); 30 gives 42 regions in c1
REGION_SPACING_DEG = 30.0
#: the training resolution the Train form proposes (Å); the CLI keeps a 24 px input unless
#: --target-resolution or --box is given (tests/scipion/test_forms.py KNOWN_DIFFERENCES)
PROPOSED_TARGET_RESOLUTION_A = 8.0
#: regions kept per particle (with their probabilities) by the prediction: as many as the
#: default adaptive search may use (``search_plan.SearchOptions.max_regions``); the paper and
#: Xmipp kept 2 and searched both
TOP_K = 6
#: largest shift searched, as a fraction of the particle box, when none is given
MAX_SHIFT_BOX_FRACTION = 1.0 / 8.0
#: threads of a reconstruction: the two half maps gridded side by side. Measured on 2 free
#: cores, 2 000 particles at 64 px with CTF: 1 thread 538, 2 threads 829 particles/s
#: (docs/benchmarks.md)
RECONSTRUCT_THREADS = 2
#: consensus: largest angle between projection directions for two poses to agree (degrees)
CONSENSUS_MAX_ANGLE_DEG = 10.0
# Choice lists re-exported from the module that implements them (one definition each):
# NETWORKS, LOSSES, HEADS, TRUNKS, TRAINING_SOURCES (cnn.config, TrainConfig's fields), DEVICES
# (backend: "auto", "cpu", "gpu"), CTF_MODES (matching: CTF on the references;
# phase-flip the particles first; particles already phase-flipped, |CTF| on the references).
# REFINE (local_refinement): alignments refine their poses by default, after a coarser gallery.


def train_default(name: str):
    """Default of the :class:`TrainConfig` field ``name`` (KeyError naming it if unknown)."""
    for field in fields(TrainConfig):
        if field.name == name:
            return field.default
    raise KeyError(f"TrainConfig has no field {name!r}")


def default_max_shift_px(box_px: int) -> float:
    """Largest shift searched when none is given: :data:`MAX_SHIFT_BOX_FRACTION` of the box."""
    return float(box_px) * MAX_SHIFT_BOX_FRACTION
