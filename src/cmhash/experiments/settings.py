"""Settings of a run: preset of (method, dataset) + ablation variant + user overrides.

Presets (``cmhash/presets/<method>.yaml``) write method hyper-parameters under ``hparams:`` and
run settings under ``run:``; :func:`resolve_settings` keeps the two apart and adds the user's
overrides to each side (``--set key=value`` -> hyper-parameters; ``--eval-every``, ``--select``,
``--num-val``, ``--split`` -> run settings). A method without a preset file runs on its
``DEFAULTS``.
"""

from __future__ import annotations

from typing import Any

from cmhash.errors import CmhashError

#: Split protocol of a dataset when the method's preset names none (the DJSRH papers' protocols).
DEFAULT_SPLITS = {"wiki": "official", "nuswide": "djsrh-nuswide", "flickr8k": "official", "synthetic": "random", "fashion": "random"}
#: Parameters of a dataset's default split (presets and --split-param override them): every method
#: on Fashion gets the same 1,000-query / 5,000-training-pair split without each preset repeating it.
DEFAULT_SPLIT_PARAMS = {"fashion": {"num_query": 1000, "num_train": 5000}}


def available_variants(method: str) -> list[str]:
    from cmhash.presets import available, has_presets

    return available(f"{method}_variants") if has_presets(f"{method}_variants") else []


def resolve_settings(
    method: str,
    dataset: str | None,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    run_overrides: dict[str, Any] | None = None,
):
    """``(hparams, run_settings, provenance)`` for a run.

    Order: the method's ``default`` preset, the dataset's section (if any), the ablation
    ``variant`` (``presets/<method>_variants.yaml``), then ``overrides`` (hyper-parameters) and
    ``run_overrides`` (run settings).
    """
    from cmhash.presets import RUN_KEYS, Preset, available, has_presets, load_preset

    prov: dict[str, Any] = {"method": method, "dataset_preset": None, "variant": None}
    if not has_presets(method):
        preset = Preset()
    elif dataset is not None and dataset.lower() in available(method):
        preset = load_preset(method, dataset)
        prov["dataset_preset"] = dataset.lower()
    else:
        preset = load_preset(method)
    hparams, run = dict(preset.hparams), dict(preset.run)
    if variant:
        known = available_variants(method)
        if variant.lower() not in known:
            raise CmhashError(f"unknown {method} variant '{variant}' (known: {', '.join(known) or 'none'})")
        var = load_preset(f"{method}_variants", variant)
        prov["variant"] = variant.lower()
        prov["variant_source"] = var.description
        hparams.update(var.hparams)
        run.update(var.run)
    prov["source"] = preset.source if prov["dataset_preset"] else None
    prov["default_source"] = preset.default_source
    hparams.update(overrides or {})
    bad = sorted(set(run_overrides or {}) - set(RUN_KEYS))
    if bad:
        raise CmhashError(f"unknown run setting(s) {', '.join(bad)} (known: {', '.join(RUN_KEYS)})")
    run.update({k: v for k, v in (run_overrides or {}).items() if v is not None})
    return hparams, run, prov


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["beta=0.9", "alpha=1"]`` -> dict, typed by the one KEY=VALUE rule (:func:`cmhash.validation.parse_value`)."""
    from cmhash.validation import parse_kv

    return parse_kv(items, "--set", "beta=0.8")


__all__ = ["DEFAULT_SPLITS", "DEFAULT_SPLIT_PARAMS", "available_variants", "parse_overrides", "resolve_settings"]
