"""The plan: every run a preset's notebooks will ask for, computed from the preset alone.

It uses the same ``study_params`` as the notebooks, so the notebooks never ask for a run the
plan does not list (a test renders a preset after training its plan and checks that no
notebook trained anything). One row per distinct run hash: runs shared between studies (the
schedule study's constant run is the learning-rate study's lr=0.05 run) are trained once.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path


from .config import Config, ConfigError, read_text
from .presets import Preset, study_params
from .schema import FINAL
from .store import RunDir, locate
from .studies import STUDIES, Params, STUDY_ALIASES, check_key, study, validate

FULL_TRAIN = 40_000   # images in the training split when n_train is None


def cost(cfg: Config) -> int:
    """Training images a run processes (epochs x training images): what orders the plan and
    the dispatch, longest first."""
    return cfg.epochs * (cfg.n_train or FULL_TRAIN)


def parse_overrides(pairs) -> dict:
    """``-p KEY VALUE`` pairs, each read by the type some study gives the key
    (``config.read_text``: ``1e-4`` is a number, ``null`` is None where None is allowed)."""
    hints = {}
    for s in STUDIES.values():
        hints.update(s.keys)
    return {k: read_text(v, hints.get(k)) for k, v in pairs or []}


def route_overrides(studies: list[str], overrides: dict) -> dict[str, dict]:
    """Which ``-p`` override goes to which study. A key goes to every selected study that takes
    it; one that no selected study takes, or that sets what a selected study varies (``lr`` for
    the learning-rate study), or that a training study spells differently (``seed``: ``seeds``),
    is an error naming the key: nothing typed vanishes silently."""
    out = {name: {} for name in studies}
    for key, value in overrides.items():
        takers = [n for n in studies if key in study(n).keys]
        for n in studies:
            s = study(n)
            if key == s.grid_field or (key in STUDY_ALIASES and s.trains and n not in takers):
                check_key(n, key)   # raises, naming the key to use instead
        if not takers:
            check_key(studies[0], key)   # raises: unknown, with the closest key
            raise ConfigError(f"parameter {key!r} is taken by none of the studies "
                              f"{', '.join(studies)}", key)
        for n in takers:
            out[n][key] = value
    return out


def study_parameters(preset: Preset, studies: list[str], overrides: dict | None = None,
                     extra: dict | None = None) -> dict[str, Params]:
    """Validated parameters of every selected study (errors before anything runs).
    ``extra``: keys such as ``runs_root`` given to the studies that take them."""
    routed = route_overrides(studies, overrides or {})
    out = {}
    for name in studies:
        accepts = study(name).keys
        given = {**{k: v for k, v in (extra or {}).items() if k in accepts}, **routed[name]}
        out[name] = validate(name, study_params(name, preset, given))
    return out


def pin_precision(params: dict[str, Params], machine: str) -> dict[str, Params]:
    """The studies' parameters with ``precision: auto`` settled for ``machine``, the device type
    of the machine class that trains the runs (``store.for_machine``), where that differs from
    how this machine settles it: a CPU head planning for GPU workers. The plan, the workers and
    the notebooks (which get these parameters) then name every run by one hash."""
    import torch

    from .device import resolve_device, resolve_precision

    here = resolve_precision("auto", resolve_device("auto"))
    there = resolve_precision("auto", torch.device(machine))
    if here == there:
        return params
    out = {}
    for name, p in params.items():
        if p.study.trains and "precision" in p.study.keys and p.base.precision == "auto":
            p = validate(name, {**p.values, "precision": there})
        out[name] = p
    return out


@dataclass
class PlannedRun:
    """A row of the plan: what the engines receive (``dispatch.execute``), which never hash a
    run again."""
    hash: str
    dir: Path
    config: Config
    uses: list = field(default_factory=list)   # (study, setting label, seed)
    status: str = "missing"
    epochs_done: int = 0
    last_val_acc: float | None = None   # of the last scored epoch
    where: str = ""                     # who trains it now (the lock's holder), if anyone
    tag: str = ""                       # a label where ``uses`` is empty (bare configs)

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def cost(self) -> int:
        """Training images to process: epochs x training images (the scheduling order)."""
        return cost(self.config)

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def store(self) -> RunDir:
        return RunDir(self.dir)

    def refresh(self) -> "PlannedRun":
        """Status, progress and holder read again from the store."""
        rd = self.store
        self.status = rd.state
        self.epochs_done, self.last_val_acc = rd.progress()
        self.where = rd.holder() if self.status not in ("missing", *FINAL) else ""
        return self

    def state(self) -> str:
        if self.status in ("missing", *FINAL):
            return self.status
        return f"partial {self.epochs_done} of {self.epochs} ({self.status})"

    def label(self) -> str:
        if not self.uses:
            return self.tag
        study_name, setting, seed = self.uses[0]
        more = f" +{len(self.uses) - 1}" if len(self.uses) > 1 else ""
        return f"{study_name} {setting} seed {seed}{more}"

    def row(self) -> dict:
        return {"hash": self.hash, "state": self.state(), "epochs_done": self.epochs_done,
                "last_val_acc": self.last_val_acc, "where": self.where,
                "epochs": self.epochs, "cost_images": self.cost,
                "uses": [f"{s} {lab} seed {seed}" for s, lab, seed in self.uses],
                "config": self.config.to_dict(), "dir": str(self.dir)}


def plan(params: dict[str, Params], root: str | os.PathLike | None = None) -> list[PlannedRun]:
    """Distinct runs of the studies' parameters, longest first, with their store status."""
    by_hash: dict[str, PlannedRun] = {}
    for name, p in params.items():
        if not p.study.trains:
            continue
        for (lab, seed), cfg in p.run_configs().items():
            d = locate(cfg, root or p.get("runs_root"))
            pr = by_hash.get(d.name)
            if pr is None:
                pr = by_hash[d.name] = PlannedRun(d.name, d, cfg)
            pr.uses.append((name, lab, seed))
    for pr in by_hash.values():
        pr.refresh()
    return sorted(by_hash.values(), key=lambda r: (-r.cost, r.hash))


def plan_configs(configs, root: str | os.PathLike | None = None,
                 labels: dict[str, str] | None = None) -> list[PlannedRun]:
    """The plan of bare configs (benchmarks, tests, scripts): one row per distinct run hash,
    each hashed once here, longest first (ties in the configs' order). ``labels``: run hash ->
    label."""
    out: dict[str, PlannedRun] = {}
    for c in configs:
        cfg = c if isinstance(c, Config) else Config.from_dict(c)
        d = locate(cfg, root)
        if d.name not in out:
            out[d.name] = PlannedRun(d.name, d, cfg, tag=(labels or {}).get(d.name, "")).refresh()
    return sorted(out.values(), key=lambda r: -r.cost)


def runs_of(study_name: str, planned: list[PlannedRun]) -> list[PlannedRun]:
    return [r for r in planned if any(u[0] == study_name for u in r.uses)]


def format_plan(planned: list[PlannedRun], seconds_per_image: float | None = None) -> str:
    """A fixed-width table: one line per run, with its last validation accuracy, who trains
    it now and, given a measured rate, how long it still needs."""
    lines = [f"{'hash':<12}  {'state':<28} {'epochs':>7} {'images':>11} {'val acc':>8} "
             f"{'eta':>7}  uses"]
    for r in planned:
        acc = f"{100 * r.last_val_acc:7.2f}%" if r.last_val_acc is not None else f"{'':>8}"
        left = 0 if r.finished else r.cost * (1 - r.epochs_done / r.epochs)
        eta = f"{left * seconds_per_image / 60:6.1f}m" if seconds_per_image and left else f"{'':>7}"
        lines.append(f"{r.hash:<12}  {r.state():<28} {r.epochs:>7} {r.cost:>11,} {acc} {eta}  "
                     + "; ".join(f"{s} {lab} seed {seed}" for s, lab, seed in r.uses)
                     + (f"  [{r.where}]" if r.where else ""))
    todo = sum(r.cost * (1 - r.epochs_done / r.epochs) for r in planned if not r.finished)
    tail = f"{len(planned)} runs, {sum(r.finished for r in planned)} finished; " \
           f"{todo:,.0f} training images to go"
    if seconds_per_image:
        tail += f" (about {todo * seconds_per_image / 60:.0f} min at the measured rate)"
    return "\n".join(lines + [tail])


def measured_rate(planned: list[PlannedRun]) -> float | None:
    """Seconds per training image of the finished epochs in the store (for an estimate)."""
    secs = imgs = 0.0
    for r in planned:
        if r.epochs_done:
            secs += r.store.seconds()
            imgs += r.epochs_done * (r.config.n_train or FULL_TRAIN)
    return secs / imgs if imgs else None


def pilot_power(params: dict[str, Params], pilot_root: str | os.PathLike | None) -> list[dict]:
    """What stored runs of the same configs at other seeds (a pilot's) say about each
    comparison a planned preset makes: their paired difference to the study's baseline, and
    at the preset's seed count the minimum detectable difference (80% power, two-sided 5%),
    the power for a difference of the size the pilot saw, and the seeds that size needs."""
    from .store import NOT_HASHED, stored_runs
    from . import stats

    # scoring every k epochs leaves training and the final epoch's numbers as they are
    ignored = ("seed", "eval_every", *NOT_HASHED)

    def key(d: dict) -> str:
        return json.dumps({k: d[k] for k in Config.keys() if k not in ignored}, sort_keys=True)

    finals: dict[str, dict[int, float]] = {}
    for r in stored_runs(pilot_root):
        if r.status == "done":
            c = r.config.to_dict()
            finals.setdefault(key(c), {})[c["seed"]] = float(r.final["val_acc"])
    out = []
    for name, p in params.items():
        if not p.study.trains or not p.study.grid_key:
            continue
        base = p.baseline()
        b = finals.get(key(base.config.to_dict()), {})
        for s in p.settings():
            if s.label == base.label:
                continue
            a = finals.get(key(s.config.to_dict()), {})
            seeds = sorted(set(a) & set(b))
            d = stats.paired_difference([a[x] for x in seeds], [b[x] for x in seeds])
            at = stats.power_of(d, n=len(p.seeds))
            out.append({"study": name, "setting": s.label, "baseline": base.label,
                        "pilot_seeds": seeds, "pilot": d, "planned_seeds": len(p.seeds),
                        **{k: at[k] for k in ("mdd", "power", "seeds_needed")}})
    return out


def format_power(rows: list[dict]) -> str:
    lines = [f"{'study':<14} {'comparison':<44} {'pilot':>6} {'mean':>7} {'sd':>6} "
             f"{'n':>3} {'MDD':>6} {'power':>6} {'needs':>6}"]
    for r in rows:
        d = r["pilot"]

        def pt(v):
            return f"{100 * v:+.2f}" if v is not None and math.isfinite(v) else "-"
        power = f"{r['power']:.2f}" if r["power"] is not None else "-"
        lines.append(f"{r['study']:<14} {r['setting'] + ' - ' + r['baseline']:<44.44} "
                     f"{len(r['pilot_seeds']):>6} {pt(d.get('mean')):>7} {pt(d.get('sd')):>6} "
                     f"{r['planned_seeds']:>3} {pt(r['mdd']):>6} {power:>6} "
                     f"{r['seeds_needed'] or '-':>6}")
    lines.append("pilot: seeds of stored runs with the same configs; n: the plan's seeds; MDD: "
                 "the smallest difference n seeds detect with 80% power at the pilot's sd "
                 "(points of final val acc); power: of n seeds for the pilot's mean; needs: "
                 "seeds for 80% power at it")
    return "\n".join(lines)


__all__ = ["PlannedRun", "pin_precision", "plan", "plan_configs", "route_overrides", "study_parameters", "runs_of",
           "format_plan", "measured_rate", "STUDIES"]
