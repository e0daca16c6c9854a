"""Shared fixtures: the real data beside the project, when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

def _find_shared_data() -> Path:
    """``$CMHASH_SHARED_DATA``, else the first ``shared/data`` beside the checkout or an ancestor of it."""
    if os.environ.get("CMHASH_SHARED_DATA"):
        return Path(os.environ["CMHASH_SHARED_DATA"])
    root = Path(__file__).resolve().parents[1]
    for parent in root.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return root.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set CMHASH_SHARED_DATA to run this test)")
    return SHARED_DATA


def shared_subdir(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set CMHASH_SHARED_DATA to run this test)")
    return path
