"""A tiny finished grid folder (one DJSRH and one CMFH run on the synthetic source), trained by the real entry point.

Shared by the tests of the commands that read finished runs (backfill, chance).
"""

from __future__ import annotations

from pathlib import Path

from cmhash.cli import main as cli

RUNS = {"djsrh": "synthetic/djsrh/djsrh/16bits/seed0", "cmfh": "synthetic/cmfh/cmfh/16bits/seed0"}
COMMON = ["--dataset", "synthetic", "-o", "n=240", "--split-param", "num_query=48", "--bits", "16", "--no-progress", "--threads", "1"]


def train_tiny_grid(root: Path) -> Path:
    """``root`` holding one finished DJSRH and one CMFH run (seed 0), metrics as training recorded them."""
    deep = ["train", "djsrh", *COMMON, "--epochs", "2", "--set", "hidden=32", "--num-val", "0", "--no-tensorboard"]
    assert cli([*deep, "--out", str(root / RUNS["djsrh"])]) == 0
    assert cli(["train", "cmfh", *COMMON, "--set", "iterations=5", "--out", str(root / RUNS["cmfh"])]) == 0
    return root
