"""The bad-input corpus (issue 14): every careless or hostile input a user may give the CLI.

Each case runs ``cmhash.cli.main`` in-process and must end with exit status 2, exactly one line on
stderr that names the file, row, field or flag at fault, no traceback, and every file that existed
before (a finished run, codes, an index, a feature cache, the data) byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import write_jpeg, write_mat_v5, write_mat_v73

from cmhash.cli import main

TRAIN = ["train", "djsrh", "--dataset", "synthetic", "-o", "n=240", "--split-param", "num_query=40", "--split-param", "num_train=120",
         "--epochs", "1", "--bits", "16", "--set", "hidden=32", "--no-progress", "--no-tensorboard", "--threads", "1"]


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the set of folders): the 'previous outputs'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished run, its codes and index, a folder dataset, its feature cache (then damaged), bad files."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    w = {"root": root}
    w["run"] = root / "run"
    assert main([*TRAIN, "--out", str(w["run"])]) == 0
    w["codes"] = root / "codes.npz"
    assert main(["encode", "--checkpoint", str(w["run"]), "--out", str(w["codes"]), "--threads", "1"]) == 0
    w["index"] = root / "run.index"
    assert main(["index", "build", "--codes", str(w["codes"]), "--backend", "numpy", "--out", str(w["index"])]) == 0

    # A folder dataset with labels, and a feature cache of it whose image features get truncated.
    data = root / "folder"
    rows = ["image,text,label"]
    for i in range(12):
        write_jpeg(data / f"im{i}.jpg", color=(20 * i, 100, 200 - 10 * i))
        rows.append(f"im{i}.jpg,photo number {i} of a {'cat' if i % 2 else 'dog'},{'cat' if i % 2 else 'dog'}")
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    w["folder"] = data
    w["cache"] = root / "cache"
    assert main(["features", "extract", "--dataset", "folder", "--data-root", str(data), "--image-encoder", "tiny-image",
                 "--text-encoder", "bow", "--text-option", "min_count=1", "--out", str(w["cache"]), "--no-progress"]) == 0
    f = w["cache"] / "image_features.npy"
    f.write_bytes(f.read_bytes()[:-100])

    # Bad files.
    bad = root / "bad"
    bad.mkdir()
    (bad / "quote.csv").write_text('image,text\nim0.jpg,"an unterminated quote\nim1.jpg,second row\nim2.jpg,third row\n')
    for i in range(3):
        write_jpeg(bad / f"im{i}.jpg")
    np.savez(bad / "noids.npz", image_features=np.ones((240, 8), np.float32))
    np.savez(bad / "complex.npz", image_features=np.ones((240, 8), np.complex64), ids=np.arange(240).astype(str))
    np.savez(bad / "pickled.npz", image_features=np.array([{"x": 1}] * 3, dtype=object))
    (bad / "garbage.npz").write_bytes(b"\x80\x04garbage, not a zip file" * 20)
    (bad / "garbage.pt").write_bytes(b"\x80\x02}q\x00garbage" * 20)
    (bad / "split.json").write_text('{"format": "cmhash-split", "protocol": ')
    (bad / "a_file").write_text("I am a file\n")
    rng = np.random.default_rng(0)
    for name, writer in (("mat73", write_mat_v73), ("mat5", write_mat_v5)):
        d = bad / name
        writer(d / "raw_features.mat", I_tr=rng.random((600, 64)), T_tr=rng.random((600, 40)), I_te=rng.random((90, 64)), T_te=rng.random((90, 40)))
        (d / "trainset_txt_img_cat.list").write_text("".join(f"t{i}\timg{i}\t{i % 10 + 1}\n" for i in range(600)))
        (d / "testset_txt_img_cat.list").write_text("".join(f"q{i}\tqimg{i}\t{i % 10 + 1}\n" for i in range(90)))
        m = d / "raw_features.mat"
        m.write_bytes(m.read_bytes()[: m.stat().st_size // 2])
    w["bad"] = bad
    return w


# (case id, argv with {placeholders}, text the one error line must contain)
CASES = [
    # runs are never overwritten by accident
    ("train-out-existing-run", [*TRAIN, "--out", "{run}"], "already holds a training run"),
    ("train-out-is-a-file", [*TRAIN, "--out", "{bad}/a_file"], "is a file"),
    ("train-resume-and-overwrite", [*TRAIN, "--out", "{run}", "--resume", "--overwrite"], "contradict"),
    # values
    ("train-seed-negative", [*TRAIN, "--seed", "-1", "--out", "{new}"], "--seed"),
    ("train-seed-huge", [*TRAIN, "--seed", str(2**64), "--out", "{new}"], "--seed"),
    ("train-seed-text", [*TRAIN, "--seed", "abc", "--out", "{new}"], "--seed"),
    ("train-set-beta-text", [*TRAIN, "--set", "beta=abc", "--out", "{new}"], "beta"),
    ("train-set-no-equals", [*TRAIN, "--set", "beta", "--out", "{new}"], "--set 'beta'"),
    ("train-split-param-text", [*TRAIN, "--split-param", "num_query=abc", "--out", "{new}"], "num_query"),
    ("train-split-param-unknown", [*TRAIN, "--split-param", "bogus=3", "--out", "{new}"], "bogus"),
    ("train-threads-negative", [*TRAIN, "--threads", "-1", "--out", "{new}"], "--threads"),
    ("train-workers-negative", [*TRAIN, "--workers", "-2", "--out", "{new}"], "--workers"),
    ("train-epochs-zero", [*TRAIN, "--epochs", "0", "--out", "{new}"], "--epochs"),
    ("train-device-tpu", [*TRAIN, "--device", "tpu", "--out", "{new}"], "--device"),
    ("train-bits-huge", [*TRAIN, "--bits", "100000", "--out", "{new}"], "--bits"),
    ("train-bits-zero", [*TRAIN, "--bits", "0", "--out", "{new}"], "--bits"),
    ("train-bits-twice", [*TRAIN, "--bits", "16,16", "--out", "{new}"], "listed twice"),
    ("train-bits-text", [*TRAIN, "--bits", "16,x", "--out", "{new}"], "--bits"),
    ("train-zero-queries", [*TRAIN, "--split-param", "num_query=0", "--out", "{new}"], "num_query=0"),
    ("train-num-train-capped", [*TRAIN, "--split-param", "num_train=100000", "--out", "{new}"], "num_train=100000"),
    ("train-unknown-dataset", ["train", "djsrh", "--dataset", "nosuch", "--out", "{new}"], "unknown data source 'nosuch'"),
    ("train-unknown-method", ["train", "nosuch", "--dataset", "synthetic", "--out", "{new}"], "nosuch"),
    ("train-unknown-variant", [*TRAIN, "--variant", "djsrh-99", "--out", "{new}"], "djsrh-99"),
    ("train-source-option-bad", [*TRAIN, "-o", "n=abc", "--out", "{new}"], "n"),
    ("train-source-option-unknown", [*TRAIN, "-o", "colour=red", "--out", "{new}"], "colour"),
    ("train-missing-data-root", ["train", "djsrh", "--dataset", "wiki", "--data-root", "{bad}/nothing", "--out", "{new}"], "does not exist"),
    # features files
    ("train-features-npz-without-ids", [*TRAIN, "--features", "{bad}/noids.npz", "--out", "{new}"], "no 'ids' array"),
    ("train-features-complex", [*TRAIN, "--features", "{bad}/complex.npz", "--out", "{new}"], "complex"),
    ("train-features-pickled", [*TRAIN, "--features", "{bad}/pickled.npz", "--out", "{new}"], "never unpickles"),
    ("train-features-garbage", [*TRAIN, "--features", "{bad}/garbage.npz", "--out", "{new}"], "garbage.npz"),
    ("train-features-missing", [*TRAIN, "--features", "{bad}/nothing.npz", "--out", "{new}"], "nothing.npz"),
    ("train-features-damaged-cache", ["train", "djsrh", "--dataset", "folder", "--data-root", "{folder}", "-o", "label_columns=label",
                                      "--features", "{cache}", "--out", "{new}", "--no-progress"], "damaged feature file"),
    ("train-split-file-garbage", [*TRAIN, "--split-file", "{bad}/split.json", "--out", "{new}"], "split.json"),
    # data sources
    ("data-info-unterminated-quote", ["data", "info", "folder", "--root", "{bad}", "--manifest", "quote.csv"], "line 2"),
    ("data-info-truncated-mat-v73", ["data", "info", "wiki", "--root", "{bad}/mat73"], "truncated or damaged"),
    ("data-info-truncated-mat-v5", ["data", "info", "wiki", "--root", "{bad}/mat5"], "truncated or damaged"),
    ("data-info-option-no-equals", ["data", "info", "synthetic", "--root", "{bad}", "-o", "n"], "-o 'n'"),
    ("data-split-out-is-folder", ["data", "split", "synthetic", "--root", "{bad}", "--protocol", "random", "--out", "{bad}"], "is a folder"),
    ("data-split-param-text", ["data", "split", "synthetic", "--root", "{bad}", "--protocol", "random", "--param", "num_query=x", "--out", "{new}.json"], "num_query"),
    ("data-split-seed-negative", ["data", "split", "synthetic", "--root", "{bad}", "--protocol", "random", "--seed", "-5", "--out", "{new}.json"], "--seed"),
    ("data-split-num-train-capped", ["data", "split", "synthetic", "--root", "{bad}", "--protocol", "random", "-o", "n=300",
                                     "--num-query", "50", "--num-train", "100000", "--out", "{new}.json"], "num_train=100000"),
    ("data-split-zero-queries", ["data", "split", "synthetic", "--root", "{bad}", "--protocol", "random", "--num-query", "0", "--out", "{new}.json"], "--num-query"),
    # encode / eval / index / search
    ("encode-out-is-folder", ["encode", "--checkpoint", "{run}", "--out", "{bad}"], "is a folder"),
    ("encode-garbage-checkpoint", ["encode", "--checkpoint", "{bad}/garbage.pt", "--out", "{new}.npz"], "garbage.pt"),
    ("encode-threads-zero", ["encode", "--checkpoint", "{run}", "--out", "{new}.npz", "--threads", "0"], "--threads"),
    ("eval-topk-zero", ["eval", "--codes", "{codes}", "--topk", "0"], "--topk"),
    ("eval-curves-is-folder", ["eval", "--codes", "{codes}", "--curves", "{bad}"], "is a folder"),
    ("eval-out-is-folder", ["eval", "--codes", "{codes}", "--out", "{bad}"], "is a folder"),
    ("eval-garbage-codes", ["eval", "--codes", "{bad}/garbage.npz"], "garbage.npz"),
    ("eval-radius-negative", ["eval", "--codes", "{codes}", "--radius", "-1"], "--radius"),
    ("index-build-out-is-folder", ["index", "build", "--codes", "{codes}", "--backend", "numpy", "--out", "{bad}"], "is a folder"),
    ("index-build-out-existing", ["index", "build", "--codes", "{codes}", "--backend", "numpy", "--out", "{index}"], "already holds an index"),
    ("index-build-threads-zero", ["index", "build", "--codes", "{codes}", "--out", "{new}.index", "--threads", "0"], "--threads"),
    ("index-build-option-unknown", ["index", "build", "--codes", "{codes}", "--dataset", "synthetic", "-o", "colour=red", "--out", "{new}.index"], "colour"),
    ("search-k-zero", ["search", "--index", "{index}", "--text", "dog", "--k", "0"], "--k"),
    ("search-garbage-index", ["search", "--index", "{bad}/garbage.npz", "--text", "dog"], "garbage.npz"),
    ("features-extract-batch-zero", ["features", "extract", "--dataset", "folder", "--data-root", "{folder}", "--image-encoder", "tiny-image",
                                     "--out", "{new}", "--batch-size", "0"], "--batch-size"),
    ("features-extract-option-no-equals", ["features", "extract", "--dataset", "folder", "--data-root", "{folder}", "--image-option", "size",
                                           "--out", "{new}"], "KEY=VALUE"),
    ("demo-n-negative", ["demo", "--n", "-5"], "--n"),
    ("reproduce-split-param-text", ["reproduce", "table1", "--methods", "djsrh", "--dataset", "synthetic", "--split-param", "num_query=x", "--out", "{new}"], "num_query"),
    ("reproduce-seeds-negative", ["reproduce", "table1", "--methods", "djsrh", "--dataset", "synthetic", "--seeds", "-1", "--report-only"], "--seeds"),
]


@pytest.mark.parametrize("case,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly_and_changes_nothing(world, case, argv, needle, capsys, tmp_path):
    fill = {k: str(v) for k, v in world.items()} | {"new": str(tmp_path / "new")}
    args = [a.format(**fill) for a in argv]
    before = _digest(world["root"])
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (case, code, err)
    assert len(lines) == 1, (case, err)
    assert "Traceback" not in err
    assert needle in lines[0], (case, lines[0])
    assert "weights_only=False" not in err and "allow_pickle=True" not in err
    assert _digest(world["root"]) == before, f"{case}: files changed"
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())
