"""Paper settings as data: one YAML file per method, one section per dataset.

``presets/<method>.yaml`` maps dataset names (and ``default``) to hyper-parameter dicts;
``load_preset(method, dataset)`` returns ``default`` updated with the dataset's section, so a
preset only states what differs. Sections may hold a ``source`` entry citing where the values
come from (paper section, official code); it is returned under ``_source``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from cmhash.errors import CmhashError


def available(method: str) -> list[str]:
    data = _read(method)
    return sorted(k for k in data if k != "default")


def _read(method: str) -> dict[str, Any]:
    import yaml

    name = f"{method.lower()}.yaml"
    try:
        text = resources.files("cmhash.presets").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CmhashError(f"no presets for method '{method}' (expected cmhash/presets/{name})") from None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise CmhashError(f"cmhash/presets/{name}: top level must be a mapping of dataset -> settings")
    return data


def load_preset(method: str, dataset: str | None = None) -> dict[str, Any]:
    """``default`` settings of ``method`` overlaid with those of ``dataset`` (if given)."""
    data = _read(method)
    out = dict(data.get("default") or {})
    if dataset is not None:
        key = dataset.lower()
        if key not in data:
            raise CmhashError(f"no '{dataset}' preset for method '{method}' (available: {', '.join(available(method)) or 'none'})")
        section = dict(data[key] or {})
        if "source" in section:
            out["_source"] = section.pop("source")
        out.update(section)
    return out
