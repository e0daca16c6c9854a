"""Atomic writes: replace only on success, leave the old file intact on failure, normal permissions."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from cmhash.io import atomic_open, read_json, save_npy, write_json


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    dest = tmp_path / "result.json"
    write_json(dest, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(dest) as fh:
            fh.write('{"v": 2')
            raise RuntimeError("crash mid-write")
    assert read_json(dest) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_atomic_files_get_umask_permissions_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_npy(tmp_path / "a.npy", np.arange(3))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert np.array_equal(np.load(path), np.arange(3))
