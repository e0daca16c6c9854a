"""Paper settings as data: one YAML file per method, one section per dataset.

``presets/<method>.yaml`` maps dataset names (and ``default``) to sections of this form::

    default:
      source: "where the values come from (paper section, official code)"
      hparams:            # the method's hyper-parameters (keys of the method's DEFAULTS)
        beta: 0.6
      run:                # run settings (keys of cmhash.presets.RUN_KEYS)
        split: djsrh
    mirflickr:
      source: "..."
      hparams: {beta: 0.9}
      run: {eval_every: 40}

:func:`load_preset` returns ``default`` overlaid with the dataset's section, ``hparams`` and
``run`` merged separately, so a section only states what differs. Ablation variants live in
``presets/<method>_variants.yaml`` in the same form (plus a ``description``, and optionally
``compare_with: <other variant>``: reports show the difference between the two, paired by seed). Any other key in a
section is an error naming the file and section: method hyper-parameters and run settings are
told apart by where they are written, never by a list of names in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from cmhash.errors import CmhashError

#: Run settings a preset's ``run:`` section may hold (what the experiment runner reads).
RUN_KEYS = {
    "split": "split protocol (djsrh, djsrh-nuswide, official, random)",
    "split_params": "split protocol parameters, e.g. {num_query: 1000, num_train: 5000}",
    "num_val": "validation queries carved from the database (0: no validation)",
    "eval_every": "validation every N epochs (0: only after the last)",
    "select": "last | best-val",
    "notes": "free text recorded with the run",
}
SECTION_KEYS = ("source", "description", "hparams", "run", "compare_with")


@dataclass
class Preset:
    """A resolved preset: the method's hyper-parameters, the run settings, and where they come from."""

    hparams: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    description: str | None = None
    default_source: str | None = None
    #: variants files: the variant this one is compared with, paired by seed, in reports
    compare_with: str | None = None


def available(method: str) -> list[str]:
    """Dataset sections of ``presets/<method>.yaml`` (not ``default``)."""
    data = _read(method)
    return sorted(k for k in data if k != "default")


def has_presets(method: str) -> bool:
    return resources.files("cmhash.presets").joinpath(f"{method.lower()}.yaml").is_file()


def _read(method: str) -> dict[str, Any]:
    import yaml

    name = f"{method.lower()}.yaml"
    try:
        text = resources.files("cmhash.presets").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CmhashError(f"no presets for method '{method}' (expected cmhash/presets/{name})") from None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise CmhashError(f"cmhash/presets/{name}: top level must be a mapping of dataset -> section")
    return data


def _section(method: str, name: str, raw: Any) -> Preset:
    where = f"cmhash/presets/{method.lower()}.yaml, section '{name}'"
    raw = raw or {}
    if not isinstance(raw, dict):
        raise CmhashError(f"{where}: must be a mapping with source/hparams/run")
    unknown = sorted(set(raw) - set(SECTION_KEYS))
    if unknown:
        raise CmhashError(
            f"{where}: unknown key(s) {', '.join(unknown)}; a section holds only {', '.join(SECTION_KEYS)} "
            "(hyper-parameters go under 'hparams:', run settings under 'run:')"
        )
    hp, run = raw.get("hparams") or {}, raw.get("run") or {}
    for what, d in (("hparams", hp), ("run", run)):
        if not isinstance(d, dict):
            raise CmhashError(f"{where}: '{what}' must be a mapping")
    bad = sorted(set(run) - set(RUN_KEYS))
    if bad:
        raise CmhashError(f"{where}: unknown run setting(s) {', '.join(bad)} (known: {', '.join(RUN_KEYS)})")
    return Preset(dict(hp), dict(run), raw.get("source"), raw.get("description"), compare_with=raw.get("compare_with"))


def sections(method: str) -> dict[str, Preset]:
    """Every section of ``presets/<method>.yaml`` as written (not merged with ``default``)."""
    return {name: _section(method, name, raw) for name, raw in _read(method).items()}


def load_preset(method: str, dataset: str | None = None) -> Preset:
    """``default`` of ``method`` overlaid with the ``dataset`` section (if given); hparams and run merged separately."""
    data = _read(method)
    out = _section(method, "default", data.get("default"))
    out.default_source = out.source
    if dataset is not None:
        key = dataset.lower()
        if key not in data:
            raise CmhashError(f"no '{dataset}' preset for method '{method}' (available: {', '.join(available(method)) or 'none'})")
        sec = _section(method, key, data[key])
        out.hparams.update(sec.hparams)
        out.run.update(sec.run)
        out.source = sec.source or out.source
        out.description = sec.description
    return out


__all__ = ["Preset", "RUN_KEYS", "available", "has_presets", "load_preset", "sections"]
