"""UDCMH: Unsupervised Deep Cross-Modal Hashing (Wu et al., IJCAI 2018), a reconstruction.

No public code exists and only the abstract is available (methods-spec section 5); ``docs/udcmh.md``
lists what comes from the abstract, from the DJSRH paper's description, and what is ours. The
method alternates, once per epoch, a whole-training-set step and batch-wise network training:

1. epoch start (whole training set, :mod:`cmhash.methods.udcmh_solver`): relaxed codes
   ``H_m = tanh(net_m(x))`` of every training pair; factors ``U_m`` in closed form; unified codes
   ``B`` by discrete cyclic coordinate descent on
   ``sum_m a_m ||F_m - U_m B||^2 + beta sum_m ||B - H_m||^2 + gamma tr(B L B^T)``, with L the
   Laplacian of a signed k-nearest / k-farthest neighbour graph on the fused feature similarity
   (built once, O(n k) memory);
2. the networks (DJSRH's ImgNet head / TxtNet) regress ``B`` of each batch:
   ``beta sum_m mse(tanh(H_m), B_batch)``; SGD with momentum.

Codes at test time are ``sign(H)`` of each network.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn

from cmhash.errors import CmhashError
from cmhash.methods import METHODS
from cmhash.methods.deep import Batch, DeepHashMethod, InputSpec, TrainingSet
from cmhash.nets.heads import MLPHashNet


def _centred_unit_rows(x: np.ndarray) -> np.ndarray:
    """F_m of the factorisation: rows l2-normalised, then columns centred (d x n after transpose)."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return (x - x.mean(axis=0, keepdims=True)).T


@METHODS.register("udcmh")
class UDCMH(DeepHashMethod):
    name: ClassVar[str] = "udcmh"
    #: small networks for the contract test's tiny fits
    TEST_HPARAMS: ClassVar[dict[str, Any]] = {"hidden": 32, "k_near": 5, "k_far": 5}
    DEFAULTS: ClassVar[dict[str, Any]] = {
        # objective (weights a_m of the factorisation, beta, gamma, nu)
        "weight_image": 1.0,
        "weight_text": 1.0,
        "beta": 1.0,
        "gamma": 3.0,
        "nu": 1.0,
        "rho": 1.0,  # bit balance rho ||B 1||^2 / n (ours: keeps bits from collapsing to constants)
        # neighbour graph: fused cosine beta_g (2cos_I - 1) + (1 - beta_g)(2cos_T - 1); W = +-1/k
        "graph_beta": 0.6,
        "k_near": 20,
        "k_far": 20,
        # discrete step
        "dcc_sweeps": 1,
        "dcc_first_sweeps": 5,
        "dcc_inner": 10,
        # networks and optimisation (DJSRH's, which follows UDCMH's backbones)
        "hidden": 4096,
        "lr_image": 0.01,
        "lr_text": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 32,
        "epochs": 30,
        "fused_optimizer": "auto",
        "sparse_text": True,
        # cmhash addition (docs/udcmh.md): "standardize" feeds each net its input centred on the training
        # mean and divided by the training RMS; "none" feeds the features as given
        "input_norm": "none",
        "image_mode": "features",
        "variant": "udcmh",
    }

    def __init__(self, bits: int, **hparams: Any):
        super().__init__(bits, **hparams)
        self.codes_b: torch.Tensor | None = None  # (n, bits) unified codes of the training pairs
        self._lap = None
        self._feats = None

    def check_hparams(self, h: dict[str, Any]) -> None:
        self.positive(h, "hidden", "lr_image", "lr_text", "batch_size", "epochs", "k_near")
        for key in ("weight_image", "weight_text", "beta", "gamma", "nu", "rho", "k_far", "dcc_sweeps", "dcc_inner"):
            if float(h[key]) < 0:
                raise CmhashError(f"udcmh: {key} must be >= 0, got {h[key]}")
        if not 0.0 <= float(h["graph_beta"]) <= 1.0:
            raise CmhashError(f"udcmh: graph_beta must lie in [0, 1], got {h['graph_beta']}")
        self.check_input_norm(h)
        if h["image_mode"] != "features":
            raise CmhashError("udcmh: only feature mode is supported (the whole-set step needs every training pair's features)")

    def build(self, spec: InputSpec, for_training: bool = True) -> None:
        h = self.hparams
        hidden = int(h["hidden"])
        self.nets = nn.ModuleDict(
            {
                "image": self.standardized_input("image", MLPHashNet(spec.image_dim, self.bits, hidden=hidden, sparse_input=False), spec.image_dim),
                "text": self.standardized_input("text", MLPHashNet(spec.text_dim, self.bits, hidden=hidden, sparse_input=bool(h["sparse_text"])), spec.text_dim),
            }
        )

    # ------------------------------------------------------------------ whole-set step
    def _prepare_graph(self, img: np.ndarray, txt: np.ndarray) -> None:
        from cmhash.methods.udcmh_solver import build_affinity, laplacian

        h = self.hparams
        w = build_affinity(img, txt, beta=float(h["graph_beta"]), k_near=int(h["k_near"]), k_far=int(h["k_far"]))
        w = w / float(max(int(h["k_near"]), 1))  # weights +-1/k: the Laplacian term's scale does not grow with k
        self._lap = laplacian(w)
        self._feats = [_centred_unit_rows(img), _centred_unit_rows(txt)]

    @torch.no_grad()
    def _relaxed_codes(self, train: TrainingSet) -> list[np.ndarray]:
        was = self.nets.training
        self.nets.eval()
        try:
            out = []
            for mod, x in (("image", train.image), ("text", train.text)):
                h = torch.cat([self.nets[mod](c) for c in torch.split(x, 1024)])
                out.append(np.tanh(h.double().cpu().numpy()).T)  # K x n
        finally:
            self.nets.train(was)
        return out

    def on_epoch_start(self, epoch: int, train: TrainingSet | None = None) -> dict[str, float]:
        from cmhash.methods.udcmh_solver import objective, update_codes, update_factors

        if train is None or train.image is None:
            raise CmhashError("udcmh: the epoch step needs the whole training set's features (feature mode)")
        h = self.hparams
        n = len(train)
        self.fit_input_statistics(train)  # before the relaxed codes of this epoch's B step
        if self._lap is None or self._lap.shape[0] != n:
            self._prepare_graph(train.image.cpu().numpy(), train.text.cpu().numpy())
        relaxed = self._relaxed_codes(train)
        weights = [float(h["weight_image"]), float(h["weight_text"])]
        if self.codes_b is None or self.codes_b.shape[0] != n:
            # balanced start: signs of a seeded random projection of both modalities' features
            gen = np.random.default_rng(0 if self.seed is None else int(self.seed))
            proj = sum(gen.standard_normal((self.bits, f.shape[0])) @ f for f in self._feats)
            b = np.where(proj >= 0, 1.0, -1.0)
            sweeps = int(h["dcc_first_sweeps"])
        else:
            b = self.codes_b.cpu().numpy().T.astype(np.float64)
            sweeps = int(h["dcc_sweeps"])
        nu = float(h["nu"])
        factors = [update_factors(f, b, nu / max(a, 1e-12)) for f, a in zip(self._feats, weights)]
        b = update_codes(
            b, self._feats, factors, weights, relaxed, beta=float(h["beta"]), gamma=float(h["gamma"]), lap=self._lap, sweeps=sweeps, inner=int(h["dcc_inner"]),
            rho=float(h["rho"]),
        )
        value = objective(b, self._feats, factors, weights, relaxed, float(h["beta"]), float(h["gamma"]), nu, self._lap, float(h["rho"]))
        self.codes_b = torch.from_numpy(b.T.astype(np.float32)).contiguous().to(train.text.device)
        return {"objective": value / n, "bit_balance": float(np.abs(b.mean(axis=1)).mean())}

    def training_state(self) -> dict[str, Any]:
        return {} if self.codes_b is None else {"codes_b": self.codes_b.detach().cpu()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        if state.get("codes_b") is not None:
            self.codes_b = state["codes_b"]

    # ------------------------------------------------------------------ batch step
    def training_loss(self, batch: Batch):
        target = self.codes_b.to(batch.text.device).index_select(0, batch.index.to(batch.text.device))
        beta = float(self.hparams["beta"])
        li = nn.functional.mse_loss(torch.tanh(self.fwd["image"](batch.image)), target)
        lt = nn.functional.mse_loss(torch.tanh(self.fwd["text"](batch.text)), target)
        return beta * (li + lt), {"fit_image": li.detach(), "fit_text": lt.detach()}


__all__ = ["UDCMH"]
