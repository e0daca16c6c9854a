"""A searchable demo in a few minutes: a small DJSRH model and its index, built once, then served.

With Flickr8k at ``--data-root`` (default ``../shared/data/flickr8k``) the demo trains 64-bit
DJSRH on the ready-made features (EfficientNet-Lite0 images + MiniLM captions; extracted first
when the cache is missing) for a few epochs and indexes all 8,091 images and their captions, so
free sentences work. Without it, the built-in synthetic benchmark is used (no pictures; its
texts are synthetic tag lists). Everything lives in ``--demo-dir`` and is reused on the next run.
"""

from __future__ import annotations

from pathlib import Path

DEMO_EPOCHS = 5
DEFAULT_DATA = Path("..") / "shared" / "data" / "flickr8k"


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def build_demo(demo_dir=None, data_root=None, *, epochs: int = DEMO_EPOCHS, bits: int = 64) -> tuple[Path, Path]:
    """(index file, run folder) of the demo, built when missing or stale."""
    from cmhash.cli import main as cli
    from cmhash.errors import CmhashError
    from cmhash.features.runtime import cache_root
    from cmhash.index.container import read_manifest
    from cmhash.inference.provenance import checkpoint_sha256

    out = Path(demo_dir) if demo_dir else cache_root() / "search-demo"
    root = Path(data_root) if data_root else DEFAULT_DATA
    if data_root and not root.is_dir():
        raise CmhashError(f"--data-root {root}: no such folder (the Flickr8k folder, or leave it out for the synthetic demo)")
    if root.is_dir():
        name = "flickr8k"
        data = ["--dataset", "flickr8k", "--data-root", str(root.resolve())]
    else:
        name = "synthetic"
        data = ["--dataset", "synthetic", "-o", "n=3000", "--split", "random", "--split-param", "num_query=200", "--split-param", "num_train=2000", "--num-val", "0"]
        _log(f"{root} not found: using the synthetic benchmark (no pictures); pass --data-root FLICKR8K for real images")
    run = out / f"{name}-{bits}"
    index = out / f"{name}-{bits}.index"
    if not (run / "checkpoint.pt").is_file():
        if name == "flickr8k":
            from cmhash.features.prepared import prepare

            _log("image and caption features (reused when ~/.cache/cmhash/features/flickr8k is complete)")
            prepare("flickr8k", root, progress=True)
        _log(f"training DJSRH ({bits} bits, {epochs} epochs) on {name} into {run}")
        args = ["train", "djsrh", *data, "--bits", str(bits), "--epochs", str(epochs), "--threads", "1", "--out", str(run), "--no-progress"]
        if cli(args) != 0:
            raise CmhashError(f"demo training failed; see the messages above (run folder {run})")
    fresh = index.is_file() and read_manifest(index).get("info", {}).get("checkpoint_sha256") == checkpoint_sha256(run)
    if not fresh:
        _log(f"indexing every {name} item into {index}")
        if cli(["index", "build", "--checkpoint", str(run), "--split", "all", "--backend", "faiss", "--out", str(index)]) != 0:
            raise CmhashError(f"demo index build failed; see the messages above ({index})")
    return index, run


__all__ = ["build_demo"]
