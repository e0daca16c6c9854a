"""Build the service from its configuration: open the index, load and warm up the model, make the app.

One process serves: adds and deletes change its in-memory index and rewrite the file, which
several worker processes could not share (a second worker process gained nothing on the loaded
2-core development machine either: 180 vs 174 requests/s).
"""

import sys
from typing import Any


#: GIL switch interval of the service. The event loop and the batching thread share the GIL, and a
#: batch gives it up ~20 times (every torch op and faiss call) and must then wait for the event loop
#: to hand it back, up to this long each time: at 1 ms a batch with 3 ms of CPU took 9-11 ms, p99
#: 27-30 ms; at 0.3 ms 5-7 ms, p99 18 ms, and the load test's p99 was lower in 3 of 3 paired runs
#: (2-core machine at load 4; Python's default is 5 ms).
SWITCH_INTERVAL = 0.0003


def load_service(config: dict[str, Any]):
    """(index, app) for ``config``: index path, checkpoint, backend overrides, threads, upload limit, API key.

    It tunes the whole process for serving (GIL switch interval, torch threads, ``gc.freeze`` of
    what it loaded), so call it in the process that serves (``cmhash serve`` does), not inside
    another application.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    threads = config.get("threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))  # once for the process; queries are small
    from cmhash.index.search import open_index
    from cmhash.serve.app import create_app

    index = open_index(config["index"], model=config.get("checkpoint"), **(config.get("overrides") or {}))
    index.model  # load and check the model now, not on the first query
    warm_up(index)
    app = create_app(index, api_key=config.get("api_key"), max_upload_bytes=int(config["max_upload_bytes"]))
    app.state.thumbnails.warm(index)
    freeze_loaded_objects()
    return index, app


def freeze_loaded_objects() -> None:
    """Move everything loaded so far (the index's per-item metadata, the model) out of the garbage collector's sight.

    A 100k-item index holds ~400k Python objects that live as long as the service; every full
    collection walked all of them (0.35 s on the 2-core development machine, with every request
    in flight waiting), which was the load test's worst latency. They are still freed by
    reference counting when an item is deleted; only cycles among them would not be collected.
    """
    import gc

    gc.collect()
    gc.freeze()


def warm_up(index) -> None:
    """Load the text (MiniLM) and image encoders before the first request rather than during it."""
    from cmhash.errors import CmhashError

    try:
        index.search_text(index.model.vocabulary.tokens[0] if index.model.vocabulary is not None else "a photo", k=1)
    except CmhashError:
        pass
    try:
        from PIL import Image

        index.model.encode_image(Image.new("RGB", (64, 64), (128, 128, 128)))
    except CmhashError:
        pass  # a model without an image encoder still serves text queries


__all__ = ["SWITCH_INTERVAL", "freeze_loaded_objects", "load_service", "warm_up"]
