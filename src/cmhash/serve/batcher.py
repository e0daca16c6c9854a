"""Dynamic batching of text queries: the queries that arrive while one batch runs form the next.

One forward pass of the text network reads all its weights (22 MB for a 1,386 -> 4,096 layer),
so 16 single-row passes cost nearly 16 times one 16-row pass; the Hamming scan batches too. A
lone query is never held back (no waiting window): the worker takes whatever is queued the
moment it is free. Measured on 2 cores (16 clients, 100k items, 64 bits): see docs/serve.md.
"""

import asyncio
import queue
import threading
from typing import Any, Callable


class QueryBatcher:
    """Run ``fn(list_of_inputs) -> list_of_outputs`` on batches in one worker thread; ``submit`` awaits one result."""

    def __init__(self, fn: Callable[[list], list], max_batch: int = 64, name: str = "cmhash-batcher"):
        self.fn, self.max_batch = fn, max_batch
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.batches = 0
        self.items = 0

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put((item, fut, loop))
        return await fut

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                batch.append(nxt)
            try:
                outs = self.fn([b[0] for b in batch])
                results = [(o, None) for o in outs]
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                results = [(None, exc)] * len(batch)
            self.batches += 1
            self.items += len(batch)
            for (_, fut, loop), (out, exc) in zip(batch, results):
                loop.call_soon_threadsafe(_resolve, fut, out, exc)

    def close(self) -> None:
        self._q.put(None)


def _resolve(fut, out, exc) -> None:
    if fut.done():  # the client went away
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(out)


__all__ = ["QueryBatcher"]
