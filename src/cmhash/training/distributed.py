"""Data-parallel training with ``torchrun``: process group set-up from the environment.

``torchrun --nproc_per_node 2 -m cmhash train djsrh ...`` starts two processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` set; :func:`init_from_env` joins them
(``gloo`` on CPU, ``nccl`` on GPUs). Rank 0 alone writes files, evaluates and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for a single process)."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return current()
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, backend=backend)


def current() -> DistInfo:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return DistInfo()
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())
    return DistInfo()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown(wait: bool = True) -> None:
    """Leave the process group; ``wait``: first meet every rank at a barrier.

    Rank 0 evaluates and writes files after training while the other ranks are done; a rank that
    tore down its gloo group then could abort at exit ("terminate called without an active
    exception", seen about 1 run in 10 on a busy machine). After an error there is no barrier, so
    a failing rank does not wait for ever.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


__all__ = ["DistInfo", "barrier", "current", "init_from_env", "shutdown"]
