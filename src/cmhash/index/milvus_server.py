"""Start and stop an embedded Milvus Standalone (the ``milvus`` PyPI package) on 127.0.0.1.

For tests, benchmarks and trying the Milvus backend on one machine; production users point the
backend at their own Milvus by URI. ``milvus-lite`` cannot be used: it has no binary vectors.

    with embedded_milvus("/tmp/mv") as uri:
        index = create_index("milvus", bits=64, uri=uri, collection="demo")
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from cmhash.errors import CmhashError, require

#: every Milvus component listens on its own port; each gets a free one, bound to loopback only
_PORT_KEYS = (
    "proxy_port",
    "proxy_internal_port",
    "etcd_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)
_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")


def _free_ports(n: int) -> list[int]:
    """n distinct ports that are free now, drawn at random so parallel runs rarely collide."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < n:
        port = rng.randrange(20000, 60000)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


class EmbeddedMilvus:
    """One embedded Milvus server process listening on 127.0.0.1 with random free ports."""

    def __init__(self, data_dir: str | os.PathLike | None = None, start_timeout_s: float = 120.0):
        milvus = require("milvus", "the embedded Milvus server", extra="milvus")
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cmhash-milvus-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        ports = _free_ports(len(_PORT_KEYS) + 1)
        config = milvus.MilvusServerConfig(data_dir=str(self.data_dir), **dict(zip(_PORT_KEYS, ports)))
        self._server = milvus.MilvusServer(config)
        self._server.webservice_port = ports[-1]  # health/metrics port (the package scans upward from it)
        for component in _COMPONENTS:
            self._server.config.set(f"{component}.ip", "127.0.0.1")
        self._timeout_ms = int(start_timeout_s * 1000)
        self.port = ports[0]

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        try:
            self._server.start()  # waits for the health check (its default timeout is 180 s)
        except Exception as exc:
            self.stop()
            log = self.data_dir / "logs" / "milvus-stderr.log"
            raise CmhashError(f"the embedded Milvus server did not start ({exc}); see {log}") from exc
        return self.uri

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._server.stop()
        if self._tmp is not None:
            with contextlib.suppress(Exception):
                self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_milvus(data_dir: str | os.PathLike | None = None) -> Iterator[str]:
    """Context manager: start an embedded Milvus, yield its URI, stop it (and delete a temp data dir)."""
    server = EmbeddedMilvus(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
