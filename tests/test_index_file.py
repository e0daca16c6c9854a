"""The index file: corrupt or truncated files give clear errors; a crashed save keeps the old file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cmhash.errors import DataError, MissingFileError
from cmhash.index import create_index, load_index
from cmhash.index import container

SRC = str(Path(__file__).resolve().parents[1] / "src")


def saved_index(tmp_path, backend="numpy", n=500, **opts):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, (n, 64), dtype=np.uint8)
    index = create_index(backend, bits=64, **opts)
    index.add([f"id{i}" for i in range(n)], codes, metadata=[{"i": i} for i in range(n)])
    path = index.save(tmp_path / "codes.index")
    return path, index, codes


def test_manifest_records_what_the_index_is(tmp_path):
    path, index, _ = saved_index(tmp_path)
    m = container.read_manifest(path)
    assert m["format"] == "cmhash-index" and m["kind"] == "binary"
    assert m["backend"] == "numpy" and m["bits"] == 64 and m["count"] == 500 and m["id_kind"] == "str"
    names = {s["name"]: s for s in m["sections"]}
    assert set(names) == {"ids", "metadata", "codes"}
    assert names["codes"]["shape"] == [500, 8] and len(names["codes"]["sha256"]) == 64


@pytest.mark.parametrize("cut", [1, 20, 2000])
def test_truncated_file_is_detected(tmp_path, cut):
    path, _, _ = saved_index(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(DataError, match="truncated"):
        load_index(path)


def test_tiny_or_foreign_files(tmp_path):
    path, _, _ = saved_index(tmp_path)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataError, match="truncated"):
        load_index(path)
    other = tmp_path / "other.index"
    other.write_bytes(b"PK\x03\x04 this is a zip, not an index" * 10)
    with pytest.raises(DataError, match="not a cmhash index file"):
        load_index(other)
    with pytest.raises(MissingFileError, match="index file not found"):
        load_index(tmp_path / "nope.index")
    with pytest.raises(DataError, match="is a folder"):
        load_index(tmp_path)


def test_flipped_byte_in_a_section_fails_its_checksum(tmp_path):
    path, _, _ = saved_index(tmp_path)
    m = container.read_manifest(path)
    codes = next(s for s in m["sections"] if s["name"] == "codes")
    data = bytearray(path.read_bytes())
    data[codes["offset"] + 100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="section 'codes' is corrupt \\(checksum mismatch\\)"):
        load_index(path)
    # verify=False skips the checksums (fast open of a trusted file) and loads the flipped bit
    assert load_index(path, verify=False).count == 500


def test_flipped_byte_in_the_manifest(tmp_path):
    path, _, _ = saved_index(tmp_path)
    data = bytearray(path.read_bytes())
    data[-60] ^= 0x20  # inside the manifest JSON, just before the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="manifest is corrupt"):
        load_index(path)


def test_newer_format_version_is_refused(tmp_path):
    path, _, _ = saved_index(tmp_path)
    data = bytearray(path.read_bytes())
    data[8:12] = (99).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="version 99 is newer"):
        load_index(path)


def test_failed_save_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path, index, codes = saved_index(tmp_path)
    before = path.read_bytes()
    index.add(["new"], codes[:1])
    calls = []

    def failing_write(fh, chunk):
        calls.append(len(chunk))
        if len(calls) > 2:
            raise OSError("disk full")
        fh.write(chunk)

    monkeypatch.setattr(container, "_write_chunk", failing_write)
    monkeypatch.setattr(container, "_CHUNK", 256)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.index"]
    assert load_index(path).count == 500


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_killed_save_keeps_previous_index(tmp_path, backend):
    """SIGKILL a process in the middle of saving over an existing index: the old index still loads."""
    path, index, codes = saved_index(tmp_path, backend=backend, n=3000)
    old_result = index.search(codes[:5], 10)
    started = tmp_path / "save-started"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import numpy as np
        sys.path.insert(0, {SRC!r})
        from cmhash.index import load_index, container

        index = load_index({str(path)!r})
        index.add(["extra%d" % i for i in range(1000)], np.ones((1000, 64), np.uint8))

        def slow_write(fh, chunk):
            fh.write(chunk)
            fh.flush()
            Path({str(started)!r}).touch()
            time.sleep(0.5)

        container._write_chunk = slow_write
        container._CHUNK = 4096
        index.save({str(path)!r})
        print("save finished", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not started.exists():
            if proc.poll() is not None:
                raise AssertionError(f"saver exited early: {proc.communicate()}")
            if time.time() > deadline:
                raise AssertionError("saver never started writing")
            time.sleep(0.02)
        time.sleep(0.3)  # a chunk or two into the new file
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and b"save finished" not in out
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".codes.index.")]
    assert leftovers, "the killed save should have been writing a temporary file"
    loaded = load_index(path)  # the previous index, intact and verified
    assert loaded.count == 3000 and not loaded.contains(["extra0"]).any()
    new_result = loaded.search(codes[:5], 10)
    np.testing.assert_array_equal(new_result[0], old_result[0])
    np.testing.assert_array_equal(new_result[1], old_result[1])
