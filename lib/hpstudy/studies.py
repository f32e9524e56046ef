"""The six studies: their notebooks, their parameters, and the validation of those parameters.

A notebook's ``parameters`` cell holds plain typed defaults; papermill injects overrides after
it, and the next cell calls ``params(study, globals())``. That call is where a mistyped key, a
wrong type or an impossible value becomes an error naming the key and what is allowed
(papermill itself only warns).
"""
from __future__ import annotations

import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, ConfigError, coerce, unknown_key_message

# Keys every study notebook accepts besides Config's.
COMMON = {
    "runs_root": typing.Optional[str],     # run store; None = $HPSTUDY_RUNS or ./runs
    "results_path": typing.Optional[str],  # where record() writes the results JSON
    "preset": typing.Optional[str],        # name of the preset, for titles
}


@dataclass(frozen=True)
class Study:
    name: str
    notebook: str
    title: str
    grid_key: str | None = None        # parameter holding the list of settings compared
    grid_field: str | None = None      # Config field each setting sets
    extra: dict = field(default_factory=dict)  # further study-specific keys: name -> type

    @property
    def keys(self) -> dict:
        hints = typing.get_type_hints(Config)
        out = {k: hints[k] for k in Config.keys()} if self.name != "data" else {
            "data_root": typing.Optional[str], "split_seed": int, "seed": int}
        # the data notebook trains nothing, so it takes no run store
        out.update({k: v for k, v in COMMON.items() if not (self.name == "data" and k == "runs_root")})
        if self.grid_key:
            out[self.grid_key] = list[type(getattr(Config(), self.grid_field))]
        out.update(self.extra)
        return out


STUDIES: dict[str, Study] = {s.name: s for s in [
    Study("data", "00_data.ipynb", "Data: split, classes, samples, normalization",
          extra={"n_samples": int, "stats_repeats": int}),
    Study("learning_rate", "01_learning_rate.ipynb", "Initial learning rate",
          "lrs", "lr"),
    Study("schedule", "02_schedule.ipynb", "Learning-rate schedule: constant vs cosine",
          "schedules", "schedule"),
    Study("weight_decay", "03_weight_decay.ipynb", "Weight decay",
          "weight_decays", "weight_decay"),
    Study("mixup", "04_mixup.ipynb", "Mixup", "mixup_alphas", "mixup_alpha"),
    Study("test", "05_test.ipynb", "Test: the final model on the 10,000 test images",
          extra={"n_confused": int}),
]}

# Names IPython puts into a kernel's namespace; not parameters.
_IPYTHON = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def user_globals(namespace: dict) -> dict:
    """The plain values a notebook defined (and papermill injected) so far."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _IPYTHON
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))
            and not callable(v)}


@dataclass
class Params:
    """Validated parameters of one study notebook."""
    study: Study
    values: dict

    @property
    def base(self) -> Config:
        """The Config shared by all settings of the study."""
        keys = set(Config.keys())
        return Config.from_dict({k: v for k, v in self.values.items() if k in keys})

    @property
    def grid(self) -> list:
        return list(self.values.get(self.study.grid_key, [])) if self.study.grid_key else []

    def configs(self) -> dict:
        """label -> Config, one per compared setting."""
        if not self.study.grid_key or self.study.grid_key not in self.values:
            return {"final": self.base}
        f = self.study.grid_field
        return {f"{f}={v:g}" if isinstance(v, float) else f"{f}={v}":
                self.base.replace(**{f: v}) for v in self.grid}

    def __getitem__(self, key):
        return self.values[key]


def validate(study: str, values: dict) -> Params:
    """Check a study's parameters: unknown keys, types, and every Config constraint."""
    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; studies: {', '.join(STUDIES)}")
    s = STUDIES[study]
    allowed = s.keys
    clean = {}
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(f"study {study!r}: " + unknown_key_message(key, list(allowed)))
        clean[key] = coerce(key, value, allowed[key])
    p = Params(s, clean)
    if study != "data":
        for cfg in p.configs().values():   # runs Config's value checks on every setting
            cfg.check()
    for key in ("n_samples", "stats_repeats", "n_confused"):
        if key in clean and clean[key] < 1:
            raise ConfigError(f"parameter {key!r}: must be >= 1 (got {clean[key]!r})")
    return p


def params(study: str, namespace: dict) -> Params:
    """Validate what a notebook's parameters cell (and papermill's injection) defined."""
    return validate(study, user_globals(namespace))


def record(p: Params, results: dict) -> dict:
    """Write the notebook's key results as JSON for the index (to ``results_path``, if set)."""
    results = {"study": p.study.name, "preset": p.values.get("preset"), **results}
    path = p.values.get("results_path")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(_finite(results), indent=2, default=_jsonable, allow_nan=False))
        os.replace(tmp, path)
    return results


def _finite(o):
    """NaN/inf (a diverged run's metrics) become null: strict JSON has no NaN."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:
        return _finite(o.item())
    return o


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serializable: {type(o).__name__}")


def run_summary(label: str, run) -> dict:
    """What the index needs of one run: setting, status, final and best-epoch metrics."""
    final, best = run.final, run.best
    metrics = ("train_loss", "train_acc", "val_loss", "val_acc")
    return {
        "label": label, "hash": run.hash, "dir": str(run.dir), "status": run.status,
        "epochs_done": int(len(run.history)), "epochs": run.config.epochs,
        "final": {k: final.get(k) for k in metrics},
        "best": {"epoch": best.get("epoch"), "val_acc": best.get("val_acc")},
        "seconds": float(run.history["seconds"].sum()) if len(run.history) else 0.0,
        "config": run.config.to_dict(),
    }
