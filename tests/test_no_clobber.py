"""Nothing lost, nothing silent: the one KEY=VALUE rule, the lock + no-clobber writer, feature-cache
integrity on read, and weights files never unpickled (issue 14; KEY=VALUE also issue 9 item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import write_jpeg

from cmhash.cli import main
from cmhash.errors import CmhashError, DataError, LockedError, UsageError
from cmhash.io import clean_stale_temps, refuse_existing, write_lock
from cmhash.validation import output_dir, output_file, parse_kv, parse_value

SRC = str(Path(__file__).resolve().parents[1] / "src")
TRAIN = ["train", "djsrh", "--dataset", "synthetic", "-o", "n=240", "--split-param", "num_query=40", "--split-param", "num_train=120",
         "--bits", "16", "--set", "hidden=32", "--no-progress", "--no-tensorboard", "--threads", "1"]


def _env():
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "CMHASH_THREADS": "1", "OMP_NUM_THREADS": "1"}


# ----------------------------------------------------------------------------- KEY=VALUE
@pytest.mark.parametrize(
    "text,value",
    [("600", 600), ("-3", -3), ("0.5", 0.5), ("1e-3", 1e-3), ("true", True), ("False", False), ("null", None), ("", ""),
     ("007", "007"), ("abc", "abc"), ("IAll/x.mat", "IAll/x.mat"), ("[0.5, 0.5]", [0.5, 0.5]), ("[]", []), ("a,b", "a,b"), ("yes", "yes")],
)
def test_one_typing_rule_for_key_value(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_every_command_types_key_value_options_alike():
    """`train -o n=600` and `data info -o n=600` give the same int (they used to differ)."""
    import argparse

    from cmhash.cli import build_parser
    from cmhash.cli.data import source_options
    from cmhash.cli.index import parse_kv as index_kv
    from cmhash.experiments.settings import parse_overrides

    args = build_parser().parse_args(["data", "info", "synthetic", "--root", ".", "-o", "n=600", "-o", "signal=0.5"])
    assert source_options(args) == {"n": 600, "signal": 0.5}
    assert parse_kv(["n=600", "signal=0.5"], "-o") == {"n": 600, "signal": 0.5}
    assert index_kv(["n=600", "signal=0.5"]) == {"n": 600, "signal": 0.5}
    assert parse_overrides(["n=600", "signal=0.5"]) == {"n": 600, "signal": 0.5}
    feat = build_parser().parse_args(["features", "extract", "--dataset", "x", "--data-root", ".", "--out", "o", "--source-option", "n=600"])
    assert dict(feat.source_option) == {"n": 600}
    assert isinstance(args, argparse.Namespace)


# ----------------------------------------------------------------------------- lock + no clobber
def test_output_paths_are_checked_before_any_work(tmp_path):
    """An output file must not be a folder, an output folder not a file, and neither may sit under a file."""
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert output_file(tmp_path / "new" / "out.npz", "--out") == tmp_path / "new" / "out.npz"
    assert output_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert output_dir(tmp_path, "--out") == tmp_path and output_file(None, "--out") is None
    with pytest.raises(UsageError, match="is a folder; give a file name"):
        output_file(tmp_path, "--out")
    with pytest.raises(UsageError, match="is a file; give a folder"):
        output_dir(a_file, "--out")
    for check in (output_file, output_dir):
        with pytest.raises(UsageError, match=f"--curves {a_file / 'x' / 'y'}: {a_file} is a file, not a folder"):
            check(a_file / "x" / "y", "--curves")


def test_write_lock_names_the_holder_and_dies_with_it(tmp_path):
    target = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cmhash.io import write_lock\n"
         "with write_lock(sys.argv[1], 'training run', is_dir=True):\n    print('held', flush=True); time.sleep(60)", str(target)],
        env=_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(LockedError, match=rf"process {holder.pid} is writing this training run") as info:
            with write_lock(target, "training run", is_dir=True):
                pass
        assert info.value.pid == holder.pid and time.perf_counter() - t0 < 1.0  # at once, no waiting
    finally:
        holder.kill()  # kill -9: the kernel drops the lock with the process
        holder.wait()
    with write_lock(target, "training run", is_dir=True) as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_refuse_existing_and_stale_temps(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")  # left by a kill -9 inside atomic_path
    assert refuse_existing(run, "a training run", resume=False) is False  # temp files are not a run
    (run / "metrics.json").write_text("{}")
    with pytest.raises(CmhashError, match="--resume to continue it or --overwrite"):
        refuse_existing(run, "a training run", resume=False)
    assert refuse_existing(run, "a training run", resume=True) is True
    with write_lock(run, is_dir=True):
        assert clean_stale_temps(run) == [run / ".checkpoint.pt.abc123.tmp"]
    index = tmp_path / "x.index"
    index.write_bytes(b"old")
    (tmp_path / ".x.index.q1.tmp").write_bytes(b"partial")
    (tmp_path / ".other.q2.tmp").write_bytes(b"someone else's")
    with pytest.raises(CmhashError, match="--overwrite to replace it"):
        refuse_existing(index, "an index")
    assert clean_stale_temps(index, is_dir=False) == [tmp_path / ".x.index.q1.tmp"]
    assert (tmp_path / ".other.q2.tmp").exists()


def test_train_refuses_a_finished_run_then_overwrite_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    first = (out / "checkpoint.pt").read_bytes()
    stale = out / "tensorboard"
    stale.mkdir()
    capsys.readouterr()
    assert main([*TRAIN, "--epochs", "2", "--out", str(out)]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == first
    assert main([*TRAIN, "--epochs", "1", "--out", str(out), "--resume"]) == 0  # a finished run is only re-evaluated
    assert main([*TRAIN, "--epochs", "2", "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    assert (out / "checkpoint.pt").read_bytes() != first and not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json", "train_log.csv"]


def test_a_second_training_into_the_same_folder_fails_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "cmhash", *TRAIN, "--epochs", "400", "--out", str(out)], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = out / ".cmhash.lock"
        deadline = time.time() + 60
        while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
            time.sleep(0.05)
        assert lock.exists(), "the first training never took its lock"
        capsys.readouterr()
        t0 = time.perf_counter()
        assert main([*TRAIN, "--epochs", "1", "--out", str(out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"process {first.pid} is writing this training run" in err and time.perf_counter() - t0 < 10
    finally:
        first.kill()
        first.wait()


def test_index_build_keeps_an_existing_index_unless_overwrite(tmp_path, capsys):
    from cmhash.codes_io import save_codes

    rng = np.random.default_rng(0)
    codes = tmp_path / "codes.npz"
    save_codes(codes, bits=16, meta={}, db_image=rng.choice([-1, 1], (30, 16)), db_text=rng.choice([-1, 1], (30, 16)),
               db_ids=np.arange(30).astype(str))
    out = tmp_path / "x.index"
    assert main(["index", "build", "--codes", str(codes), "--backend", "numpy", "--out", str(out)]) == 0
    before = out.read_bytes()
    (tmp_path / ".x.index.dead.tmp").write_bytes(b"left by a killed build")
    capsys.readouterr()
    assert main(["index", "build", "--codes", str(codes), "--backend", "numpy", "--out", str(out)]) == 2
    assert "already holds an index" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["index", "build", "--codes", str(codes), "--backend", "numpy", "--out", str(out), "--overwrite"]) == 0
    assert not (tmp_path / ".x.index.dead.tmp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npz", "x.index"]


# ----------------------------------------------------------------------------- feature-cache integrity
def _folder(tmp_path, n=10):
    data = tmp_path / "data"
    rows = ["image,text"] + [f"im{i}.jpg,picture {i}" for i in range(n)]
    for i in range(n):
        write_jpeg(data / f"im{i}.jpg", color=(25 * i, 80, 120))
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    return data


def _extract(data, out, capsys=None):
    return main(["features", "extract", "--dataset", "folder", "--data-root", str(data), "--image-encoder", "tiny-image",
                 "--text-encoder", "none", "--out", str(out), "--no-progress"])


def test_damaged_cache_is_reported_refused_and_rebuilt(tmp_path, capsys):
    from cmhash.features import FeatureCache

    data, cache = _folder(tmp_path), tmp_path / "cache"
    assert _extract(data, cache) == 0
    f = cache / "image_features.npy"
    good = f.read_bytes()
    entry = FeatureCache.load(cache).entries["image"]
    assert entry["bytes"] == len(good) and len(entry["sha256"]) == 64

    f.write_bytes(good[:-64])  # truncated
    c = FeatureCache.load(cache)
    assert "bytes, expected" in c.info()["entries"]["image"]["status"]
    with pytest.raises(DataError, match="damaged feature file"):
        c.features("image")
    capsys.readouterr()
    assert main(["features", "info", str(cache)]) == 0
    assert "damaged" in capsys.readouterr().out
    assert _extract(data, cache) == 0
    assert "is damaged" in capsys.readouterr().err and f.read_bytes() == good

    flipped = bytearray(good)  # same size, one value changed: only the checksum sees it
    flipped[-5] ^= 0xFF
    f.write_bytes(bytes(flipped))
    assert FeatureCache.load(cache).problem("image") is None
    assert "sha256" in FeatureCache.load(cache).problem("image", full=True)
    assert _extract(data, cache) == 0
    assert f.read_bytes() == good


def test_extraction_cleans_stale_temp_files_and_names_the_lock_holder(tmp_path):
    data, cache = _folder(tmp_path), tmp_path / "cache"
    cache.mkdir()
    (cache / ".manifest.json.x1.tmp").write_text("{")
    assert _extract(data, cache) == 0
    assert not list(cache.glob("*.tmp")) and not (cache / ".cmhash.lock").exists()


# ----------------------------------------------------------------------------- weights never unpickled
class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('CMHASH_EVIL_MARK', '/nonexistent/x')}",))


def test_weights_files_are_never_unpickled(tmp_path, monkeypatch):
    import torch

    from cmhash.safe_torch import efficientnet_from_file, load_weights

    mark = tmp_path / "pwned"
    monkeypatch.setenv("CMHASH_EVIL_MARK", str(mark))
    evil = tmp_path / "evil.pth"
    torch.save({"_fc.weight": _Evil()}, evil)
    with pytest.raises(DataError, match="never unpickles"):
        load_weights(evil)
    with pytest.raises(DataError, match="evil.pth"):
        efficientnet_from_file("efficientnet-lite0", evil)
    assert not mark.exists()
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(DataError, match="not efficientnet-lite0 weights"):
        efficientnet_from_file("efficientnet-lite0", wrong)


def test_unknown_index_option_lists_the_real_options():
    pytest.importorskip("faiss")
    from cmhash.index import create_index

    with pytest.raises(DataError, match=r"unknown option\(s\) colour; known: .*kind.*nprobe"):
        create_index("faiss", bits=16, colour="red")
