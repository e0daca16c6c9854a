"""`cmhash serve` over HTTP: a real client against uvicorn on loopback (no test client shortcuts)."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import cmhash
from cmhash.cli import main as cli
from serve_fixtures import free_port, serving, start_serve, tag_index, wait_until_healthy

torch.set_num_threads(1)
KEY = "s3cret-key-for-tests"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tag_index(tmp_path_factory.mktemp("serve"), backend="faiss")


@pytest.fixture()
def server(built, tmp_path):
    from cmhash.serve import create_app

    root, run, idx = built
    mine = tmp_path / "mir.idx"
    mine.write_bytes(idx.read_bytes())
    index = cmhash.open_index(mine)
    with serving(create_app(index, api_key=KEY, max_upload_bytes=200_000)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, root, mine


def test_the_service_hides_the_loaded_index_from_the_garbage_collector(built, tmp_path):
    """Full collections must not walk the index's per-item objects (0.35 s per collection at 100k items)."""
    import gc

    from cmhash.serve.factory import SWITCH_INTERVAL, load_service

    _, _, idx = built
    mine = tmp_path / "mir.idx"
    mine.write_bytes(idx.read_bytes())
    frozen_before = gc.get_freeze_count()
    interval = sys.getswitchinterval()
    try:
        index, app = load_service({"index": str(mine), "checkpoint": None, "overrides": {}, "threads": 1, "max_upload_bytes": 1 << 20, "api_key": None})
        meta = index.index.get_metadata(index.index.primary.ids()[:1])[0]
        assert gc.is_tracked(meta) and gc.get_freeze_count() > frozen_before + len(index)
        assert not any(o is meta for o in gc.get_objects())  # in the permanent generation, not in 0-2
        with serving(app) as url:  # and it still answers
            r = httpx.get(url + "/search", params={"q": "dog", "k": 3}, timeout=30)
            assert r.status_code == 200 and len(r.json()["results"]) == 3
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)  # the batching thread gets the GIL back soon
        app.state.batcher.close()
    finally:
        gc.unfreeze()
        sys.setswitchinterval(interval)


def test_a_retrained_checkpoint_is_refused_by_the_running_service(built, tmp_path):
    """Queries are read on arrival without touching the checkpoint; the batch's encode still checks it."""
    from cmhash.serve import create_app

    import shutil

    _, run, _ = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    own = tmp_path / "own.idx"
    assert cli(["index", "build", "--checkpoint", str(copy), "--backend", "numpy", "--out", str(own)]) == 0
    app = create_app(cmhash.open_index(own))
    with serving(app) as url:
        assert httpx.get(url + "/search", params={"q": "dog"}, timeout=30).status_code == 200
        ck = torch.load(copy / "checkpoint.pt", weights_only=False)
        ck["meta"] = dict(ck.get("meta") or {}, retrained=True)
        torch.save(ck, copy / "checkpoint.pt")
        r = httpx.get(url + "/search", params={"q": "dog"}, timeout=30)
        assert r.status_code == 400 and "retrained or replaced" in r.json()["error"]
        assert httpx.get(url + "/health", timeout=30).status_code == 200
    app.state.batcher.close()


def test_thumbnails_are_resolved_at_start_up_not_per_result(built, tmp_path, monkeypatch):
    from cmhash.serve import create_app

    root, _, idx = built
    index = cmhash.open_index(idx)
    app = create_app(index)
    refs = {m["image"] for m in index.index.get_metadata(index.index.primary.ids()) if m and m.get("image")}
    assert app.state.thumbnails.warm(index) == len(refs) > 0
    assert app.state.thumbnails.warm(index) == 0  # already known
    index.model  # loaded and checked once, as `cmhash serve` does at start-up

    def no_stat(self):
        raise AssertionError(f"stat of {self} while answering a search")

    monkeypatch.setattr(Path, "is_file", no_stat)
    with serving(app) as url:
        hits = httpx.get(url + "/search", params={"q": "dog", "k": 5}, timeout=30).json()["results"]
    assert len(hits) == 5 and all(h["thumbnail"] for h in hits)
    app.state.batcher.close()


def test_text_search_returns_ranked_pictures_with_thumbnails(server):
    client, root, _ = server
    r = client.get("/search", params={"q": "dog sky", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["read_as"] == "dog, sky" and len(body["results"]) == 5
    d = [h["distance"] for h in body["results"]]
    assert d == sorted(d)
    first = body["results"][0]
    assert first["image"].endswith(".jpg") and first["text"] and first["thumbnail"].startswith("/thumbnails/")
    t = client.get(first["thumbnail"])
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg" and t.content[:2] == b"\xff\xd8"
    item = client.get(f"/items/{first['id']}").json()
    assert item["id"] == first["id"] and item["image"] == first["image"]


def test_image_upload_returns_texts(server):
    client, root, _ = server
    photo = root / "images128" / "im3.jpg"
    r = client.post("/search/image", files={"image": ("x.bin", photo.read_bytes(), "application/octet-stream")}, data={"k": "4"})
    assert r.status_code == 200, r.text  # decided by decoding, not by the name or the declared type
    res = r.json()["results"]
    assert len(res) == 4 and all(h["modality"] == "text" and h["text"] for h in res)


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server):
    client, root, _ = server
    r = client.get("/search", params={"q": "xyzzy"})
    assert r.status_code == 422 and r.json()["kind"] == "unreadable_query"
    assert "vocabulary of 8 tags" in r.json()["error"] and r.json()["suggestions"]
    assert client.get("/search", params={"q": ""}).status_code == 422
    assert client.get("/search", params={"q": "dog", "k": 0}).status_code == 422
    assert client.get("/search", params={"q": "dog", "k": 100000}).status_code == 422
    assert client.get("/search", params={"q": "dog", "target": "sql"}).status_code == 422
    huge = b"\xff\xd8" + os.urandom(300_000)
    assert client.post("/search/image", files={"image": ("big.jpg", huge, "image/jpeg")}).status_code == 413
    r = client.post("/search/image", files={"image": ("cat.jpg", b"not an image at all" * 10, "image/jpeg")})
    assert r.status_code == 415 and r.json()["kind"] == "not_an_image"
    assert client.post("/search/image", data={"k": "3"}).status_code == 400
    from PIL import Image

    bomb = io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, "PNG")  # tiny file, 81 M pixels
    assert client.post("/search/image", files={"image": ("b.png", bomb.getvalue(), "image/png")}).status_code == 413
    assert client.get("/items/nope").status_code == 404
    for evil in ("/thumbnails/..%2F..%2F..%2Fetc%2Fpasswd", "/thumbnails/../../etc/passwd", "/thumbnails/%2Fetc%2Fpasswd"):
        r = client.get(evil)
        assert r.status_code == 404 and b"root:" not in r.content
    assert client.get("/search", params={"q": "dog"}).status_code == 200  # still serving


def test_health_and_prometheus_metrics(server):
    client, _, _ = server
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["items"] == 40 and h["bits"] == 16 and h["backend"] == "faiss"
    assert h["model"]["method"] == "djsrh" and "8" in h["model"]["text_input"]
    client.get("/search", params={"q": "dog"})
    client.get("/search", params={"q": "xyzzy"})
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    assert 'cmhash_requests_total{method="GET",route="/search",status="200"}' in text
    assert 'cmhash_queries_total{kind="text",outcome="unreadable"}' in text
    assert 'cmhash_index_items{modality="image"} 40.0' in text and "cmhash_request_seconds_bucket" in text


def test_writes_need_the_api_key_and_persist(server):
    client, root, path = server
    form = {"id": "new1", "text": "dog, sea"}
    img = {"image": ("n.jpg", (root / "images128" / "im5.jpg").read_bytes(), "image/jpeg")}
    assert client.post("/items", data=form, files=img).status_code == 401
    assert client.post("/items", data=form, files=img, headers={"X-API-Key": KEY + "x"}).status_code == 401
    assert client.delete("/items/im1", headers={"X-API-Key": "wrong"}).status_code == 401
    r = client.post("/items", data=form, files=img, headers={"X-API-Key": KEY})
    assert r.status_code == 201, r.text
    assert client.post("/items", data=form, files=img, headers={"Authorization": f"Bearer {KEY}"}).status_code == 409
    assert client.post("/items", data={"id": "t2", "text": "dog"}, headers={"X-API-Key": KEY}).status_code == 400  # image missing
    assert client.get("/items/new1").json()["text"] == "dog, sea"
    assert client.get("/thumbnails/new1").status_code == 200  # the uploaded picture is kept beside the index
    assert cmhash.open_index(path).index.contains(["new1"])[0]  # on disk before the answer
    assert client.delete("/items/new1", headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/items/new1").status_code == 404
    assert client.delete("/items/new1", headers={"X-API-Key": KEY}).status_code == 404
    assert not cmhash.open_index(path).index.contains(["new1"])[0]


def test_an_acknowledged_add_survives_kill_9(built, tmp_path):
    root, run, idx = built
    mine = tmp_path / "mir.idx"
    mine.write_bytes(idx.read_bytes())
    port = free_port()
    env = dict(os.environ, CMHASH_API_KEY=KEY, PYTHONPATH=os.pathsep.join([str(Path(cmhash.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = start_serve(mine, port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(proc, url, timeout=60)
        img = {"image": ("n.jpg", (root / "images128" / "im9.jpg").read_bytes(), "image/jpeg")}
        r = httpx.post(url + "/items", data={"id": "kept", "text": "cat, night"}, files=img, headers={"X-API-Key": KEY}, timeout=30)
        assert r.status_code == 201, r.text
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    index = cmhash.open_index(mine)
    assert index.index.contains(["kept"])[0] and len(index) == 41
    assert index.get("kept")["text"] == "cat, night"


def test_kill_9_at_random_moments_of_a_stream_of_writes_keeps_a_good_index(built, tmp_path):
    """Adds and deletes stream in; SIGKILL lands at a seeded random moment (3 rounds, each restarting
    the service on the file the last one left): the index file always opens and holds exactly the
    acknowledged writes, give or take the one write in flight at the kill."""
    import random
    import threading
    import time

    root, run, idx = built
    mine = tmp_path / "mir.idx"
    mine.write_bytes(idx.read_bytes())
    env = dict(os.environ, CMHASH_API_KEY=KEY, PYTHONPATH=os.pathsep.join([str(Path(cmhash.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    picture = (root / "images128" / "im9.jpg").read_bytes()
    rnd = random.Random(14)
    present: set[str] = set()  # ids whose add was acknowledged and whose delete was not
    landed = writes = 0
    for round_ in range(3):
        port = free_port()
        proc = start_serve(mine, port, env)
        url = f"http://127.0.0.1:{port}"
        inflight: list = [None]  # (op, id) of the request on the wire, None between requests
        stop = threading.Event()

        def writer():
            nonlocal writes
            i = 0
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    item = f"r{round_}-{i}"
                    ops = [("add", item)] + ([("delete", f"r{round_}-{i - 1}")] if i % 3 == 2 else [])
                    for op, target in ops:
                        inflight[0] = (op, target)
                        try:
                            if op == "add":
                                img = {"image": ("n.jpg", picture, "image/jpeg")}
                                r = client.post(url + "/items", data={"id": target, "text": "cat, night, dog"}, files=img, headers={"X-API-Key": KEY})
                            else:
                                r = client.delete(url + f"/items/{target}", headers={"X-API-Key": KEY})
                        except httpx.TransportError:
                            return  # killed: inflight names the write whose fate is unknown
                        assert r.status_code == (201 if op == "add" else 200), r.text
                        (present.add if op == "add" else present.discard)(target)
                        writes += 1
                        inflight[0] = None
                    i += 1

        try:
            wait_until_healthy(proc, url, timeout=60)
            t = threading.Thread(target=writer)
            t.start()
            time.sleep(rnd.uniform(0.5, 2.5))
            landed += proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            stop.set()
            t.join(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        index = cmhash.open_index(mine)  # opens: no kill left a half-written file
        ids = {str(i) for i in index.index.primary.ids() if str(i).startswith("r")}
        allowed = {frozenset(present)}
        if inflight[0] is not None:
            op, target = inflight[0]
            allowed.add(frozenset(present | {target}) if op == "add" else frozenset(present - {target}))
        assert frozenset(ids) in allowed, f"round {round_}: index holds {sorted(ids ^ present)} beyond the acknowledged writes (in flight: {inflight[0]})"
        print(f"serve round {round_}: {writes} writes acknowledged so far, {len(ids)} streamed items on disk, in flight at the kill: {inflight[0]}")
        present = set(ids)  # a write in flight that reached the disk is part of the last good state
    assert landed == 3, f"only {landed} of 3 kills landed while the service ran"
    assert writes >= 3, f"only {writes} acknowledged writes before the kills"


@pytest.mark.milvus
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "milvus"])
def test_the_service_works_over_numpy_and_milvus_indexes(built, tmp_path, tmp_path_factory, backend):
    """Same answers as faiss for a text query; adds and deletes reach the backend (Milvus: a real embedded server)."""
    from cmhash.serve import create_app

    root, run, faiss_idx = built
    extra = []
    server = None
    if backend == "milvus":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus")
        from cmhash.errors import CmhashError
        from cmhash.index.milvus_server import EmbeddedMilvus

        server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus-data"))
        try:
            uri = server.start()
        except CmhashError as exc:
            pytest.skip(f"the embedded Milvus server could not start here: {exc}")
        extra = ["--milvus-uri", uri, "--milvus-collection", "serve" + tmp_path.name[-6:].replace("-", "_"), "--milvus-drop"]
    try:
        idx = tmp_path / f"{backend}.idx"
        assert cli(["index", "build", "--checkpoint", str(run), "--backend", backend, "--split", "all", "--out", str(idx), *extra]) == 0
        want = [(h.id, h.distance) for h in cmhash.open_index(faiss_idx).search_text("dog sky", k=40)]
        index = cmhash.open_index(idx)
        with serving(create_app(index, api_key=KEY)) as url, httpx.Client(base_url=url, timeout=60) as client:
            res = client.get("/search", params={"q": "dog sky", "k": 40}).json()["results"]
            assert sorted((h["id"], h["distance"]) for h in res) == sorted(want)
            img = {"image": ("n.jpg", (root / "images128" / "im5.jpg").read_bytes(), "image/jpeg")}
            assert client.post("/items", data={"id": "added", "text": "dog, sky"}, files=img, headers={"X-API-Key": KEY}).status_code == 201
            ids = [h["id"] for h in client.get("/search", params={"q": "dog sky", "k": 41}).json()["results"]]
            assert "added" in ids and client.get("/health").json()["items"] == 41
            assert client.delete("/items/added", headers={"X-API-Key": KEY}).status_code == 200
            assert "added" not in [h["id"] for h in client.get("/search", params={"q": "dog sky", "k": 41}).json()["results"]]
        index.close()
    finally:
        if server is not None:
            server.stop()
