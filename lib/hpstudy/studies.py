"""The six studies: their notebooks, the parameters each takes, and their validation.

A study notebook's ``parameters`` cell holds what the study varies or fixes (its grid, the
values it holds constant) and the notebook-only keys; ``Config`` owns every other training
key's type and default, and presets own protocols (scale, epochs, seeds). Whatever papermill
injects is validated here: a mistyped key, a wrong type or an impossible value is an error
naming the key and what is allowed (papermill itself only warns).
"""
from __future__ import annotations

import ast
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, ConfigError, coerce, unknown_key_message
from .paths import notebooks_dir

# Keys every study notebook that trains accepts besides Config's (``seed`` is replaced by
# ``seeds``: every setting runs once per seed).
NOTEBOOK_KEYS = {
    "seeds": list[int],                    # one run per setting and seed; settings share them
    "last_k": int,                         # epochs averaged for the "last k epochs" statistics
    "runs_root": typing.Optional[str],     # run store; None = $HPSTUDY_RUNS or ./runs
    "results_path": typing.Optional[str],  # where record() writes the results JSON
    "preset": typing.Optional[str],        # the preset that supplies the protocol
    "no_train": bool,                      # True: every run must be in the store already
    "report_id": typing.Optional[str],     # the report's parameter set (hpstudy report sets it)
}
DATA_KEYS = {
    "data_root": typing.Optional[str], "split_seed": int, "seed": int, "normalize": str,
    "n_samples": int, "stats_repeats": int,
    "results_path": typing.Optional[str], "preset": typing.Optional[str],
    "report_id": typing.Optional[str],
}
# Keys whose value must be >= 1.
POSITIVE = ("n_samples", "stats_repeats", "n_confused", "last_k")


@dataclass(frozen=True)
class Study:
    name: str
    notebook: str
    title: str
    grid_key: str | None = None        # parameter holding the list of settings compared
    grid_field: str | None = None      # Config field each setting sets
    baseline: typing.Any = None        # the setting the others are compared with
    extra: dict = field(default_factory=dict)  # further study-specific keys: name -> type

    @property
    def trains(self) -> bool:
        return self.name != "data"

    @property
    def keys(self) -> dict:
        """Every parameter the notebook accepts, with its type."""
        if not self.trains:
            return dict(DATA_KEYS)
        hints = typing.get_type_hints(Config)
        out = {k: hints[k] for k in Config.keys() if k != "seed"}
        out.update(NOTEBOOK_KEYS)
        if self.grid_key:
            out[self.grid_key] = list[type(getattr(Config(), self.grid_field))]
        out.update(self.extra)
        return out


STUDIES: dict[str, Study] = {s.name: s for s in [
    Study("data", "00_data.ipynb", "Data: split, classes, samples, normalization"),
    Study("learning_rate", "01_learning_rate.ipynb", "Initial learning rate",
          "lrs", "lr", baseline=0.05),
    Study("schedule", "02_schedule.ipynb", "Learning-rate schedule: constant vs cosine",
          "schedules", "schedule", baseline="constant"),
    Study("weight_decay", "03_weight_decay.ipynb", "Weight decay",
          "weight_decays", "weight_decay", baseline=0.0005),
    Study("mixup", "04_mixup.ipynb", "Mixup", "mixup_alphas", "mixup_alpha", baseline=0.0),
    Study("test", "05_test.ipynb", "Test: the final model on the 10,000 test images",
          extra={"n_confused": int}),
]}

# Names users reach for that are spelled differently here.
STUDY_ALIASES = {"seed": "seeds"}


def study(name: str) -> Study:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}")
    return STUDIES[name]


def label(field_name: str | None, value) -> str:
    """The one way a setting is named: ``lr=0.5``, ``schedule=cosine``; ``final`` when a study
    compares nothing."""
    if field_name is None:
        return "final"
    return f"{field_name}={value:g}" if isinstance(value, float) else f"{field_name}={value}"


# --- the parameters cell ---------------------------------------------------------------------

def parameters_cell(path: str | os.PathLike) -> tuple[str, dict]:
    """The source of a notebook's ``parameters`` cell and the values it assigns (literals)."""
    nb = json.loads(Path(path).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"])
            values = {}
            for node in ast.parse(src).body:
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name)):
                    raise ConfigError(f"{path}: the parameters cell may only assign literals "
                                      f"(line {node.lineno})")
                values[node.targets[0].id] = ast.literal_eval(node.value)
            return src, values
    raise ConfigError(f"{path}: no cell tagged 'parameters'")


def notebook_defaults(name: str) -> dict:
    """What the study's notebook file sets in its parameters cell."""
    return parameters_cell(notebooks_dir() / study(name).notebook)[1]


# Names IPython puts into a kernel's namespace; not parameters.
_IPYTHON = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def user_globals(namespace: dict) -> dict:
    """The plain values a notebook defined (and papermill injected) so far."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _IPYTHON
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))
            and not callable(v)}


# --- validation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One compared setting of a study: its label, the grid value and its config (the first
    seed's; ``seeded`` gives the others)."""
    label: str
    value: typing.Any
    config: Config

    def seeded(self, seed: int) -> Config:
        return self.config.replace(seed=seed)


@dataclass
class Params:
    """Validated parameters of one study notebook."""
    study: Study
    values: dict

    @property
    def base(self) -> Config:
        """The Config shared by all settings of the study (at the first seed)."""
        keys = set(Config.keys())
        return Config.from_dict({**{k: v for k, v in self.values.items() if k in keys},
                                 "seed": self.seeds[0]})

    @property
    def seeds(self) -> list[int]:
        return list(self.values.get("seeds") or [0])

    @property
    def grid(self) -> list:
        return list(self.values.get(self.study.grid_key, [])) if self.study.grid_key else []

    def settings(self) -> list[Setting]:
        """One per compared value, in the order given; a study without a grid has one."""
        if not self.study.grid_key:
            return [Setting(label(None, None), None, self.base)]
        f = self.study.grid_field
        return [Setting(label(f, v), v, self.base.replace(**{f: v})) for v in self.grid]

    def baseline(self) -> Setting:
        """The setting the others are compared with: the study's baseline value if the grid
        holds it, else the first setting."""
        settings = self.settings()
        return next((s for s in settings if s.value == self.study.baseline), settings[0])

    def run_configs(self) -> dict[tuple[str, int], Config]:
        """(label, seed) -> Config: every run the notebook asks for."""
        return {(s.label, seed): s.seeded(seed) for s in self.settings() for seed in self.seeds}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def __getitem__(self, key):
        return self.values[key]


def check_key(name: str, key: str) -> None:
    """An error naming ``key`` if study ``name`` does not take it; a study's grid field gets
    a pointer to the grid key (``lr`` -> ``lrs``)."""
    s = study(name)
    if s.grid_field and key == s.grid_field:
        raise ConfigError(
            f"study {name!r}: parameter {key!r} is what this study varies; set its grid "
            f"{s.grid_key!r} instead (e.g. -p {s.grid_key} \"[{getattr(Config(), key)!r}]\")",
            s.grid_key)
    allowed = s.keys
    if key not in allowed:
        alias = STUDY_ALIASES.get(key)
        msg = unknown_key_message(key, list(allowed))
        if alias in allowed:
            msg = f"unknown parameter {key!r}. Did you mean {alias!r}? Allowed: {', '.join(allowed)}"
        raise ConfigError(f"study {name!r}: " + msg, key)


def validate(name: str, values: dict) -> Params:
    """Check a study's parameters: unknown keys, types, and every Config constraint."""
    s = study(name)
    allowed = s.keys
    clean = {}
    for key, value in values.items():
        check_key(name, key)
        clean[key] = coerce(key, value, allowed[key])
    for key in POSITIVE:
        if key in clean and clean[key] < 1:
            raise ConfigError(f"parameter {key!r}: must be >= 1 (got {clean[key]!r})", key)
    if "seeds" in clean and len(set(clean["seeds"])) != len(clean["seeds"]):
        raise ConfigError(f"parameter 'seeds': each seed once (got {clean['seeds']!r})", "seeds")
    if s.grid_key and s.grid_key in clean and len(set(clean[s.grid_key])) != len(clean[s.grid_key]):
        raise ConfigError(f"parameter {s.grid_key!r}: each setting once (got "
                          f"{clean[s.grid_key]!r})", s.grid_key)
    if "normalize" in clean and not s.trains:
        Config.from_dict({"normalize": clean["normalize"]})
    p = Params(s, clean)
    if s.trains:
        try:
            p.settings()      # builds (and so checks) the Config of every setting
        except ConfigError as e:
            key = s.grid_key if e.key == s.grid_field else e.key
            raise ConfigError(str(e), key) from None
    return p


# --- results ---------------------------------------------------------------------------------

def write_json(path: str | os.PathLike, obj) -> None:
    """Strict JSON (NaN/inf -> null), written atomically."""
    from .atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(json_ready(obj), indent=2, default=_jsonable, allow_nan=False))


def json_ready(o):
    """NaN/inf (a diverged run's metrics) become None, recursively: strict JSON has no NaN
    (``stats.finite`` is the one finite-number test of a single value)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: json_ready(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_ready(v) for v in o]
    if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:
        return json_ready(o.item())
    return o


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serializable: {type(o).__name__}")
