"""The contract every registered method keeps, checked for each one (as timm's tests loop over models).

A method registered later is covered without editing this file: the parameters are read from the
registry at collection time. Per method: it builds from every section of its preset and fits on
tiny synthetic data with each (the sections of its variants file are built, networks included), encodes both modalities to int8 +-1 codes of
the right length, gives identical codes after a state round trip and after a checkpoint
save/load, refuses an unknown hyper-parameter with a clear error, and (deep methods) resumes an
interrupted run to the same weights as an uninterrupted one. Fits are shortened (1-2 epochs or
iterations, small batches; ``TEST_HPARAMS`` of the method for anything else).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from trainer_fixtures import fit_interrupted

from cmhash.data.dataset import PairedDataset
from cmhash.data.tokens import TokenSequences
from cmhash.errors import CmhashError
from cmhash.inference import load_checkpoint
from cmhash.methods import METHODS, create_method
from cmhash.presets import has_presets, load_preset, sections
from cmhash.training.checkpoint import save_method

BITS = 16
SHORTEN = {"epochs": 1, "iterations": 2, "batch_size": 16}


def tiny_data(n: int = 96, classes: int = 4, seed: int = 0) -> PairedDataset:
    """Clustered image/text features, multi-hot labels and token sequences (every input form a method may read)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    labels = np.eye(classes, dtype=np.uint8)[y]
    labels[np.arange(n), (y + 1) % classes] |= (rng.random(n) < 0.2).astype(np.uint8)  # some pairs with two labels
    img = (rng.normal(0, 0.3, (n, 24)) + np.eye(classes, 24)[y] * 2).astype(np.float32)
    txt = np.maximum(rng.normal(0, 0.05, (n, 20)) + np.eye(classes, 20)[y], 0).astype(np.float32)
    seqs = [[2 + 3 * int(y[i]) + int(rng.integers(0, 3)) for _ in range(int(rng.integers(1, 6)))] for i in range(n)]
    return PairedDataset(
        name="tiny", ids=np.arange(n).astype(str), image_features=img, text_features=txt, labels=labels,
        text_tokens=TokenSequences.from_lists(seqs, vocab_size=2 + 3 * classes),
    )  # fmt: skip


def preset_sections(name: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(label, hparams, fit?) of every section of the method's presets (fitted) and variants (built, networks too).

    Without a preset file: the DEFAULTS alone.
    """
    if not has_presets(name):
        return [("DEFAULTS", {}, True)]
    out = [(sec, load_preset(name, None if sec == "default" else sec).hparams, True) for sec in sections(name)]
    if has_presets(f"{name}_variants"):
        base = load_preset(name).hparams
        for var, preset in sections(f"{name}_variants").items():
            if var != "default":
                out.append((f"variant {var}", {**base, **preset.hparams}, False))
    return out


def quick(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    cls = METHODS.get(name)
    hp = dict(hparams)
    hp.update({k: v for k, v in SHORTEN.items() if k in cls.DEFAULTS})
    hp.update(cls.TEST_HPARAMS)
    return hp


def fit(method, ds, tmp=None, seed: int = 0):
    if method.deep:
        return method.fit(ds, progress=False, seed=seed, run_dir=None if tmp is None else str(tmp), tensorboard=False, device="cpu")
    return method.fit(ds)


def check_codes(codes: np.ndarray, n: int) -> None:
    assert codes.dtype == np.int8 and codes.shape == (n, BITS)
    assert set(np.unique(codes).tolist()) <= {-1, 1}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: one thread (two threads on a loaded 2-core machine made each fit ~100x slower)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


NAMES = METHODS.names()


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_fits_from_every_preset_section(name):
    ds = tiny_data()
    for label, hparams, do_fit in preset_sections(name):
        try:
            method = create_method(name, BITS, **quick(name, hparams))
            if not do_fit:  # a variant: its hyper-parameters are valid and its networks build
                if method.deep:
                    method.setup(method.input_spec_for(ds))
                continue
            fit(method, ds)
            for modality in ("image", "text"):
                check_codes(method.encode(ds, modality), len(ds))
        except Exception as exc:  # name the section that failed
            raise AssertionError(f"{name}, preset section '{label}': {type(exc).__name__}: {exc}") from exc


@pytest.mark.parametrize("name", NAMES)
def test_codes_survive_state_round_trip_and_checkpoint(name, tmp_path):
    ds = tiny_data()
    method = create_method(name, BITS, **quick(name, preset_sections(name)[0][1]))
    fit(method, ds)
    codes = {m: method.encode(ds, m) for m in ("image", "text")}
    again = type(method).from_state(method.state())
    ck_path = save_method(tmp_path / "checkpoint.pt", method, meta={"dataset": {"name": "tiny"}})
    loaded = load_checkpoint(ck_path)
    assert loaded.method_name == name and loaded.bits == BITS
    for m in ("image", "text"):
        np.testing.assert_array_equal(again.encode(ds, m), codes[m])
        np.testing.assert_array_equal(loaded.encode(ds, m), codes[m])
    assert loaded.method.hparams == method.hparams


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hyper_parameter_is_a_clear_error(name):
    with pytest.raises(CmhashError, match=rf"{name}: unknown hyper-parameter\(s\) no_such_knob .*known:"):
        create_method(name, BITS, no_such_knob=1)


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS.get(n).deep])
def test_deep_method_resumes_to_the_same_weights(name, tmp_path):
    import torch

    from cmhash.training.trainer import TrainConfig, Trainer

    ds = tiny_data()
    hp = {**quick(name, preset_sections(name)[0][1]), **({"epochs": 2} if "epochs" in METHODS.get(name).DEFAULTS else {})}

    def config(run_dir, resume=False):
        return TrainConfig(epochs=2, batch_size=int(hp.get("batch_size", 16)), seed=1, run_dir=str(run_dir), resume=resume,
                           progress=False, tensorboard=False, device="cpu")  # fmt: skip

    whole = create_method(name, BITS, **hp)
    Trainer(whole, ds, config(tmp_path / "whole"), spec=whole.input_spec_for(ds)).fit()

    first = create_method(name, BITS, **hp)
    fit_interrupted(Trainer(first, ds, config(tmp_path / "cut"), spec=first.input_spec_for(ds)), 2)  # killed in epoch 2
    resumed = create_method(name, BITS, **hp)
    Trainer(resumed, ds, config(tmp_path / "cut", resume=True), spec=resumed.input_spec_for(ds)).fit()
    a, b = whole.nets.state_dict(), resumed.nets.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{name}: {k} differs after resume"
    np.testing.assert_array_equal(whole.encode(ds, "image"), resumed.encode(ds, "image"))
