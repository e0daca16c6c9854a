"""Issue 11 screening: what holds deep hashing back against CMFH on the MIRFlickr subset.

Every configuration is scored on a validation split carved from the TRAINING pairs (never the
query set): `num_val` training pairs are held out as validation queries, the model trains on the
rest, and the rest is the validation database. One line per run goes to the log CSV.

    PYTHONPATH=src nice -n 10 python experiments/issue11_screen.py --bits 64 --seed 0 \
        --config 'name=djsrh_global,target=global,epochs=30' ...

Each --config is KEY=VALUE pairs (see CONFIG_DEFAULTS). `--final` instead trains on the whole
training set and scores the query set against the database (for confirmed winners only).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cmhash import metrics
from cmhash.data.splits import djsrh_split

CONFIG_DEFAULTS = dict(
    name="run",
    method="deep",  # deep | cmfh
    target="batch",  # batch (DJSRH per-batch) | global (whole training set)
    beta=0.9,  # image weight of the similarity mix
    eta=0.4,  # DJSRH high-order term
    knn=0,  # >0: keep each row's knn largest similarities for the high-order term (DGCPN style)
    mu=1.5,
    lambda1=0.1,
    lambda2=0.1,
    distill=0.0,  # weight of the regression of tanh(H) onto CMFH's training codes
    distill_only=0,  # 1: drop the similarity loss
    epochs=40,
    batch=32,
    opt="sgd",
    lr_image=0.001,
    lr_text=0.01,
    wd=5e-4,
    hidden=4096,
    alpha="sqrt",
    text="bow",  # bow | minilm | both
    dropout=0.0,
)


def parse_config(s: str) -> dict:
    cfg = dict(CONFIG_DEFAULTS)
    for item in s.split(","):
        if not item:
            continue
        k, v = item.split("=", 1)
        if k not in cfg:
            raise SystemExit(f"unknown config key {k}")
        d = CONFIG_DEFAULTS[k]
        cfg[k] = type(d)(v) if not isinstance(d, str) else v
    return cfg


def load(text: str):
    from cmhash.features.prepared import load_prepared

    ds = load_prepared("mirflickr", "/work/shared/data/mirflickr25k")
    fi = np.asarray(ds.image_features, np.float32)
    ft = np.asarray(ds.text_features, np.float32)
    if text != "bow":
        mini = np.load("/work/runs/issue-11/minilm_tags.npy").astype(np.float32)
        ft = mini if text == "minilm" else np.hstack([ft, mini])
    return fi, ft, np.asarray(ds.labels)


def cos_sim(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x, dim=1)
    return 2 * (x @ x.t()) - 1


def global_target(fi, ft, cfg) -> torch.Tensor:
    """mu * S over all training pairs: S~ = beta S_I + (1-beta) S_T, plus the high-order term."""
    s = cfg["beta"] * cos_sim(fi) + (1 - cfg["beta"]) * cos_sim(ft)
    if cfg["eta"]:
        n = s.shape[0]
        if cfg["knn"]:
            p = s.clone()
            thr = p.topk(cfg["knn"], dim=1).values[:, -1:]
            p[p < thr] = 0
            p = F.normalize(p.clamp_min(0), p=1, dim=1)
            hi = p @ p.t()
            hi = 2 * hi / hi.max() - 1  # same range as S
        else:
            hi = s @ s.t() / n
        s = (1 - cfg["eta"]) * s + cfg["eta"] * hi
    return cfg["mu"] * s


class MLP(nn.Module):
    def __init__(self, d, bits, hidden, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, bits))

    def forward(self, x):
        return self.net(x)


def cmfh_codes(fi, ft, bits, seed):
    from cmhash.methods import create_method

    m = create_method("cmfh", bits, alpha=[0.5, 0.5], gamma=0.01, mu=100.0, iterations=30, center=True, seed=seed)

    class T:  # minimal training set
        image_features, text_features = fi, ft
        labels = None
        name = "train"

        def __len__(self):
            return len(fi)

    m.fit(T(), threads=1)
    return m


def train_deep(fi, ft, cfg, bits, seed, teacher=None):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xi, xt = torch.from_numpy(fi), torch.from_numpy(ft)
    n = len(xi)
    inet = MLP(xi.shape[1], bits, cfg["hidden"], cfg["dropout"])
    tnet = MLP(xt.shape[1], bits, cfg["hidden"], cfg["dropout"])
    if cfg["opt"] == "sgd":
        oi = torch.optim.SGD(inet.parameters(), lr=cfg["lr_image"], momentum=0.9, weight_decay=cfg["wd"])
        ot = torch.optim.SGD(tnet.parameters(), lr=cfg["lr_text"], momentum=0.9, weight_decay=cfg["wd"])
    else:
        oi = torch.optim.Adam(inet.parameters(), lr=cfg["lr_image"], weight_decay=cfg["wd"])
        ot = torch.optim.Adam(tnet.parameters(), lr=cfg["lr_text"], weight_decay=cfg["wd"])
    gt = global_target(xi, xt, cfg) if cfg["target"] == "global" else None
    tcodes = torch.from_numpy(teacher.astype(np.float32)) if teacher is not None else None
    m = cfg["batch"]
    for ep in range(1, cfg["epochs"] + 1):
        alpha = np.sqrt(ep) if cfg["alpha"] == "sqrt" else float(cfg["alpha"])
        perm = torch.from_numpy(rng.permutation(n))
        for s in range(0, n - m + 1, m):
            idx = perm[s : s + m]
            bi, bt = xi[idx], xt[idx]
            if gt is not None:
                tgt = gt[idx][:, idx]
            else:
                s_ = cfg["beta"] * cos_sim(bi) + (1 - cfg["beta"]) * cos_sim(bt)
                if cfg["eta"]:
                    s_ = (1 - cfg["eta"]) * s_ + cfg["eta"] * s_ @ s_.t() / m
                tgt = cfg["mu"] * s_
            hi, ht = inet(bi), tnet(bt)
            ci, ct = torch.tanh(alpha * hi), torch.tanh(alpha * ht)
            loss = 0.0
            if not cfg["distill_only"]:
                ni, nt = F.normalize(ci, dim=1), F.normalize(ct, dim=1)
                loss = F.mse_loss(ni @ nt.t(), tgt) + cfg["lambda1"] * F.mse_loss(ni @ ni.t(), tgt) + cfg["lambda2"] * F.mse_loss(nt @ nt.t(), tgt)
            if tcodes is not None and cfg["distill"]:
                b = tcodes[idx]
                loss = loss + cfg["distill"] * (F.mse_loss(ci, b) + F.mse_loss(ct, b))
            oi.zero_grad()
            ot.zero_grad()
            loss.backward()
            oi.step()
            ot.step()
    inet.eval(), tnet.eval()

    class Enc:
        def encode(self, x, mod):
            with torch.no_grad():
                h = (inet if mod == "image" else tnet)(torch.from_numpy(np.asarray(x, np.float32)))
            return np.where(h.numpy() >= 0, 1, -1).astype(np.int8)

    return Enc()


def score(model, fi, ft, labels, q, d):
    qi, qt = model.encode(fi[q], "image"), model.encode(ft[q], "text")
    di, dt = model.encode(fi[d], "image"), model.encode(ft[d], "text")
    out = {}
    for k in (50, None):
        tag = "50" if k else "all"
        out[f"i2t_{tag}"] = metrics.mean_average_precision(qi, dt, labels[q], labels[d], topk=k)
        out[f"t2i_{tag}"] = metrics.mean_average_precision(qt, di, labels[q], labels[d], topk=k)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, nargs="+", default=[64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--config", action="append", required=True)
    ap.add_argument("--final", action="store_true", help="train on the whole training set, score the query set")
    ap.add_argument("--num-val", type=int, default=1000)
    ap.add_argument("--log", default="/work/runs/issue-11/log.csv")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = {}
    for seed in args.seeds:
        for bits in args.bits:
            teacher_cache = {}
            for cs in args.config:
                cfg = parse_config(cs)
                if cfg["text"] not in data:
                    data[cfg["text"]] = load(cfg["text"])
                fi, ft, labels = data[cfg["text"]]
                q, db, tr = djsrh_split(labels, seed=seed)
                if args.final:
                    fit_idx, eq, ed, protocol = tr, q, db, "test"
                else:
                    rng = np.random.default_rng(seed + 104729)
                    p = rng.permutation(tr)
                    eq, fit_idx = p[: args.num_val], p[args.num_val :]
                    ed, protocol = fit_idx, "val-from-train"
                t0 = time.time()
                if cfg["method"] == "cmfh":
                    model = cmfh_codes(fi[fit_idx], ft[fit_idx], bits, seed)
                else:
                    teacher = None
                    if cfg["distill"]:
                        key = cfg["text"]
                        if key not in teacher_cache:
                            cm = cmfh_codes(fi[fit_idx], ft[fit_idx], bits, seed)
                            teacher_cache[key] = np.where(cm.latent >= 0, 1.0, -1.0).astype(np.float32)
                        teacher = teacher_cache[key]
                    model = train_deep(fi[fit_idx], ft[fit_idx], cfg, bits, seed, teacher)
                secs = time.time() - t0
                res = score(model, fi, ft, labels, eq, ed)
                row = dict(time=time.strftime("%H:%M:%S"), protocol=protocol, bits=bits, seed=seed, seconds=round(secs, 1), **{k: round(v, 4) for k, v in res.items()}, config=cs)
                print(row, flush=True)
                new = not os.path.exists(args.log)
                with open(args.log, "a", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=list(row))
                    if new:
                        w.writeheader()
                    w.writerow(row)


if __name__ == "__main__":
    main()
