"""Presets: YAML files under ``params/`` with a parameter section per study.

A preset is checked whole before anything trains: YAML syntax, study names and every value
(through the same validation the notebooks run), each error with its file and line.

Layout::

    description: one line
    compare_with_report: false   # true: the index puts the report's numbers beside ours
    common:                      # given to every study that accepts the key
      width: 0.25
    studies:
      learning_rate:
        lrs: [0.5, 0.05, 0.01]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import ConfigError
from .studies import STUDIES, validate

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"
TOP_KEYS = {"description": str, "compare_with_report": bool, "common": dict, "studies": dict}


class PresetError(ValueError):
    """A preset file is malformed; the message starts with ``file:line``."""


@dataclass
class Preset:
    name: str
    path: Path
    description: str = ""
    compare_with_report: bool = False
    common: dict = field(default_factory=dict)
    studies: dict = field(default_factory=dict)   # study -> its own section

    def params(self, study: str) -> dict:
        """The papermill parameters of ``study``: common keys it accepts (but not the field
        its grid sets, e.g. ``lr`` for the learning-rate study), then its section."""
        accepted = STUDIES[study].keys
        out = {k: v for k, v in self.common.items()
               if k in accepted and k != STUDIES[study].grid_field}
        out.update(self.studies.get(study) or {})
        return out


def find_preset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise PresetError(f"{p}: preset file not found")
        return p
    p = PARAMS_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(q.stem for q in PARAMS_DIR.glob("*.yaml"))
        raise PresetError(f"unknown preset {name_or_path!r}; presets in {PARAMS_DIR}: "
                          f"{', '.join(known)} (or give a path to a YAML file)")
    return p


def _line(node) -> int:
    return node.start_mark.line + 1


def _key_nodes(node) -> dict:
    """key -> (key node, value node) of a YAML mapping node."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: (k, v) for k, v in node.value}


def load_preset(name_or_path: str) -> Preset:
    path = find_preset(name_or_path)
    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise PresetError(f"{where}: YAML syntax error: {e.problem or e.context}") from None
    if values is None:
        raise PresetError(f"{path}:1: the preset is empty")
    if not isinstance(values, dict):
        raise PresetError(f"{path}:{_line(root)}: a preset is a mapping with keys "
                          f"{', '.join(TOP_KEYS)}")
    top = _key_nodes(root)
    for key, value in values.items():
        line = _line(top[str(key)][0]) if str(key) in top else 1
        if key not in TOP_KEYS:
            raise PresetError(f"{path}:{line}: unknown top-level key {key!r}; allowed: "
                              f"{', '.join(TOP_KEYS)}")
        if value is not None and not isinstance(value, TOP_KEYS[key]):
            raise PresetError(f"{path}:{line}: {key!r} must be a {TOP_KEYS[key].__name__}, "
                              f"got {type(value).__name__}")
    preset = Preset(path.stem, path, values.get("description") or "",
                    bool(values.get("compare_with_report")), values.get("common") or {},
                    values.get("studies") or {})
    study_nodes = _key_nodes(top["studies"][1]) if "studies" in top else {}
    common_nodes = _key_nodes(top["common"][1]) if "common" in top else {}
    for study, section in preset.studies.items():
        line = _line(study_nodes[str(study)][0]) if str(study) in study_nodes else 1
        if study not in STUDIES:
            raise PresetError(f"{path}:{line}: unknown study {study!r}; studies: "
                              f"{', '.join(STUDIES)}")
        if section is not None and not isinstance(section, dict):
            raise PresetError(f"{path}:{line}: the section of study {study!r} must be a "
                              f"mapping of parameters, got {type(section).__name__}")
    for key in preset.common:
        if not any(key in s.keys for s in STUDIES.values()):
            line = _line(common_nodes[str(key)][0]) if str(key) in common_nodes else 1
            raise PresetError(f"{path}:{line}: common key {key!r} is a parameter of no study")
    for study in preset.studies:
        try:
            validate(study, preset.params(study))
        except ConfigError as e:
            key = _culprit(str(e), preset.params(study))
            if key is None and STUDIES[study].grid_field and f"{STUDIES[study].grid_field!r}" in str(e):
                key = STUDIES[study].grid_key
            node = _key_nodes(study_nodes[str(study)][1]).get(key) if str(study) in study_nodes else None
            node = node or common_nodes.get(key)
            line = _line(node[0]) if node else _line(study_nodes[str(study)][0])
            raise PresetError(f"{path}:{line}: study {study!r}: {e}") from None
    return preset


def _culprit(message: str, params: dict) -> str | None:
    """The parameter a validation message names (they all quote it first)."""
    for key in sorted(params, key=len, reverse=True):
        if f"{key!r}" in message:
            return key
    return None
