"""Throughput of the feature encoders on this machine: images/s and sentences/s.

Image figures are end to end (JPEG file -> decode -> resize -> model -> pooled features), through
the same pipeline `cmhash features extract` uses, over the first N MIRFlickr images (128-px
JPEGs, upscaled to 224 px) or, without the shared data, synthetic JPEGs written to a temp folder.
Text figures use Flickr8k captions (or synthetic sentences). Each row prints the 1-minute load
average before it ran and ``cpu_ms``, the process CPU time per item (all threads): on a shared
machine the wall-clock rate depends on the load, the CPU cost much less.

    PYTHONPATH=src python benchmarks/features_bench.py                 # default sweep
    PYTHONPATH=src python benchmarks/features_bench.py --quick         # the chosen defaults only
    PYTHONPATH=src python benchmarks/features_bench.py --images 1024 --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cmhash.data.images import FileImageStore  # noqa: E402
from cmhash.features import create_image_encoder, create_text_encoder  # noqa: E402
from cmhash.features.pipeline import encode_image_store, iter_prepared  # noqa: E402


def load1() -> float:
    return os.getloadavg()[0]


def image_store(data: Path, n: int) -> tuple[FileImageStore, str]:
    d = data / "mirflickr25k" / "images128"
    if d.is_dir():
        files = sorted(d.glob("im*.jpg"), key=lambda p: int(p.stem[2:]))[:n]
        return FileImageStore(files), f"MIRFlickr images128 (first {len(files)})"
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="cmhash-bench-"))
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(tmp / f"{i}.jpg", quality=90)
    return FileImageStore(sorted(tmp.glob("*.jpg"))), f"synthetic 128-px JPEGs ({n})"


def sentences(data: Path, n: int) -> tuple[list[str], str]:
    f = data / "flickr8k" / "captions.txt"
    if f.exists():
        with open(f, encoding="utf-8") as fh:
            caps = [r["caption"] for r in csv.DictReader(fh)][:n]
        return caps, f"Flickr8k captions (first {len(caps)})"
    words = "a man dog woman runs on the beach with red ball in park two children play near water".split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(6, 16)))) for _ in range(n)], f"synthetic sentences ({n})"


def bench_images(store, cfg: dict, n: int) -> dict:
    enc = create_image_encoder(cfg["encoder"], backend=cfg["backend"], threads=cfg["threads"], streams=cfg.get("streams", 1))
    warm = encode_image_store(enc, store, range(min(cfg["batch"], len(store))), batch_size=cfg["batch"], workers=cfg["workers"])  # warm-up / export
    del warm
    la, t, c = load1(), time.perf_counter(), time.process_time()
    feats, fails = encode_image_store(enc, store, range(n), batch_size=cfg["batch"], workers=cfg["workers"])
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    assert feats.shape == (n, enc.dim) and not fails
    return {**cfg, "n": n, "seconds": round(dt, 2), "per_s": round(n / dt, 1), "cpu_ms": round(1000 * cpu / n, 1), "load1": round(la, 2)}


def bench_decode(store, workers: int, n: int) -> dict:
    enc = create_image_encoder("efficientnet-lite0")
    la, t, c = load1(), time.perf_counter(), time.process_time()
    for _ in iter_prepared(store, range(n), enc.prepare, workers=workers):
        pass
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    return {"what": f"decode+resize only, workers={workers}", "n": n, "per_s": round(n / dt, 1), "cpu_ms": round(1000 * cpu / n, 2), "load1": round(la, 2)}


def bench_model_only(cfg: dict, n: int) -> dict:
    enc = create_image_encoder(cfg["encoder"], backend=cfg["backend"], threads=cfg["threads"], streams=cfg.get("streams", 1))
    x = np.random.default_rng(0).standard_normal((cfg["batch"], 224, 224, 3)).astype(np.float32)
    enc.forward(x)
    la, t, c, done = load1(), time.perf_counter(), time.process_time(), 0
    while done < n:
        enc.forward(x)
        done += len(x)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    return {**cfg, "what": "model only", "n": done, "per_s": round(done / dt, 1), "cpu_ms": round(1000 * cpu / done, 1), "load1": round(la, 2)}


def bench_text(texts: list[str], name: str, opts: dict, fit: bool = False) -> dict:
    runtime = {k: opts[k] for k in ("threads", "batch_size") if k in opts}
    enc = create_text_encoder(name, **{k: v for k, v in opts.items() if k not in runtime}, **runtime)
    if fit:
        enc.fit(texts, "sentence")
    enc.encode(texts[:16])
    la, t, c = load1(), time.perf_counter(), time.process_time()
    out = enc.encode(texts)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    assert out.shape[0] == len(texts)
    return {"encoder": name, **opts, "n": len(texts), "seconds": round(dt, 2), "per_s": round(len(texts) / dt, 1),
            "cpu_ms": round(1000 * cpu / len(texts), 2), "load1": round(la, 2)}


def table(rows: list[dict], cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("CMHASH_SHARED_DATA", str(ROOT.parent / "shared" / "data")), help="the shared data folder (default: $CMHASH_SHARED_DATA or ../shared/data)")
    ap.add_argument("--images", type=int, default=512, help="images per configuration")
    ap.add_argument("--torch-images", type=int, default=128, help="images for the (slow) torch backend rows")
    ap.add_argument("--sentences", type=int, default=1000, help="sentences per text configuration")
    ap.add_argument("--quick", action="store_true", help="only the default configurations")
    ap.add_argument("--skip-torch", action="store_true", help="skip the torch-backend rows")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    data = Path(args.data)
    print(f"# cmhash feature throughput; {os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
    store, what = image_store(data, max(args.images, args.torch_images))
    print(f"images: {what}")

    img_cfgs = [dict(encoder="efficientnet-lite0", backend="onnx", threads=1, streams=2, batch=32, workers=1)]  # the defaults
    if not args.quick:
        img_cfgs += [
            dict(encoder="efficientnet-lite0", backend="onnx", threads=1, streams=1, batch=32, workers=1),
            dict(encoder="efficientnet-lite0", backend="onnx", threads=2, streams=1, batch=32, workers=1),
            dict(encoder="efficientnet-lite0", backend="onnx", threads=1, streams=2, batch=32, workers=2),
            dict(encoder="efficientnet-lite0", backend="onnx", threads=1, streams=1, batch=8, workers=1),
            dict(encoder="efficientnet-lite0", backend="onnx", threads=1, streams=1, batch=64, workers=1),
            dict(encoder="efficientnet-lite0", backend="onnx", threads=1, streams=1, batch=32, workers=0),
            dict(encoder="efficientnet-lite0", backend="onnx", threads=1, streams=1, batch=32, workers=2),
            dict(encoder="efficientnet-lite2", backend="onnx", threads=1, streams=1, batch=32, workers=1),
        ]
        if not args.skip_torch:
            img_cfgs += [
                dict(encoder="efficientnet-lite0", backend="torch", threads=1, streams=1, batch=32, workers=1),
                dict(encoder="efficientnet-lite0", backend="torch", threads=2, streams=1, batch=32, workers=1),
            ]
    rows = []
    for cfg in img_cfgs:
        n = args.torch_images if cfg["backend"] == "torch" else args.images
        rows.append(bench_images(store, cfg, n))
        print(f"  {rows[-1]}", flush=True)
    print("\n## Images (end to end, JPEG -> features)\n")
    print(table(rows, ["encoder", "backend", "threads", "streams", "batch", "workers", "n", "per_s", "cpu_ms", "load1"]))
    extra = [bench_model_only(img_cfgs[0], args.images), bench_decode(store, 1, args.images)]
    if not args.quick:
        extra.append(bench_decode(store, 0, args.images))
    print("\n" + table(extra, ["what", "backend", "threads", "batch", "n", "per_s", "cpu_ms", "load1"]))

    texts, twhat = sentences(data, args.sentences)
    print(f"\ntexts: {twhat}")
    t_cfgs = [("minilm", dict(backend="onnx-int8", threads=1, batch_size=32), False)]  # the defaults
    if not args.quick:
        t_cfgs += [
            ("minilm", dict(backend="onnx-int8", threads=2, batch_size=32), False),
            ("minilm", dict(backend="onnx-int8", threads=1, batch_size=8), False),
            ("minilm", dict(backend="onnx-int8", threads=1, batch_size=16), False),
            ("minilm", dict(backend="onnx-int8", threads=1, batch_size=64), False),
            ("minilm", dict(backend="onnx-int8", threads=1, batch_size=128), False),
        ]
        if not args.skip_torch:
            t_cfgs += [
                ("minilm", dict(backend="torch", threads=1, batch_size=32), False),
                ("minilm", dict(backend="torch", threads=2, batch_size=32), False),
            ]
    t_cfgs += [("bow", dict(min_count=2), True), ("tfidf", dict(min_count=2), True), ("glove", dict(), True), ("lda", dict(), True)]
    trows = []
    for name, opts, fit in t_cfgs:
        trows.append(bench_text(texts, name, opts, fit))
        print(f"  {trows[-1]}", flush=True)
    print("\n## Texts (sentences/s)\n")
    print(table(trows, ["encoder", "backend", "threads", "batch_size", "n", "per_s", "cpu_ms", "load1"]))
    print(f"\nload average at end {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": rows, "image_parts": extra, "texts": trows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
