"""Tiny trained runs and indexes, and a real `cmhash serve` on loopback (in a thread, or in its own
process), for the search API, service and page tests and for benchmarks/serve_bench.py."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cmhash.cli import main as cli
from features_fixtures import rgb_array, write_mirflickr_fixture

WORDS = ["dog", "cat", "beach", "snow", "bike", "child", "ball", "water", "grass", "red"]


def tag_run(tmp: Path, n: int = 40, bits: int = 16) -> tuple[Path, Path]:
    """(data root, run folder): DJSRH on a tiny MIRFlickr layout, tiny image encoder + tag BoW from a feature cache."""
    root = write_mirflickr_fixture(tmp / "mir", n=n)
    cache = tmp / "cache"
    assert cli(["features", "extract", "--dataset", "mirflickr", "--data-root", str(root), "--source-option", "min_count=1",
                "--image-encoder", "tiny-image", "--text-encoder", "bow", "--out", str(cache), "--no-progress"]) == 0
    run = tmp / "run"
    args = ["train", "djsrh", "--dataset", "mirflickr", "--data-root", str(root), "-o", "min_count=1", "--features", str(cache),
            "--bits", str(bits), "--epochs", "3", "--set", "hidden=32", "--split", "random", "--split-param", "num_query=5",
            "--split-param", "num_train=32", "--num-val", "0", "--out", str(run), "--no-progress"]
    assert cli(args) == 0
    return root, run


def tag_index(tmp: Path, backend: str = "numpy") -> tuple[Path, Path, Path]:
    """(data root, run folder, index file): :func:`tag_run` indexed with ``backend``, every pair (``--split all``)."""
    root, run = tag_run(tmp)
    idx = tmp / "mir.idx"
    assert cli(["index", "build", "--checkpoint", str(run), "--backend", backend, "--split", "all", "--out", str(idx)]) == 0
    return root, run, idx


def write_flickr8k_fixture(root: Path, n_images: int = 12, captions: int = 3) -> Path:
    """Flickr8k layout: captions.txt (n_images x captions), Images/, and official split lists."""
    from PIL import Image

    (root / "Images").mkdir(parents=True, exist_ok=True)
    lines = ["image,caption"]
    names = []
    for i in range(n_images):
        name = f"{1000 + i}_img.jpg"
        names.append(name)
        Image.fromarray(rgb_array(i, (32, 32))).save(root / "Images" / name)
        for k in range(captions):
            a, b = WORDS[i % len(WORDS)], WORDS[(i + k + 1) % len(WORDS)]
            lines.append(f"{name},a {a} with a {b} number {k}")
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits" / "Flickr_8k.trainImages.txt").write_text("\n".join(names[: n_images - 4]) + "\n")
    (root / "splits" / "Flickr_8k.devImages.txt").write_text("\n".join(names[n_images - 4 : n_images - 3]) + "\n")
    (root / "splits" / "Flickr_8k.testImages.txt").write_text("\n".join(names[n_images - 3 :]) + "\n")
    return root


def caption_run(tmp: Path, bits: int = 16) -> tuple[Path, Path]:
    """(data root, run folder): DJSRH on a tiny Flickr8k layout (official split), tiny image encoder + word BoW."""
    root = write_flickr8k_fixture(tmp / "f8k")
    cache = tmp / "cache"
    assert cli(["features", "extract", "--dataset", "flickr8k", "--data-root", str(root), "--image-encoder", "tiny-image",
                "--text-encoder", "bow", "--text-option", "min_count=1", "--out", str(cache), "--no-progress"]) == 0
    run = tmp / "run"
    args = ["train", "djsrh", "--dataset", "flickr8k", "--data-root", str(root), "--features", str(cache), "--bits", str(bits),
            "--epochs", "3", "--set", "hidden=32", "--set", "batch_size=8", "--split", "official", "--num-val", "0", "--out", str(run), "--no-progress"]
    assert cli(args) == 0
    return root, run


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A loopback port that was free a moment ago (for a server started in another process)."""
    with free_socket() as sock:
        return sock.getsockname()[1]


def start_serve(index: Path, port: int, env: dict) -> subprocess.Popen:
    """`cmhash serve --index INDEX` on 127.0.0.1:PORT in its own process, output piped."""
    cmd = [sys.executable, "-m", "cmhash", "serve", "--index", str(index), "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_until_healthy(proc: subprocess.Popen, url: str, timeout: float = 60.0, interval: float = 0.2) -> None:
    """Poll ``url``/health until it answers 200; RuntimeError (with the server's output) if the
    process exits first or ``timeout`` seconds pass."""
    import httpx

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"cmhash serve exited with status {proc.returncode}:\n{proc.stdout.read().decode()}")
        if time.time() > deadline:
            raise RuntimeError(f"cmhash serve did not answer {url}/health within {timeout:.0f} s")
        time.sleep(interval)


@contextlib.contextmanager
def serving(app):
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
