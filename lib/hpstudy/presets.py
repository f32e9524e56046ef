"""Presets: YAML files under ``params/`` with a parameter section per study.

A preset is checked whole before anything trains: YAML syntax, study names and every value
(through the same validation the notebooks run), each error with its file and line.

Layout::

    description: one line
    compare_with_report: false   # true: the index puts the report's numbers beside ours
    cell_timeout: 3600           # seconds a notebook cell may run (default: 10 days, paper)
    common:                      # given to every study that accepts the key
      width: 0.25
      seeds: [0, 1]
    studies:
      learning_rate:
        epochs: 15               # a study's section overrides common and the notebook's cell

A preset owns the protocol (scale, epochs, seeds, numerics); what a study varies and holds
fixed is its notebook's parameters cell, which a section may override.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import ConfigError
from .paths import params_dir
from .studies import STUDIES, STUDY_ALIASES, check_key, notebook_defaults, study, validate

TOP_KEYS = {"description": str, "compare_with_report": bool, "cell_timeout": int,
            "common": dict, "studies": dict}
# No cell of a study notebook may run longer (seconds): a hung kernel then fails its notebook
# instead of hanging the report. The longest cell is the training cell of --executor inline,
# which trains a study's runs in the kernel: paper's whole plan is 193 hours on a 2-core
# AVX-512 CPU (README, "Speed"), so 10 days fit any one of its studies on any machine here.
DEFAULT_CELL_TIMEOUT = 10 * 24 * 3600


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
    cell_timeout: int = DEFAULT_CELL_TIMEOUT

    @property
    def ref(self) -> str:
        """How a notebook finds this preset again: the name of a shipped one, else its path."""
        shipped = params_dir() / f"{self.name}.yaml"
        return self.name if shipped.exists() and shipped.resolve() == self.path.resolve() \
            else str(self.path.resolve())


def study_params(name: str, preset: "Preset | str | None" = None,
                 overrides: dict | None = None) -> dict:
    """The parameters of study ``name``: the one function the report command, the planner and the
    notebooks use, so that they cannot drift.

    In order, each overriding the one before: the notebook's parameters cell, the preset's
    ``common`` keys that the study takes, the preset's section for the study, ``overrides``
    (``-p``). An override the study does not take is an error naming it; one that sets what the
    study varies (``lr`` for the learning-rate study) names the grid key to use instead.
    """
    s = study(name)
    values = notebook_defaults(name)
    if preset is not None:
        p = preset if isinstance(preset, Preset) else load_preset(preset)
        values.update({k: v for k, v in p.common.items() if k in s.keys})
        values.update(p.studies.get(name) or {})
        values["preset"] = p.ref
    for key in overrides or {}:
        check_key(name, key)
    values.update(overrides or {})
    return values


def find_preset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise PresetError(f"{p}: preset file not found")
        return p
    p = params_dir() / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(q.stem for q in params_dir().glob("*.yaml"))
        raise PresetError(f"unknown preset {name_or_path!r}; presets in {params_dir()}: "
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
                    values.get("studies") or {},
                    DEFAULT_CELL_TIMEOUT if values.get("cell_timeout") is None
                    else values["cell_timeout"])
    if isinstance(values.get("cell_timeout"), bool) or preset.cell_timeout < 1:
        line = _line(top["cell_timeout"][0])
        raise PresetError(f"{path}:{line}: 'cell_timeout' must be a number of seconds >= 1, "
                          f"got {values.get('cell_timeout')!r}")
    study_nodes = _key_nodes(top["studies"][1]) if "studies" in top else {}
    common_nodes = _key_nodes(top["common"][1]) if "common" in top else {}
    for name, section in preset.studies.items():
        line = _line(study_nodes[str(name)][0]) if str(name) in study_nodes else 1
        if name not in STUDIES:
            raise PresetError(f"{path}:{line}: unknown study {name!r}; studies: "
                              f"{', '.join(STUDIES)}")
        if section is not None and not isinstance(section, dict):
            raise PresetError(f"{path}:{line}: the section of study {name!r} must be a "
                              f"mapping of parameters, got {type(section).__name__}")
    for key in preset.common:
        line = _line(common_nodes[str(key)][0]) if str(key) in common_nodes else 1
        for st in STUDIES.values():
            if st.grid_field == key:
                raise PresetError(f"{path}:{line}: common key {key!r} is what study {st.name!r} "
                                  f"varies; set it in the sections of the studies that fix it "
                                  f"(or the grid {st.grid_key!r})")
        if key in STUDY_ALIASES:
            raise PresetError(f"{path}:{line}: common key {key!r}: the studies take "
                              f"{STUDY_ALIASES[key]!r} (a list)")
        if not any(key in s.keys for s in STUDIES.values()):
            raise PresetError(f"{path}:{line}: common key {key!r} is a parameter of no study")
    for name in STUDIES:
        if name not in preset.studies and not any(k in STUDIES[name].keys for k in preset.common):
            continue
        try:
            validate(name, study_params(name, preset))
        except ConfigError as e:
            section = _key_nodes(study_nodes[name][1]) if name in study_nodes else {}
            st = STUDIES[name]
            node = section.get(e.key) or common_nodes.get(e.key) or (
                section.get(st.grid_field) if e.key == st.grid_key else None)
            line = _line(node[0]) if node else (_line(study_nodes[name][0])
                                                if name in study_nodes else 1)
            msg = str(e) if str(e).startswith("study ") else f"study {name!r}: {e}"
            raise PresetError(f"{path}:{line}: {msg}") from None
    return preset
