"""Location of the reference data beside the checkout (``../shared/data``); never copied in.

Tests that use it call :func:`shared_file`, which skips the test when the file is absent.
"""
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get(
    "DEEPALIGN_SHARED_DATA",
    Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def shared_file(*parts) -> Path:
    """Path of a file under ``../shared/data``; skips the calling test when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path
