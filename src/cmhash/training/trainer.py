"""The one training loop of every deep method (DJSRH now, JDSH and others later).

What it does per run (:class:`Trainer`):

* seeds everything from ``seed`` (network initialisation, dropout, batch order), so a CPU run is
  repeatable; the batch order of epoch t is ``randperm`` of a generator seeded with (seed, t),
  batches of ``batch_size`` with drop_last;
* per epoch: ``method.on_epoch_start(t, train)`` (t from 1; ``train`` is the whole training set
  on the device, :class:`~cmhash.training.batch.TrainingSet`), one step of every optimiser of
  ``method.make_optimizers()`` per batch on the loss of ``method.training_loss(batch)``
  (``method.before_step()`` between backward and step: UCCH clips gradients;
  ``method.after_step(batch, optimizers)`` after it: DGCPN's binary half-steps), a progress bar with the running loss, a log row (CSV; TensorBoard when installed),
  evaluation on a validation split every ``eval_every`` epochs and at the end (never on the
  query set), then an atomic checkpoint;
* ``resume=True`` continues from the checkpoint in ``run_dir`` and reaches the same final weights
  as an uninterrupted run (bit-identical on CPU): weights of every network and learnable
  parameter in ``method.nets``, the method's ``training_state()``, every optimiser's state, RNG
  states and the log are restored and the batch order only depends on (seed, epoch);
* data-parallel over processes/GPUs when started by ``torchrun`` (DDP; gloo on CPU): every rank
  draws the same permutation and takes every world-th batch, so one step consumes
  ``world_size * batch_size`` pairs and an epoch has ``floor(n / batch_size) // world_size``
  steps. Each rank's loss uses its own local batch of ``batch_size`` (S is per local batch).

Feature mode keeps the whole training set as two tensors on the device and indexes them (no
DataLoader, no per-sample Python); backbone mode streams augmented images through a DataLoader.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cmhash.errors import CmhashError
from cmhash.io import atomic_open
from cmhash.training import distributed as D
from cmhash.training.batch import InputSpec
from cmhash.training.checkpoint import read_payload, rng_state, save_payload, set_rng_state
from cmhash.training.sources import make_source

CHECKPOINT = "checkpoint.pt"
LOG_CSV = "train_log.csv"


@dataclass
class TrainConfig:
    """Options of the loop (the method's own hyper-parameters live in the method)."""

    epochs: int
    batch_size: int = 32
    seed: int = 0
    run_dir: str | None = None  # checkpoint + logs go here; None writes nothing
    resume: bool = False
    eval_every: int = 0  # validation every N epochs (0: only after the last epoch)
    select: str = "last"  # "last" (report the final epoch) | "best-val" (best validation mAP)
    progress: Any = True  # True: tqdm bar; False: none; callable(step, total_steps, mean_loss)
    tensorboard: bool = True  # used when the tensorboard package is installed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0  # image loader workers (backbone mode)
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        if int(self.epochs) < 1:
            raise CmhashError(f"epochs must be at least 1, got {self.epochs}")
        if int(self.batch_size) < 2:
            raise CmhashError(f"batch_size must be at least 2, got {self.batch_size}")
        if self.select not in ("last", "best-val"):
            raise CmhashError(f"select must be 'last' or 'best-val', got '{self.select}'")


def resolve_device(pref: str, dist: D.DistInfo) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda" and dist.enabled:
        pref = f"cuda:{dist.local_rank}"
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise CmhashError("--device cuda was asked for but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(pref)


def tune_cpu_allocator() -> bool:
    """Keep freed large blocks in the heap (glibc ``mallopt``) so per-step gradients stop page-faulting.

    PyTorch allocates every gradient afresh; glibc serves blocks above its mmap threshold with
    ``mmap`` and returns them on free, so each step re-faults ~30 MB of zero pages (measured: 17 ms
    of system time per MIRFlickr step, ``benchmarks/train_bench.py``). Raising the mmap threshold
    to 32 MB (glibc's maximum) and the trim threshold to 1 GB stops that. Linux/glibc only;
    ``CMHASH_NO_MALLOPT=1`` turns it off.
    """
    import ctypes
    import os
    import sys

    if os.environ.get("CMHASH_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Index batches of one epoch, (steps, batch_size): same permutation on every rank, drop_last."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    perm = torch.randperm(n, generator=g)
    steps = n // batch_size
    if steps == 0:
        raise CmhashError(f"the training set has {n} pairs, fewer than one batch of {batch_size}")
    batches = perm[: steps * batch_size].view(steps, batch_size)
    if world_size > 1:
        per_rank = steps // world_size
        if per_rank == 0:
            raise CmhashError(f"{steps} batches cannot be shared by {world_size} processes")
        batches = batches[rank : per_rank * world_size : world_size]
    return batches


# ---------------------------------------------------------------------------- logging
class EpochLog:
    """Per-epoch rows -> CSV (rewritten atomically each epoch) and TensorBoard when available."""

    def __init__(self, run_dir: Path | None, tensorboard: bool):
        self.path = None if run_dir is None else run_dir / LOG_CSV
        self.tb = None
        if run_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def write(self, history: list[dict[str, Any]]) -> None:
        if self.path is not None and history:
            cols: list[str] = []
            for row in history:
                cols += [k for k in row if k not in cols]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=cols)
            w.writeheader()
            for row in history:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
            with atomic_open(self.path, "w") as fh:
                fh.write(buf.getvalue())
        if self.tb is not None and history:
            row = history[-1]
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _split_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """How the split a run resumes with differs from the one its checkpoint trained on (empty: same, or unknown).

    The split is recomputed from protocol, parameters and seed on every start, so a changed default
    (a dataset's default parameters, a preset's) would otherwise continue the run on other pairs.
    """
    if not old or not new:  # checkpoints from before splits were recorded, or a run without one
        return []
    out = []
    for key in ("protocol", "seed"):
        if old.get(key) != new.get(key):
            out.append(f"split {key} {old.get(key)!r} != {new.get(key)!r}")
    a, b = old.get("params") or {}, new.get("params") or {}
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"split {k} {a.get(k)!r} != {b.get(k)!r}")
    fa, fb = (old.get("dataset") or {}).get("fingerprint"), (new.get("dataset") or {}).get("fingerprint")
    if fa and fb and fa != fb:
        out.append(f"split dataset fingerprint {fa} != {fb}")
    if not out and old.get("sizes") and new.get("sizes") and old["sizes"] != new["sizes"]:
        out.append(f"split sizes {old['sizes']} != {new['sizes']}")
    return out


# ---------------------------------------------------------------------------- trainer
class Trainer:
    """Runs :class:`TrainConfig` for a deep method (``cmhash.methods.deep.DeepHashMethod``) on a training :class:`PairedDataset`.

    ``validator(method) -> {"val_i2t_map@50": ..., ...}`` is called on rank 0 at evaluation epochs;
    ``meta`` is stored in every checkpoint (dataset, split, features) for ``load_checkpoint``.
    """

    def __init__(
        self,
        method,
        train,
        config: TrainConfig,
        *,
        spec: InputSpec,
        validator: Callable[[Any], dict[str, float]] | None = None,
        meta: dict[str, Any] | None = None,
    ):
        self.method = method
        self.train = train
        self.config = config
        self.spec = spec
        self.validator = validator
        self.meta = dict(meta or {})
        self.run_dir = None if config.run_dir is None else Path(config.run_dir)
        self.dist = D.current()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.start_epoch = 1

    # ------------------------------------------------------------------ helpers
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT

    def _payload(self, epoch: int, finished: bool) -> dict[str, Any]:
        payload = {
            "method": self.method.name,
            "bits": self.method.bits,
            "method_state": self.method.state(),
            "meta": self.meta,
            "epoch": epoch,
            "epochs": int(self.config.epochs),
            "finished": finished,
            "history": self.history,
            # field by field, not asdict(): asdict deep-copies, and a progress callback may hold a stream (the demo's bar)
            "train_config": {f.name: (bool(v) if f.name == "progress" else v) for f in fields(self.config) for v in [getattr(self.config, f.name)]},
        }
        if not finished:
            payload["optimizers"] = {k: o.state_dict() for k, o in self.optimizers.items()}
            payload["method_training_state"] = self.method.training_state()
            payload["rng"] = rng_state()
            payload["best"] = self.best
        elif self.best is not None:
            payload["best"] = {k: v for k, v in self.best.items() if k != "nets"}
        return payload

    def _check_resumable(self, payload: dict[str, Any]) -> None:
        m = self.method
        old = payload["method_state"]
        problems = []
        if payload["method"] != m.name:
            problems.append(f"method {payload['method']} != {m.name}")
        if int(payload["bits"]) != m.bits:
            problems.append(f"bits {payload['bits']} != {m.bits}")
        defaults = getattr(m, "DEFAULTS", {})
        for k, v in m.hparams.items():
            if old["hparams"].get(k, defaults.get(k)) != v and k not in ("fused_optimizer",):
                problems.append(f"{k} {old['hparams'].get(k)!r} != {v!r}")
        new_spec = self.spec.to_dict()
        old_spec = InputSpec.from_dict(old["spec"]).to_dict()  # earlier versions: later fields take their defaults
        for k in ("text_dim", "image_mode", "image_dim", "backbone", "finetune", "text_mode", "vocab_size"):  # not provenance strings or paths
            if old_spec.get(k) != new_spec.get(k):
                problems.append(f"input {k} {old_spec.get(k)!r} != {new_spec.get(k)!r}")
        cfg = payload.get("train_config", {})
        for k in ("seed", "batch_size", "epochs"):
            if k in cfg and cfg[k] != getattr(self.config, k):
                problems.append(f"{k} {cfg[k]} != {getattr(self.config, k)}")
        problems += _split_changes((payload.get("meta") or {}).get("split"), self.meta.get("split"))
        if problems:
            raise CmhashError(
                f"{payload['path']}: cannot resume, the checkpoint was made with other settings ({'; '.join(problems[:5])}). "
                "Use the same options, or a new --out folder"
            )

    # ------------------------------------------------------------------ main
    def fit(self) -> list[dict[str, Any]]:
        cfg, method, dist = self.config, self.method, self.dist
        device = resolve_device(cfg.device, dist)
        if device.type == "cpu":
            tune_cpu_allocator()
        resume_payload = None
        if cfg.resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            resume_payload = read_payload(self.checkpoint_path)
        torch.manual_seed(int(cfg.seed))
        np.random.seed(int(cfg.seed) % 2**32)
        import random

        random.seed(int(cfg.seed))
        method.setup(self.spec, for_training=True)
        method.to(device)
        if resume_payload is not None:
            self._check_resumable(resume_payload)
            method.load_net_state(resume_payload["method_state"]["nets"])
            self.history = list(resume_payload.get("history") or [])
            self.best = resume_payload.get("best")
            self.start_epoch = int(resume_payload["epoch"]) + 1
            if resume_payload.get("finished"):
                self.start_epoch = int(cfg.epochs) + 1
        self.optimizers = method.make_optimizers()
        if resume_payload is not None and not resume_payload.get("finished"):
            saved = resume_payload["optimizers"]
            if set(saved) != set(self.optimizers):
                raise CmhashError(
                    f"{resume_payload['path']}: cannot resume, the checkpoint has optimisers {sorted(saved)} but the method makes {sorted(self.optimizers)}"
                )
            for k, opt in self.optimizers.items():
                opt.load_state_dict(saved[k])
            method.load_training_state(resume_payload.get("method_training_state") or {})
            set_rng_state(resume_payload["rng"])
        elif dist.enabled:
            torch.manual_seed(int(cfg.seed) + 1009 * dist.rank)  # per-rank dropout masks
        if dist.enabled:
            self._wrap_ddp(device)
        method.train_info = {"device": str(device), "world_size": dist.world_size}
        method.history = self.history
        if self.start_epoch > cfg.epochs:  # finished: the checkpoint holds the final (or selected) weights
            return self.history

        log = EpochLog(self.run_dir if dist.is_main else None, cfg.tensorboard)
        source = make_source(self.train, self.spec, int(cfg.seed), device, cfg.num_workers, labels=bool(getattr(method, "uses_labels", False)))
        n = len(source)
        try:
            for epoch in range(self.start_epoch, int(cfg.epochs) + 1):
                row = self._run_epoch(epoch, source, n)
                if self.validator is not None and dist.is_main and self._eval_due(epoch):
                    t0 = time.perf_counter()
                    scores = self.validator(method)
                    row.update(scores)
                    row["val_seconds"] = time.perf_counter() - t0
                    self._maybe_keep_best(epoch, scores)
                self.history.append(row)
                method.history = self.history
                last = epoch == int(cfg.epochs)
                if last and cfg.select == "best-val" and self.best is not None:
                    method.load_net_state(self.best["nets"])
                if dist.is_main:
                    log.write(self.history)
                    if self.checkpoint_path is not None and (last or epoch % max(int(cfg.checkpoint_every), 1) == 0):
                        t0 = time.perf_counter()
                        save_payload(self.checkpoint_path, self._payload(epoch, finished=last))
                        row["checkpoint_seconds"] = time.perf_counter() - t0
                D.barrier()
        finally:
            log.close()
            self._unwrap_ddp()
        return self.history

    def _eval_due(self, epoch: int) -> bool:
        every = int(self.config.eval_every)
        return epoch == int(self.config.epochs) or (every > 0 and epoch % every == 0)

    def _maybe_keep_best(self, epoch: int, scores: dict[str, float]) -> None:
        if self.config.select != "best-val":
            return
        keys = [k for k in scores if k.startswith("val_") and k.endswith("map@50")]
        score = float(np.mean([scores[k] for k in keys])) if keys else -math.inf
        if self.best is None or score > self.best["score"]:
            nets = {k: {n: t.detach().cpu().clone() for n, t in v.state_dict().items()} for k, v in self.method.nets.items()}
            self.best = {"epoch": epoch, "score": score, "nets": nets}

    def _wrap_ddp(self, device: torch.device) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        from cmhash.nets.heads import SparseAwareLinear

        for name, net in self.method.nets.items():
            for mod in net.modules():
                if isinstance(mod, SparseAwareLinear) and mod.sparse_mode == "buffer":
                    mod.sparse_mode = "autograd"  # DDP's hooks must see the weight's gradient
            if any(p.requires_grad for p in net.parameters()):
                ids = [device.index] if device.type == "cuda" else None
                self.method.fwd[name] = DDP(net, device_ids=ids, find_unused_parameters=False)

    def _unwrap_ddp(self) -> None:
        """Drop the DDP wrappers (and their reducers' pending gloo work) before the process group goes.

        Left to interpreter shutdown, their destructors could run after the group was destroyed and
        abort the process ("terminate called without an active exception").
        """
        if not self.dist.enabled:
            return
        import gc

        self.method.fwd = dict(self.method.nets.items())
        gc.collect()

    def _run_epoch(self, epoch: int, source, n: int) -> dict[str, Any]:
        cfg, method, dist = self.config, self.method, self.dist
        extra = method.on_epoch_start(epoch, source.whole()) or {}
        method.train_mode(True)
        batches = epoch_batches(n, int(cfg.batch_size), int(cfg.seed), epoch, dist.rank, dist.world_size)
        steps = batches.shape[0]
        bar = None
        callback = cfg.progress if callable(cfg.progress) and dist.is_main else None
        if callback is not None:
            done_before = (epoch - 1) * steps
            total = int(cfg.epochs) * steps
        elif cfg.progress and dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, dynamic_ncols=True, mininterval=0.5)
        opts = list(self.optimizers.values())
        # running sums stay on the device: no host synchronisation per step on GPUs
        loss_sum = torch.zeros((), dtype=torch.float64, device=source.device)
        term_sums: dict[str, torch.Tensor] = {}
        t0 = time.perf_counter()
        for step, batch in enumerate(source.epoch(batches, epoch), 1):
            loss, terms = method.training_loss(batch)
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            method.before_step()
            for opt in opts:
                opt.step()
            after = method.after_step(batch, self.optimizers)
            if after:
                terms = {**terms, **after}
            loss_sum += loss.detach()
            for k, v in terms.items():
                term_sums[k] = term_sums[k] + v if k in term_sums else v.double()
            report = step % 20 == 0 or step == steps
            if report:
                mean = float(loss_sum) / step
                if not math.isfinite(mean):
                    raise CmhashError(
                        f"{method.name}: the loss became {mean} in epoch {epoch} (by step {step}); "
                        "lower the learning rates (lr_*) or check the input features for extreme values"
                    )
            if bar is not None:
                bar.update(1)
                if report:
                    bar.set_postfix(loss=f"{mean:.4f}")
            elif callback is not None and (step % 10 == 0 or step == steps):
                callback(done_before + step, total, float(loss_sum) / step)
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        row: dict[str, Any] = {"epoch": epoch, "loss": float(loss_sum) / steps}
        row.update({k: float(v) / steps for k, v in term_sums.items()})
        row.update({k: float(v) for k, v in extra.items()})
        row.update(steps=steps, seconds=seconds, steps_per_second=steps / seconds if seconds > 0 else float("nan"))
        return row


__all__ = ["CHECKPOINT", "LOG_CSV", "TrainConfig", "Trainer", "epoch_batches"]
