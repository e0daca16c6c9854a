"""Bounded load test of `cmhash serve` on loopback: N concurrent clients, fixed duration, capped requests.

Builds (once, under --work) an index of --items items at the model's code length: the model's
own collection (real codes, texts and pictures) padded with random codes that reuse its items'
texts and pictures, so Hamming scans cost what they would on a real collection of that size.
Starts `cmhash serve` on 127.0.0.1 in its own process, then runs, for text queries and then for
image queries, N closed-loop clients (each sends its next request when the previous answer
arrives) for --duration seconds or until --max-requests answers, and prints requests/s, p50/p99
latency, errors, and the CPU per answered request of the server and of the load generator (which
shares the machine's cores). Only loopback is ever contacted. Figures: docs/serve.md.

Target on the 2-core development machine: 0 errors and p99 < 50 ms for text queries on a
100k-item index at 64 bits with 16 concurrent clients.

    python benchmarks/serve_bench.py --run runs/mir64                 # a trained run (text + image queries)
    python benchmarks/serve_bench.py                                   # trains a small synthetic 64-bit model (text only)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the loopback server helpers the service tests use (free port, `cmhash serve` process, /health wait)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_fixtures import free_port, start_serve, wait_until_healthy  # noqa: E402


def build_index(run: Path | None, items: int, work: Path, seed: int) -> tuple[Path, Path]:
    from cmhash.cli import main as cli
    from cmhash.index import load_index

    work.mkdir(parents=True, exist_ok=True)
    if run is None:
        run = work / "synthetic-64"
        if not (run / "checkpoint.pt").is_file():
            args = ["train", "djsrh", "--dataset", "synthetic", "-o", "n=3000", "--bits", "64", "--epochs", "5", "--split", "random",
                    "--split-param", "num_query=200", "--split-param", "num_train=2000", "--num-val", "0", "--threads", "1", "--out", str(run), "--no-progress"]
            assert cli(args) == 0
    base = work / f"{run.name}-base.index"
    if not base.is_file():
        assert cli(["index", "build", "--checkpoint", str(run), "--split", "all", "--backend", "faiss", "--out", str(base)]) == 0
    out = work / f"{run.name}-{items}.index"
    index = load_index(base)
    if out.is_file() and load_index(out, verify=False).count == items and load_index(out, verify=False).info.get("checkpoint_sha256") == index.info.get("checkpoint_sha256"):
        return out, run
    n0 = index.count
    pad = items - n0
    if pad > 0:
        rng = np.random.default_rng(seed)
        ids = index.primary.ids()
        metas = index.get_metadata(ids)
        take = rng.integers(0, n0, size=pad)
        codes = {m: rng.choice(np.array([-1, 1], dtype=np.int8), size=(pad, index.bits)) for m in index.modalities}
        new_ids = np.asarray([f"pad{i}" for i in range(pad)])
        index.add(new_ids, image_codes=codes.get("image"), text_codes=codes.get("text"), metadata=[dict(metas[j] or {}, padded=True) for j in take])
    index.save(out)
    return out, run


class _Conn:
    """A minimal HTTP/1.1 keep-alive connection (asyncio streams): the load generator must cost far
    less CPU than the server it measures, and on 2 cores a full HTTP client library does not."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measured(pid: int, run) -> dict:
    """``run()``'s result with the CPU it cost per answered request: the server's (its process) and the
    load generator's (this process), so a reader can see that the clients did not starve the server."""
    s0, c0 = process_cpu_seconds(pid), time.process_time()
    r = run()
    s1, c1 = process_cpu_seconds(pid), time.process_time()
    n = max(1, r["ok"])
    r["server_cpu_ms_per_request"] = None if s0 is None or s1 is None else round((s1 - s0) / n * 1000, 3)
    r["client_cpu_ms_per_request"] = round((c1 - c0) / n * 1000, 3)
    return r


def get_request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode()


def multipart_request(host: str, path: str, fields: dict, filename: str, data: bytes) -> bytes:
    boundary = "cmhashbench7f3a"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    return head.encode() + body


async def _load(port: int, requests: list[bytes], clients: int, duration: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    stop_at = time.perf_counter() + duration

    async def client(rng: random.Random):
        nonlocal sent
        conn = _Conn("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                raw = rng.choice(requests)
                t0 = time.perf_counter()
                try:
                    status = await asyncio.wait_for(conn.request(raw), 30)
                    key = None if status == 200 else f"HTTP {status}"
                except Exception as exc:  # noqa: BLE001 - every failure is counted, not raised
                    conn.close()
                    key = type(exc).__name__
                dt = time.perf_counter() - t0
                if key is None:
                    latencies.append(dt)
                else:
                    errors[key] = errors.get(key, 0) + 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(random.Random(i)) for i in range(clients)))
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "max_ms": round(float(lat.max()), 2) if lat.size else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="trained run to serve (default: train a small synthetic 64-bit model)")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per query kind")
    p.add_argument("--max-requests", type=int, default=20_000, help="cap per query kind")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--image-clients", type=int, default=None, help="clients for image queries (default: --clients)")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("CMHASH_BENCH_DIR", Path.home() / ".cache" / "cmhash" / "serve-bench")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.max_requests < 1 or args.clients < 1:
        p.error("--duration, --max-requests and --clients must be positive")

    import cmhash

    index_path, run = build_index(args.run, args.items, args.work, args.seed)
    index = cmhash.open_index(index_path)
    metas = index.index.get_metadata(index.index.primary.ids()[: min(5000, len(index))])
    texts = [m["text"] for m in metas if m and m.get("text")]
    texts = [t for t in texts if _readable(index, t)][:2000]
    images = sorted({m["image"] for m in metas if m and m.get("image") and Path(m["image"]).is_file()})[:200]
    image_bytes = [Path(x).read_bytes() for x in images[:50]]
    bits, count = index.index.bits, len(index)
    index.close()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CMHASH_THREADS="1")
    server = start_serve(index_path, port, env)
    try:
        import httpx

        try:
            wait_until_healthy(server, url, timeout=120, interval=0.3)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        results = {"index": str(index_path), "items": count, "bits": bits, "clients": args.clients, "k": args.k, "cores": os.cpu_count(),
                   "load_average_before": os.getloadavg()}

        from urllib.parse import urlencode

        host = f"127.0.0.1:{port}"
        text_req = [get_request(host, "/search?" + urlencode({"q": t, "k": args.k})) for t in texts]
        image_req = [multipart_request(host, "/search/image", {"k": args.k}, "q.jpg", data) for data in image_bytes]

        # warm-up (model load, allocator) is not measured
        asyncio.run(_load(port, text_req, 2, 2.0, 200))
        before = httpx.get(url + "/health").json().get("text_batches", {})
        results["text"] = measured(server.pid, lambda: asyncio.run(_load(port, text_req, args.clients, args.duration, args.max_requests)))
        after = httpx.get(url + "/health").json().get("text_batches", {}) if before else {}
        if after:
            n_b = after["batches"] - before["batches"]
            results["text"]["mean_batch"] = round((after["queries"] - before["queries"]) / max(1, n_b), 2)
        if image_bytes:
            asyncio.run(_load(port, image_req, 2, 2.0, 10))
            results["image"] = measured(server.pid, lambda: asyncio.run(_load(port, image_req, args.image_clients or args.clients, args.duration, args.max_requests)))
        else:
            results["image"] = "skipped: the model has no image encoder or the collection has no image files"
        results["load_average_after"] = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    la0, la1 = results["load_average_before"], results.get("load_average_after", (float("nan"),) * 3)
    print(f"cmhash serve on loopback: {count:,} items, {bits} bits, k={args.k}, "
          f"{os.cpu_count()} cores, load average (1 min) before {la0[0]:.1f}, after {la1[0]:.1f}")
    print("| queries | clients | requests | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/req | client CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("text", "image"):
        r = results[kind]
        if isinstance(r, str):
            print(f"| {kind} | - | - | - | - | - | - | {r} | - | - |")
            continue
        n = args.clients if kind == "text" else (args.image_clients or args.clients)
        print(f"| {kind} | {n} | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | "
              f"{r['errors']} {r['error_kinds'] or ''} | {r['server_cpu_ms_per_request']} | {r['client_cpu_ms_per_request']} |")
    t = results["text"]
    print(f"text queries per model batch (dynamic batching): {t.get('mean_batch')}")
    met = t["errors"] == 0 and t["p99_ms"] is not None and t["p99_ms"] < 50
    print(f"target (text: 0 errors, p99 < 50 ms): {'met' if met else 'NOT met'}")
    return 0


def _readable(index, text: str) -> bool:
    from cmhash.errors import DataError

    try:
        index.model.read_text(text)
        return True
    except DataError:
        return False


if __name__ == "__main__":
    sys.exit(main())
