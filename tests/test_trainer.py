"""The shared training loop and the CLI built on it: resume, seeds, logs, validation, DDP, train/encode/reproduce."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cmhash.cli import main as cli
from cmhash.data.dataset import PairedDataset
from cmhash.errors import CmhashError, DataError
from cmhash.methods import create_method
from cmhash.inference import load_checkpoint
from cmhash.training.checkpoint import read_payload
from cmhash.training.trainer import LOG_CSV, TrainConfig, Trainer, epoch_batches

torch.set_num_threads(1)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def tiny(n=160, classes=4, seed=0) -> PairedDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    img = np.maximum(rng.normal(0, 0.3, (n, 24)) + np.eye(classes, 24)[y] * 2, 0).astype(np.float32)
    txt = np.maximum(rng.normal(0, 0.05, (n, 10)) + np.eye(classes, 10)[y], 0).astype(np.float32)
    return PairedDataset(name="tiny", ids=np.arange(n).astype(str), image_features=img, text_features=txt, labels=np.eye(classes, dtype=np.uint8)[y])


def write_tiny_wiki(root: Path, n_tr=160, n_te=40, seed=0) -> Path:
    """A miniature of the official Wiki files (raw_features.mat + list files), clustered by class."""
    import scipy.io as sio

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays, lines = {}, {}
    for part, n in (("tr", n_tr), ("te", n_te)):
        y = rng.integers(0, 4, n)
        arrays[f"I_{part}"] = np.maximum(rng.normal(0, 0.3, (n, 24)) + np.eye(4, 24)[y] * 2, 0)
        arrays[f"T_{part}"] = np.maximum(rng.normal(0, 0.05, (n, 10)) + np.eye(4, 10)[y], 0)
        lines[part] = [f"{part}txt{i}\t{part}img{i}\t{y[i] + 1}" for i in range(n)]
    sio.savemat(root / "raw_features.mat", arrays)
    (root / "trainset_txt_img_cat.list").write_text("\n".join(lines["tr"]) + "\n")
    (root / "testset_txt_img_cat.list").write_text("\n".join(lines["te"]) + "\n")
    return root


def _cfg(tmp, **kw):
    base = dict(epochs=4, batch_size=32, seed=0, run_dir=None if tmp is None else str(tmp), progress=False, tensorboard=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _method(**kw):
    return create_method("djsrh", 16, hidden=32, lr_image=0.01, lr_text=0.01, **kw)


def _fit(ds, cfg, **kw):
    m = _method(**kw)
    Trainer(m, ds, cfg, spec=m.input_spec_for(ds)).fit()
    return m


def _same_weights(a, b) -> bool:
    sa, sb = a.nets.state_dict(), b.nets.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------- loop
def test_epoch_batches_drop_last_same_permutation_and_disjoint_rank_shards():
    b = epoch_batches(100, 32, seed=3, epoch=2)
    assert b.shape == (3, 32) and len(set(b.flatten().tolist())) == 96  # drop_last, no repeats
    assert torch.equal(b, epoch_batches(100, 32, seed=3, epoch=2))
    assert not torch.equal(b, epoch_batches(100, 32, seed=3, epoch=3))
    r0, r1 = epoch_batches(100, 32, 3, 2, rank=0, world_size=2), epoch_batches(100, 32, 3, 2, rank=1, world_size=2)
    assert r0.shape == r1.shape == (1, 32)
    assert torch.equal(r0[0], b[0]) and torch.equal(r1[0], b[1])
    with pytest.raises(CmhashError, match="fewer than one batch"):
        epoch_batches(20, 32, 0, 1)


def test_resume_after_an_interruption_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    ds = tiny()
    straight = _fit(ds, _cfg(tmp_path / "a"))
    orig = Trainer._run_epoch

    def crash_in_epoch_3(self, epoch, *args):
        if epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        return orig(self, epoch, *args)

    monkeypatch.setattr(Trainer, "_run_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _fit(ds, _cfg(tmp_path / "b"))
    partial = read_payload(tmp_path / "b" / "checkpoint.pt")
    assert partial["epoch"] == 2 and not partial["finished"] and "optimizers" in partial and "rng" in partial
    monkeypatch.setattr(Trainer, "_run_epoch", orig)
    resumed = _fit(ds, _cfg(tmp_path / "b", resume=True))
    assert _same_weights(straight, resumed)  # bit-identical on CPU
    np.testing.assert_array_equal(straight.encode(ds, "image"), resumed.encode(ds, "image"))
    assert [r["loss"] for r in straight.history] == [r["loss"] for r in resumed.history]
    # resuming with other settings is refused with a clear message
    with pytest.raises(CmhashError, match="cannot resume.*beta"):
        Trainer(_method(beta=0.2), ds, _cfg(tmp_path / "b", resume=True), spec=_method().input_spec_for(ds)).fit()


def test_same_seed_repeats_exactly_and_another_seed_differs(tmp_path):
    ds = tiny()
    a = _fit(ds, _cfg(None, epochs=2))
    b = _fit(ds, _cfg(None, epochs=2))
    c = _fit(ds, _cfg(None, epochs=2, seed=1))
    assert _same_weights(a, b) and not _same_weights(a, c)


def test_log_checkpoint_and_validation_rows(tmp_path):
    ds = tiny()
    calls = []

    def validator(method):
        calls.append(len(method.history))
        return {"val_i2t_map@50": 0.5, "val_t2i_map@50": 0.25}

    m = _method()
    Trainer(m, ds, _cfg(tmp_path, eval_every=2), spec=m.input_spec_for(ds), validator=validator, meta={"hello": "world"}).fit()
    assert calls == [1, 3]  # after epochs 2 and 4
    rows = (tmp_path / LOG_CSV).read_text().splitlines()
    head = rows[0].split(",")
    assert len(rows) == 5 and {"epoch", "loss", "inter", "alpha", "seconds", "steps_per_second", "val_i2t_map@50"} <= set(head)
    alphas = [float(r.split(",")[head.index("alpha")]) for r in rows[1:]]
    np.testing.assert_allclose(alphas, np.sqrt([1, 2, 3, 4]), rtol=1e-5)
    final = read_payload(tmp_path / "checkpoint.pt")
    assert final["finished"] and final["epoch"] == 4 and "optimizers" not in final and final["meta"] == {"hello": "world"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_best_val_selection_restores_the_best_validation_epoch(tmp_path):
    ds = tiny()
    scores = iter([0.9, 0.1, 0.2, 0.3])
    snapshots = {}

    def validator(method):
        snapshots[len(method.history) + 1] = {k: v.clone() for k, v in method.nets.state_dict().items()}
        s = next(scores)
        return {"val_i2t_map@50": s, "val_t2i_map@50": s}

    m = _method()
    Trainer(m, ds, _cfg(tmp_path, eval_every=1, select="best-val"), spec=m.input_spec_for(ds), validator=validator).fit()
    sd = m.nets.state_dict()
    assert all(torch.equal(sd[k], snapshots[1][k]) for k in sd)
    assert read_payload(tmp_path / "checkpoint.pt")["best"]["epoch"] == 1


# ---------------------------------------------------------------------------- CLI
def _metrics(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


def test_cli_train_smoke_on_tiny_wiki_files(tmp_path, capsys):
    root = write_tiny_wiki(tmp_path / "wiki")
    out = tmp_path / "run"
    args = ["train", "djsrh", "--dataset", "wiki", "--data-root", str(root), "--bits", "8,16", "--epochs", "3", "--seed", "1"]
    args += ["--set", "hidden=32", "--out", str(out), "--no-progress", "--num-val", "20", "--eval-every", "1"]
    assert cli(args) == 0
    printed = capsys.readouterr().out
    assert "i2t mAP@50" in printed and "8 bits" in printed and "16 bits" in printed
    for bits in (8, 16):
        m = _metrics(out / f"{bits}bits")
        assert isinstance(m["i2t"]["map@50"], float) and isinstance(m["t2i"]["map@50"], float) and m["seconds"] > 0
        assert m["protocol"]["split"]["protocol"] == "official" and m["protocol"]["split"]["sizes"]["query"] == 40
        assert m["bits"] == bits and m["seed"] == 1 and m["epochs"] == 3 and m["hparams"]["beta"] == 0.3  # Wiki preset
        assert m["validation"]["val_i2t_map@50"] >= 0 and m["curves"]["ranks"][0] == 1
        assert m["i2t"]["map@50"] > 0.5  # clustered data: far above chance (~0.3)
        ck = load_checkpoint(out / f"{bits}bits")
        assert ck.bits == bits and ck.meta["split"]["protocol"] == "official" and ck.meta["dataset"]["name"] == "wiki"
        assert (out / f"{bits}bits" / LOG_CSV).exists()


def test_cli_resume_of_a_finished_run_only_re_evaluates(tmp_path, capsys):
    root = write_tiny_wiki(tmp_path / "wiki")
    out = tmp_path / "run"
    args = ["train", "djsrh", "--dataset", "wiki", "--data-root", str(root), "--bits", "8", "--epochs", "2", "--set", "hidden=32"]
    args += ["--out", str(out), "--no-progress", "--num-val", "0"]
    assert cli(args) == 0
    first = _metrics(out)
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    assert cli(args + ["--resume"]) == 0
    again = _metrics(out)
    assert again["i2t"] == first["i2t"] and again["t2i"] == first["t2i"]
    assert (out / "checkpoint.pt").stat().st_mtime_ns == mtime  # no training, no new checkpoint


def test_cli_encode_writes_the_codes_of_the_training_split(tmp_path):
    from cmhash.codes_io import load_codes

    root = write_tiny_wiki(tmp_path / "wiki")
    out = tmp_path / "run"
    assert cli(["train", "djsrh", "--dataset", "wiki", "--data-root", str(root), "--bits", "16", "--epochs", "2", "--set", "hidden=32", "--out", str(out), "--no-progress"]) == 0
    codes_path = tmp_path / "codes.npz"
    assert cli(["encode", "--checkpoint", str(out), "--out", str(codes_path)]) == 0
    codes = load_codes(codes_path)
    assert codes["query_image"].shape == (40, 16) and codes["db_text"].shape == (160, 16)
    assert codes["meta"]["method"] == "djsrh" and codes["meta"]["split"]["protocol"] == "official"
    from cmhash.data import load_dataset
    from cmhash.metrics import mean_average_precision

    ck = load_checkpoint(out)
    ds = load_dataset("wiki", root)
    np.testing.assert_array_equal(codes["query_image"], ck.encode(ds.image_features[160:], "image"))
    m = _metrics(out)
    got = mean_average_precision(codes["query_image"], codes["db_text"], codes["query_labels"], codes["db_labels"])
    assert got == pytest.approx(m["i2t"]["map@50"])
    assert cli(["encode", "--checkpoint", str(out), "--all", "--out", str(tmp_path / "all.npz")]) == 0
    assert load_codes(tmp_path / "all.npz")["db_image"].shape == (200, 16)


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli(["train", "nosuch", "--dataset", "wiki", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert cli(["train", "djsrh", "--dataset", "wiki", "--out", str(tmp_path)]) == 2
    assert "--data-root" in capsys.readouterr().err
    root = write_tiny_wiki(tmp_path / "wiki")
    assert cli(["train", "djsrh", "--dataset", "wiki", "--data-root", str(root), "--bits", "x", "--out", str(tmp_path)]) == 2
    assert "--bits" in capsys.readouterr().err


def test_attach_features_matches_rows_by_id_and_reports_missing_ones(tmp_path):
    from cmhash.features.attach import attach_features

    ds = tiny(n=50)
    ds.image_features = None
    feats = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    order = np.random.default_rng(1).permutation(50)
    np.savez(tmp_path / "f.npz", image_features=feats[order], ids=ds.ids[order])
    out = attach_features(ds, tmp_path / "f.npz")
    np.testing.assert_array_equal(out.image_features, feats)
    assert out.meta["features_file"] == str(tmp_path / "f.npz")
    np.savez(tmp_path / "g.npz", image_features=feats[:40], ids=ds.ids[:40])
    with pytest.raises(DataError, match="no features for 10"):
        attach_features(ds, tmp_path / "g.npz")


def test_cli_reproduce_table1_runs_the_grid_skips_done_runs_and_reports(tmp_path, capsys):
    root = write_tiny_wiki(tmp_path / "wiki")
    runs = tmp_path / "runs"
    args = ["reproduce", "table1", "--methods", "djsrh,cmfh", "--dataset", "wiki", "--data-root", str(root), "--bits", "8", "--seeds", "0,1"]
    args += ["--epochs", "2", "--set", "hidden=32", "--jobs", "2", "--out", str(runs), "--no-progress", "--reference", str(tmp_path / "noref")]
    (tmp_path / "noref").mkdir()
    assert cli(args) == 1  # --set hidden=32 is not a CMFH hyper-parameter: its cells fail, DJSRH's run
    out = capsys.readouterr().out
    assert "| DJSRH [e2] | 0,1 |" in out and "±" in out and "| CMFH |" not in out  # --epochs: its own variant
    args = [a for a in args if a not in ("--set", "hidden=32")] + ["--set", "iterations=3"]  # --epochs: only methods with epochs
    args[args.index("djsrh,cmfh")] = "cmfh"
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "| DJSRH [e2] | 0,1 |" in out and "| CMFH | 0,1 |" in out  # the report shows everything in --out
    cell = runs / "wiki" / "djsrh" / "e2" / "8bits" / "seed1" / "metrics.json"
    assert cell.exists() and not (cell.parent / "train.lock").exists()
    assert (runs / "table1.csv").read_text().count("\n") == 5
    assert (runs / "wiki" / "curves.png").stat().st_size > 1000
    mtime = cell.stat().st_mtime_ns
    assert cli(args[:3] + ["djsrh,cmfh"] + args[4:]) == 0  # everything done: nothing retrained
    assert cell.stat().st_mtime_ns == mtime


def test_reference_tables_are_read_beside_ours(tmp_path):
    from cmhash.experiments import grid as R

    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "djsrh_table1_map50.csv").write_text("task,method,dataset,bits,map50\nI2T,DJSRH,wiki,16,0.388\nT2I,DJSRH,wiki,16,0.611\n")
    (ref / "independent_reference.md").write_text(
        "# x\n\n## Wikipedia, official\n\n| method | 16 bits | 32 bits |\n|---|---|---|\n"
        "| CMFH (3 seeds) | .235 / .363 | .248 / .419 |\n| DJSRH, 200 epochs (2 seeds; x) | .179 / .187 | .222 / .311 |\n"
    )
    rows = [dict(method="djsrh", variant="djsrh", dataset="wiki", bits=16, seed=s, i2t=0.2 + s / 100, t2i=0.3) for s in range(3)]
    rows += [dict(method="cmfh", variant="cmfh", dataset="wiki", bits=16, seed=0, i2t=0.24, t2i=0.36)]
    md = R.table1_markdown(rows, "wiki", ref)
    assert "| DJSRH | 0,1,2 | 0.210 ± 0.010 / 0.179 / 0.388 |" in md and "| DJSRH | 0,1,2 | 0.300 ± 0.000 / 0.187 / 0.611 |" in md
    assert "| CMFH | 0 | 0.240 / 0.235 / - |" in md  # the paper file has no CMFH row
    assert "AlexNet fc7" in md  # the paper's protocol difference is stated
    ind = R.load_independent_reference(ref)
    assert ind[("CMFH", "wiki", 32, "t2i")] == 0.419
    assert R.reference_label(ind, "wiki", "djsrh") == "DJSRH, 200 epochs" and R.reference_label(ind, "wiki", "jdsh") is None


def test_a_shortened_schedule_is_its_own_variant_and_reported_as_the_method(tmp_path):
    from cmhash.experiments import grid as R

    cells = R.plan("djsrh", "wiki", [16], [0], epochs=10) + R.plan("jdsh", "wiki", [16], [0], ["dsdw-fit"], epochs=10)
    assert [c.variant for c in cells] == ["e10", "e10-dsdw-fit"]
    assert [c.variant for c in R.plan("cmfh", "wiki", [16], [0], epochs=10)] == ["cmfh"]  # no epochs to shorten
    spec = R.GridSpec(data_root="D")
    cmd = R.train_command(cells[0], tmp_path, spec)
    assert cmd[cmd.index("--epochs") + 1] == "10" and "--variant" not in cmd
    assert str(tmp_path / "wiki" / "djsrh" / "e10" / "16bits" / "seed0") in cmd
    cmd = R.train_command(cells[1], tmp_path, spec)
    assert cmd[cmd.index("--variant") + 1] == "dsdw-fit" and cmd[cmd.index("--epochs") + 1] == "10"
    assert R.split_schedule("djsrh", "djsrh-4") == ("djsrh-4", None)  # a real variant is not a schedule
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "djsrh_table1_map50.csv").write_text("task,method,dataset,bits,map50\nI2T,DJSRH,wiki,16,0.388\nT2I,DJSRH,wiki,16,0.611\n")
    rows = [dict(method="djsrh", variant="e10", dataset="wiki", bits=16, seed=s, i2t=0.2, t2i=0.3) for s in range(2)]
    rows += [dict(method="jdsh", variant=v, dataset="wiki", bits=16, seed=0, i2t=0.2, t2i=0.3) for v in ("jdsh", "e10")]
    assert R.table_pairs(rows, "wiki") == [("djsrh", "e10"), ("jdsh", "jdsh")]  # jdsh has its full schedule: e10 is a variant
    md = R.table1_markdown(rows, "wiki", ref)
    assert "| DJSRH [e10] | 0,1 | 0.200 ± 0.000 / - / 0.388 |" in md and "JDSH [e10]" not in md
    assert R.variant_description("jdsh", "e10", {}) == "(the method's own settings), 10 epochs"
    assert R.variant_description("jdsh", "e10-no-dsdw", {"no-dsdw": "no DSDW"}) == "no DSDW, 10 epochs"


def test_a_variants_file_may_not_name_a_variant_like_a_schedule_folder(monkeypatch):
    """``e10`` is the folder of the method's own settings at 10 epochs: a real variant of that name
    would share it (runs reused as the other experiment, reported under the wrong label)."""
    from types import SimpleNamespace

    import cmhash.presets as P
    from cmhash.errors import CmhashError
    from cmhash.experiments import grid as R

    fake = {"default": SimpleNamespace(description="", compare_with=None), "e10": SimpleNamespace(description="ten", compare_with=None)}
    monkeypatch.setattr(P, "has_presets", lambda name: name == "djsrh_variants")
    monkeypatch.setattr(P, "sections", lambda name: fake)
    with pytest.raises(CmhashError, match=r"djsrh_variants.*'e10'.*schedule"):
        R.plan("djsrh", "wiki", [16], [0], epochs=10)
    fake["e10-x"] = fake.pop("e10")
    with pytest.raises(CmhashError, match=r"'e10-x'"):
        R.variant_info("djsrh")


def test_the_order_of_the_papers_methods_is_compared_with_the_papers(tmp_path):
    from cmhash.experiments import grid as R

    ref = tmp_path / "ref"
    ref.mkdir()
    lines = ["task,method,dataset,bits,map50"] + [f"I2T,{m},wiki,16,{v}" for m, v in (("A", 0.3), ("B", 0.2), ("C", 0.1))]
    (ref / "djsrh_table1_map50.csv").write_text("\n".join(lines) + "\n")
    rows = [dict(method=m, variant=m, dataset="wiki", bits=16, seed=0, i2t=v, t2i=0.5) for m, v in (("a", 0.1), ("b", 0.2), ("c", 0.3))]
    md = R.order_markdown(rows, "wiki", ref)
    assert "| 16 | I→T | 3 | C > B > A | A > B > C | -1.00 |" in md and "T→I" not in md  # no paper T→I column
    assert R.order_markdown(rows[:2], "wiki", ref) == ""  # fewer than 3 methods: no order to compare
    tied = [dict(r, i2t=0.2) for r in rows]
    assert "n/a (ties)" in R.order_markdown(tied, "wiki", ref) and "nan" not in R.order_markdown(tied, "wiki", ref)
    # two schedules of one method (one seed at 156 epochs, three at 40): ranked once, by the one with more runs
    two = rows + [dict(method="a", variant="e156", dataset="wiki", bits=16, seed=0, i2t=0.9, t2i=0.5)]
    two += [dict(method="a", variant="e40", dataset="wiki", bits=16, seed=s, i2t=0.25, t2i=0.5) for s in (1, 2)]
    two = [r for r in two if (r["method"], r["variant"]) != ("a", "a")]
    assert "| 16 | I→T | 3 | C > A [e40] > B | A > B > C | -0.33 |" in R.order_markdown(two, "wiki", ref)


def test_methods_are_compared_with_cmfh_paired_by_seed():
    from cmhash.experiments import grid as R

    rows = [dict(method="cmfh", variant="cmfh", dataset="mirflickr", bits=b, seed=s, i2t=0.80, t2i=0.70) for b in (16, 32) for s in (0, 1)]
    rows += [dict(method="kdh", variant="kdh", dataset="mirflickr", bits=16, seed=s, i2t=0.82 - 0.03 * s, t2i=0.75) for s in (0, 1)]
    rows += [dict(method="kdh", variant="kdh", dataset="mirflickr", bits=32, seed=0, i2t=0.85, t2i=0.72)]
    rows += [dict(method="kdh", variant="kdh", dataset="mirflickr", bits=64, seed=0, i2t=0.9, t2i=0.9)]  # no CMFH at 64: ignored
    md = R.paired_against_markdown(rows, "mirflickr", "cmfh")
    assert "| KDH | +0.005 / +0.050 (1/2, 2/2) ✓ | +0.050 / +0.020 (1/1, 1/1) ✓ | 2 of 2 |" in md
    assert R.paired_against_markdown(rows, "wiki", "cmfh") == ""


def test_a_baseline_run_only_at_a_shortened_schedule_is_still_the_against_baseline():
    """On MIRFlickr DJSRH ran only at 10 epochs (folder e10): that is its row of the main table, so
    `--against djsrh` must compare with it rather than print nothing."""
    from cmhash.experiments import grid as R

    rows = [dict(method="djsrh", variant="e10", dataset="mirflickr", bits=16, seed=s, i2t=0.80, t2i=0.70) for s in (0, 1)]
    rows += [dict(method="kdh", variant="kdh", dataset="mirflickr", bits=16, seed=s, i2t=0.85, t2i=0.75) for s in (0, 1)]
    md = R.paired_against_markdown(rows, "mirflickr", "djsrh")
    assert "| KDH | +0.050 / +0.050 (2/2, 2/2) ✓ | 1 of 1 |" in md and "DJSRH [e10] |" not in md


def test_map_over_the_whole_ranking_and_recall_tables_come_from_the_recorded_metrics():
    from cmhash.experiments import grid as R

    def row(method, seed, extra):
        return dict(method=method, variant=method, dataset="wiki", bits=16, seed=seed, i2t=0.2, t2i=0.3, extra=extra)

    rows = [row("kdh", s, {"i2t map@all": 0.20 + s / 100, "t2i map@all": 0.3}) for s in range(3)]
    rows += [row("dvsh", 0, {"i2t recall@10": 0.08, "t2i recall@10": 0.07, "real i2t recall@10": 0.12, "real t2i recall@10": 0.11})]
    md = R.metric_markdown(rows, "wiki", "map@all")
    assert "| KDH | 0,1,2 | 0.210 ± 0.010 | 0.300 ± 0.000 |" in md and "DVSH" not in md  # only runs that recorded it
    md = R.metric_markdown(rows, "wiki", "recall@10")
    assert "| DVSH | 0 | 0.080 | 0.070 |" in md and "| DVSH (real-valued) | 0 | 0.120 | 0.110 |" in md
    assert R.metric_markdown(rows, "wiki", "recall@5") == ""
    from cmhash.experiments.report import dataset_section

    timing = dict(seconds=1.0, train_seconds=1.0, seconds_per_epoch=0.5, seconds_per_epoch_median=0.5, epochs=2)
    recall_rows = [dict(rows[-1], dataset="flickr8k", protocol={"metric": "Recall@10 (pair identity: same image)"}, curves=None, **timing)]
    section = dataset_section(1, "flickr8k", recall_rows, [], None, None, [0], against="cmfh")
    assert "Recall@10" in section and "mAP@50: ours" not in section  # no mAP table filled with recalls
    m = {"i2t": {"map@50": 0.5, "map@all": 0.4, "n_queries": 3}, "t2i": {"map@all": 0.3}, "real_valued": {"i2t": {"recall@1": 0.1}}}
    assert R._extra_metrics(m) == {"i2t map@all": 0.4, "t2i map@all": 0.3, "real i2t recall@1": 0.1}


@pytest.mark.slow
def test_ddp_training_with_two_cpu_processes(tmp_path):
    root = write_tiny_wiki(tmp_path / "wiki", n_tr=192)
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cmhash", "train", "djsrh"]
    cmd += ["--dataset", "wiki", "--data-root", str(root), "--bits", "8", "--epochs", "2", "--set", "hidden=32", "--device", "cpu"]
    cmd += ["--out", str(out), "--no-progress", "--num-val", "0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("i2t mAP@50") == 1  # only rank 0 reports
    m = _metrics(out)
    assert m["environment"]["world_size"] == 2 and m["epochs"] == 2
    log = (out / LOG_CSV).read_text().splitlines()
    steps = int(log[1].split(",")[log[0].split(",").index("steps")])
    assert steps == (192 // 32) // 2  # each rank takes every other batch


def _fake_rows():
    rng = np.random.default_rng(0)
    rows = []
    for v, base in (("djsrh-3", 0.80), ("djsrh-4", 0.81), ("djsrh", 0.85), ("djsrh-noeta", 0.86)):
        for b in (16, 64):
            for s in range(3):
                rows.append(dict(method="djsrh", variant=v, dataset="mirflickr", bits=b, seed=s, i2t=base + rng.normal(0, 0.002),
                                 t2i=base - (0.02 if v in ("djsrh-4", "djsrh") else 0) + rng.normal(0, 0.002), seconds=10.0,
                                 train_seconds=400.0, seconds_per_epoch=5.0, epochs=80,
                                 curves={"ranks": [1, 50], "i2t_precision": [0.9, 0.8], "t2i_precision": [0.85, 0.8]}, load_average=[2.0]))
    return rows


def test_ablation_table_and_the_comparisons_its_variants_file_declares():
    from cmhash.cli.reproduce import ablation_report
    from cmhash.experiments import grid as R

    rows = _fake_rows()
    eff = R.paired_effect(rows, "mirflickr", "djsrh-4", "djsrh-3", "djsrh")
    assert [e["bits"] for e in eff] == [16, 64]
    assert eff[0]["t2i"][0] == pytest.approx(-0.01, abs=0.01) and len(eff[0]["t2i_per_seed"]) == 3
    md = ablation_report(rows, "mirflickr", "djsrh", None)
    assert "| DJSRH-3 |" in md and "| DJSRH-NOETA |" in md
    assert "DJSRH-4 − DJSRH-3" in md and "DJSRH − DJSRH-NOETA" in md  # compare_with in presets/djsrh_variants.yaml
    assert md.index("| DJSRH-3 |") < md.index("| DJSRH-4 |") < md.index("| DJSRH |") < md.index("| DJSRH-NOETA |")  # file order


def test_results_doc_is_generated_from_runs_one_template_per_dataset(tmp_path):
    from cmhash.experiments.report import write_results_doc

    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "independent_reference.md").write_text(
        "## MIRFlickr, subset\n\n| method | 16 bits | 64 bits |\n|---|---|---|\n| CMFH (3 seeds) | .821 / .763 | .875 / .801 |\n"
        "| DJSRH, 80 epochs (1 seed) | .784 / .787 | .858 / .822 |\n| DJSRH, 20 epochs (1 seed) | .734 / .744 | .825 / .797 |\n"
        "\n## Wikipedia, official\n\n| method | 16 bits |\n|---|---|\n| CMFH (3 seeds) | .235 / .363 |\n"
    )
    rows = _fake_rows()
    rows += [dict(r, method="cmfh", variant="cmfh", epochs=None, seconds_per_epoch=None, train_seconds=3.0) for r in rows if r["variant"] == "djsrh"]
    rows += [dict(r, dataset="wiki", i2t=0.2, t2i=0.3) for r in rows if r["variant"] == r["method"] and r["bits"] == 16]
    extra = [dict(r, seed=r["seed"] + 3, t2i=r["t2i"] + 0.01) for r in rows if r["variant"] == "djsrh" and r["bits"] == 16 and r["dataset"] == "mirflickr"]
    path = write_results_doc(rows + extra, tmp_path / "results.md", ref, main_seeds=[0, 1, 2])
    text = path.read_text()
    assert "## 1. MIRFlickr" in text and "## 2. Wiki" in text and "Methods: CMFH, DJSRH" in text
    sections = [sec for sec in text.split("\n## ") if sec[:1].isdigit()]
    assert len(sections) == 2 and "How these numbers are made" in text and "cmhash reproduce report --out DIR" in text
    for section in sections:  # the same parts in every dataset's section
        assert "Image → Text, mAP@50" in section and "Protocol of these numbers" in section and "Training time" in section
    assert "| DJSRH | 16 | T→I | 6 |" in text and "DJSRH against the independent reference (DJSRH, 80 epochs)" in text
    assert "CMFH against the independent reference (CMFH)" in text and "Variants of DJSRH" in text and "DJSRH-4 − DJSRH-3" in text
    assert "| mirflickr | CMFH | 16 | 3 | - | - | - | 3.0 s |" in text


def test_reporting_code_names_no_method():
    """Tables list the methods found in the runs; nothing in the reporting code is written for one method."""
    import ast
    import re

    import cmhash.experiments.grid as grid
    import cmhash.experiments.report as report
    from cmhash.methods import METHODS

    for mod in (grid, report):
        tree = ast.parse(Path(mod.__file__).read_text())
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        for name in METHODS.names():
            bad = [s for s in strings if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", s)]
            assert not bad, f"{mod.__name__} names method {name}: {bad[:3]}"


def test_cli_train_smoke_on_the_synthetic_source(tmp_path):
    from cmhash.data import SOURCES

    if "synthetic" not in SOURCES.names():
        pytest.skip("the synthetic source is not installed in this checkout")
    out = tmp_path / "syn"
    args = ["train", "djsrh", "--dataset", "synthetic", "-o", "n=700", "-o", "image_dim=64", "-o", "vocab_size=120", "--bits", "16"]
    args += ["--epochs", "2", "--set", "hidden=64", "--split", "random", "--split-param", "num_query=100", "--split-param", "num_train=400", "--out", str(out), "--no-progress", "--num-val", "50"]
    assert cli(args) == 0
    m = _metrics(out)
    assert m["dataset"] == "synthetic" and m["i2t"]["map@50"] > 0 and m["hparams"]["lr_image"] == 0.02  # synthetic preset
    assert load_checkpoint(out).meta["dataset"]["source_options"] == {"n": 700, "image_dim": 64, "vocab_size": 120}


def test_fit_accepts_a_whole_preset_a_seed_threads_and_a_progress_callback(tmp_path):
    from cmhash.presets import load_preset

    ds = tiny()
    calls = []
    preset = load_preset("djsrh", "wiki").hparams  # the method's side of the preset; run settings live apart
    assert "split" in load_preset("djsrh", "wiki").run and "split" not in preset
    with pytest.raises(CmhashError, match="unknown hyper-parameter.*split"):
        create_method("djsrh", 8, **{**preset, "split": "official"})
    m = create_method("djsrh", 8, seed=3, **{**preset, "epochs": 2, "hidden": 16})
    assert m.seed == 3
    m.fit(ds, progress=lambda step, total, loss: calls.append((step, total, loss)), threads=1, run_dir=str(tmp_path))
    assert calls[-1][0] == calls[-1][1] == 2 * (len(ds) // 32) and all(np.isfinite(c[2]) for c in calls)
    same = create_method("djsrh", 8, seed=3, **{**preset, "epochs": 2, "hidden": 16}).fit(ds, progress=False)
    assert _same_weights(m, same)
    assert read_payload(tmp_path / "checkpoint.pt")["train_config"]["progress"] is True


def test_a_non_finite_loss_stops_training_with_advice():
    ds = tiny()
    ds.image_features[:, 0] = np.nan  # bypasses the dataset's own check on purpose
    with pytest.raises(CmhashError, match="loss became nan.*learning rates"):
        _fit(ds, _cfg(None, epochs=1))


def test_cli_trains_a_shallow_method_too_and_its_checkpoint_encodes(tmp_path):
    from cmhash.methods import METHODS

    if "cmfh" not in METHODS:
        pytest.skip("CMFH is not installed in this checkout")
    root = write_tiny_wiki(tmp_path / "wiki")
    out = tmp_path / "cmfh"
    assert cli(["train", "cmfh", "--dataset", "wiki", "--data-root", str(root), "--bits", "8", "--out", str(out), "--no-progress"]) == 0
    m = _metrics(out)
    assert m["method"] == "cmfh" and m["protocol"]["split"]["protocol"] == "official" and m["epochs"] is None
    ck = load_checkpoint(out)
    from cmhash.data import load_dataset

    ds = load_dataset("wiki", root)
    assert ck.method_name == "cmfh" and ck.encode(ds, "text").shape == (200, 8)


def _fake_run(runs, method, variant, dataset, bits, seed, i2t=0.8, t2i=0.7, split_sizes=None):
    from cmhash.experiments.grid import Cell

    d = Cell(method, variant, dataset, bits, seed).run_dir(runs)
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({
        "i2t": {"map@50": i2t}, "t2i": {"map@50": t2i}, "seconds": 1.0, "train_seconds_total": 2.0,
        "seconds_per_epoch": 0.5, "epochs": 80, "environment": {"load_average": [1.0, 1.0, 1.0], "cmhash": "0.1.0+gtest"},
        "curves": {"ranks": [1, 50], "i2t_precision": [0.9, 0.8], "t2i_precision": [0.8, 0.7]},
        "protocol": {"topk": 50, "tie_break": "stable_index", "selection": "last",
                     "split": {"protocol": "djsrh", "sizes": split_sizes or {"query": 2000, "database": 5696, "train": 5000}}},
        "features": {"image_features": "efficientnet-lite0", "text_features": "bow-1386"},
    }))  # fmt: skip
    return d


def test_reproduce_results_report_only_writes_the_document_from_existing_runs(tmp_path):
    runs = tmp_path / "runs"
    for variant in ("djsrh", "djsrh-3", "djsrh-4"):
        for seed in (0, 1):
            _fake_run(runs, "djsrh", variant, "mirflickr", 64, seed, i2t=0.8 + seed / 100)
    doc = tmp_path / "results.md"
    args = ["reproduce", "results", "--methods", "djsrh", "--data", str(tmp_path / "data"), "--seeds", "0,1", "--bits", "64",
            "--ablation-bits", "64", "--out", str(runs), "--doc", str(doc), "--report-only", "--reference", str(tmp_path),
            "--variance", "mirflickr:64:0-3"]  # fmt: skip
    assert cli(args) == 0
    text = doc.read_text()
    assert "## 1. MIRFlickr" in text and "| DJSRH | 0,1 | 0.805 ± 0.007 / - / - |" in text and "Variants of DJSRH" in text and "DJSRH-4" in text
    assert (runs / "table1.csv").read_text().count("\n") == 7
    assert (tmp_path / "results_mirflickr_curves.png").stat().st_size > 0 and "](results_mirflickr_curves.png)" in text
    assert "Code that made the runs: 0.1.0+gtest: 6 runs" in text


def test_runs_of_different_methods_and_invocations_share_one_folder_and_one_report(tmp_path, capsys):
    from cmhash.experiments import grid as R

    runs = tmp_path / "table1"
    for seed in (0, 1, 2):  # "engineer A": one method
        _fake_run(runs, "djsrh", "djsrh", "mirflickr", 16, seed, i2t=0.78 + seed / 100)
    for seed in (0, 1):  # "engineer B", another invocation, another method and dataset; one cell with another split
        _fake_run(runs, "cmfh", "cmfh", "mirflickr", 16, seed, i2t=0.82)
        _fake_run(runs, "cmfh", "cmfh", "wiki", 16, seed, i2t=0.24, split_sizes={"query": 693, "database": 2173, "train": 2173})
    _fake_run(runs, "cmfh", "cmfh", "mirflickr", 32, 0, split_sizes={"query": 1000, "database": 5696, "train": 5000})
    assert len(R.scan(runs)) == 8
    assert cli(["reproduce", "report", "--out", str(runs), "--reference", str(tmp_path)]) == 0
    md = (runs / "table1.md").read_text()
    assert "| DJSRH | 0,1,2 | 0.790 ± 0.010 / - / - |" in md and "| CMFH | 0,1 | 0.820 ± 0.000 / - / - |" in md
    assert "## 1. MIRFlickr" in md and "## 2. Wiki" in md
    assert "djsrh: 1000 / 5696 / 5000 or 2000 / 5696 / 5000" in md  # differing protocols are shown, not hidden
    rows = list(csv.DictReader(open(runs / "table1.csv")))
    assert len(rows) == 8 and json.loads(rows[0]["protocol"])["split"] == "djsrh"
    assert (runs / "mirflickr" / "curves.png").stat().st_size > 0 and "](mirflickr/curves.png)" in md
    out = capsys.readouterr().out
    assert "8 runs found" in out


def test_a_cell_another_process_trains_is_left_alone(tmp_path):
    import subprocess as sp

    from cmhash.experiments import grid as R

    cell = R.Cell("cmfh", "cmfh", "wiki", 16, 0)
    assert R.claim(cell, tmp_path)  # we hold it
    other = R.Cell("cmfh", "cmfh", "wiki", 16, 1)
    other.run_dir(tmp_path).mkdir(parents=True)
    (other.run_dir(tmp_path) / R.LOCK).write_text(str(os.getpid()))  # a live process holds it
    assert not R.claim(other, tmp_path)
    dead = sp.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (other.run_dir(tmp_path) / R.LOCK).write_text(str(dead.pid))  # its process is gone: stale
    assert R.claim(other, tmp_path)
    R.release(cell, tmp_path)
    assert not (cell.run_dir(tmp_path) / R.LOCK).exists()


def test_table1_needs_known_methods(tmp_path, capsys):
    assert cli(["reproduce", "table1", "--dataset", "wiki", "--out", str(tmp_path), "--report-only"]) == 2
    assert "--methods" in capsys.readouterr().err
    assert cli(["reproduce", "table1", "--methods", "djsrh,nosuch", "--dataset", "wiki", "--out", str(tmp_path), "--report-only"]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err


def test_features_from_a_cmhash_feature_cache_and_encoder_specs_in_the_checkpoint(tmp_path):
    from PIL import Image

    from cmhash.data.images import FileImageStore
    from cmhash.features import create_text_encoder, encoder_from_spec, extract_features
    from cmhash.experiments.run import train_and_evaluate
    from cmhash.features.attach import attach_features
    from cmhash.data.splits import make_split

    rng = np.random.default_rng(0)
    n, y = 96, np.arange(96) % 3
    paths = []
    for i in range(n):
        p = tmp_path / f"im{i}.png"
        Image.fromarray((rng.uniform(0, 40, (20, 20, 3)) + 200 * np.eye(3)[y[i]]).astype(np.uint8)).save(p)
        paths.append(p)
    words = [["sea", "boat"], ["tree", "leaf"], ["car", "road"]]
    texts = [", ".join(words[c] + ["photo"]) for c in y]
    ds = PairedDataset(name="tinyset", ids=[f"p{i}" for i in range(n)], images=FileImageStore(paths), texts=texts, text_kind="tags",
                       labels=np.eye(3, dtype=np.uint8)[y])
    cache_dir = tmp_path / "cache"
    extract_features(ds, "tiny-image", create_text_encoder("bow", min_count=1), cache_dir, progress=False)
    with_feats = attach_features(ds, cache_dir)
    assert with_feats.image_features.shape == (n, 16 * 16 * 3) and with_feats.meta["image_features"] == "tiny-image"
    split = make_split(with_feats, "random", seed=0, num_query=24, num_train=64)
    m = train_and_evaluate("djsrh", with_feats, split, 8, {"hidden": 16, "epochs": 2, "lr_image": 0.01, "lr_text": 0.01},
                           out_dir=tmp_path / "run", run={"num_val": 0}, progress=False, tensorboard=False)
    assert m["features"]["image_features"] == "tiny-image"
    ck = load_checkpoint(tmp_path / "run")
    text_encoder = encoder_from_spec(ck.meta["features"]["encoders"]["text"])  # what a search service does with a new query
    codes = ck.encode(text_encoder.encode([texts[0]]), "text")
    assert codes.shape == (1, 8)
    np.testing.assert_array_equal(codes, ck.encode(with_feats.text_features[:1], "text"))


def test_grid_cells_of_another_method_use_its_own_settings_not_a_djsrh_variant(tmp_path):
    from cmhash.experiments.grid import GridSpec, plan, train_command

    cells = plan("cmfh", "wiki", [16], [0, 1])
    assert [c.variant for c in cells] == ["cmfh", "cmfh"]
    cmd = train_command(cells[0], tmp_path, GridSpec(data_root="w", features=None, epochs=None, overrides=[], threads=1, device="cpu", extra_args=[]))
    assert "--variant" not in cmd and cmd[cmd.index("train") + 1] == "cmfh"
    djsrh = plan("djsrh", "wiki", [16], [0], ["djsrh", "djsrh-4"])
    assert "--variant" not in train_command(djsrh[0], tmp_path, GridSpec(data_root="w", features=None, epochs=None, overrides=[], threads=1, device="cpu", extra_args=[]))
    assert "djsrh-4" in train_command(djsrh[1], tmp_path, GridSpec(data_root="w", features=None, epochs=None, overrides=[], threads=1, device="cpu", extra_args=[]))


def test_a_dataset_default_split_has_its_parameters_for_every_method(monkeypatch):
    """Fashion's 1,000-query split lives with the dataset, not repeated in each method's preset."""
    from cmhash.experiments import run as run_mod
    from cmhash.experiments.settings import DEFAULT_SPLIT_PARAMS

    assert DEFAULT_SPLIT_PARAMS["fashion"] == {"num_query": 1000, "num_train": 5000}
    monkeypatch.setitem(run_mod.DEFAULT_SPLIT_PARAMS, "synthetic", {"num_query": 7, "num_train": 20})
    _, split = run_mod.load_run_data("synthetic", options={"n": 60})
    assert split.sizes() == {"query": 7, "database": 53, "train": 20}
    _, split = run_mod.load_run_data("synthetic", options={"n": 60}, run={"split_params": {"num_query": 9}})  # a preset's wins
    assert split.sizes()["query"] == 9 and split.sizes()["train"] == 20
    _, split = run_mod.load_run_data("synthetic", options={"n": 60}, split_params={"num_train": 30})  # and --split-param
    assert split.sizes() == {"query": 7, "database": 53, "train": 30}


def test_a_dataset_default_split_parameter_stays_a_default_not_a_request(monkeypatch):
    """Fashion's default num_train=5000 equals the protocol's own default: on a smaller Fashion (a
    user's styles.csv) it must be clipped as a default is, not refused as if the user had asked for it."""
    from cmhash.experiments import run as run_mod

    monkeypatch.setitem(run_mod.DEFAULT_SPLIT_PARAMS, "synthetic", {"num_query": 7, "num_train": 5000})
    _, split = run_mod.load_run_data("synthetic", options={"n": 60})
    assert split.sizes() == {"query": 7, "database": 53, "train": 53}
    with pytest.raises(DataError, match="num_train=5000 requested"):  # asked for by the user: still refused
        run_mod.load_run_data("synthetic", options={"n": 60}, split_params={"num_train": 5000})


def test_report_against_an_unknown_method_is_refused_with_the_known_ones(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert cli(["reproduce", "report", "--out", str(tmp_path / "runs"), "--against", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "cmfh" in err


def test_resume_is_refused_when_the_split_changed_since_the_checkpoint(tmp_path, monkeypatch):
    """A default split parameter that changed (Fashion's num_query 2000 -> 1000) must not silently
    continue an interrupted run on another training set: the recorded split is compared on resume."""
    ds = tiny()
    old = {"split": {"protocol": "random", "params": {"num_query": 2000, "num_train": 5000}, "seed": 0,
                     "sizes": {"query": 40, "database": 120, "train": 120}, "dataset": {"fingerprint": "abc"}}}  # fmt: skip
    orig = Trainer._run_epoch

    def crash_in_epoch_2(self, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return orig(self, epoch, *args)

    monkeypatch.setattr(Trainer, "_run_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        m = _method()
        Trainer(m, ds, _cfg(tmp_path), spec=m.input_spec_for(ds), meta=old).fit()
    monkeypatch.setattr(Trainer, "_run_epoch", orig)
    new = json.loads(json.dumps(old))
    new["split"]["params"]["num_query"] = 1000
    m = _method()
    with pytest.raises(CmhashError, match=r"cannot resume.*split.*num_query.*2000.*1000"):
        Trainer(m, ds, _cfg(tmp_path, resume=True), spec=m.input_spec_for(ds), meta=new).fit()
    m = _method()  # the same split resumes
    Trainer(m, ds, _cfg(tmp_path, resume=True), spec=m.input_spec_for(ds), meta=old).fit()
    assert read_payload(tmp_path / "checkpoint.pt")["finished"]


def test_precision_curves_include_a_method_run_only_at_a_shortened_schedule(tmp_path):
    from cmhash.experiments import grid as R

    curves = {"ranks": [1, 50], "i2t_precision": [0.9, 0.8], "t2i_precision": [0.7, 0.6]}
    rows = [dict(method="djsrh", variant="e10", dataset="wiki", bits=16, seed=0, i2t=0.2, t2i=0.3, curves=curves)]
    rows += [dict(method="cmfh", variant="cmfh", dataset="wiki", bits=16, seed=0, i2t=0.2, t2i=0.3, curves=curves)]
    md = R.curves_markdown(rows, "wiki")
    assert "| DJSRH [e10] | I→T | 0.900 | 0.800 |" in md and "| CMFH | T→I | 0.700 | 0.600 |" in md
    assert R.plot_curves(rows, "wiki", tmp_path / "c.png").stat().st_size > 1000
