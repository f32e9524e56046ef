"""What a study notebook calls: one function per step, so a notebook is its parameters cell,
a handful of calls, figures and prose, and everything a test should cover lives here.

    S = notebook.start("learning_rate", globals())   # validate, show what runs
    S.train()                                        # every (setting, seed) through the store
    S.curves(); S.table(); S.forest(); S.reading(); S.record()

``S.explain(step)`` is the prose every study notebook shows under the same heading; the data
notebook's session is ``data_study.DataSession`` (``start("data", ...)`` returns one).
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from IPython import get_ipython
from IPython.core.pylabtools import print_figure
from IPython.display import Markdown, display
from matplotlib.figure import Figure

import pandas as pd

from . import plots, published, readings, stats
from .config import describe
from .data import load_cifar100
from .data_study import DataSession
from .evaluation import confused_pairs, test_scores
from .presets import study_params
from .store import NOT_HASHED, Run, find_run, run
from .studies import (STUDIES, Params, label, notebook_defaults, user_globals, validate,
                      write_json)


def params(name: str, namespace: dict) -> Params:
    """Validate what a notebook's parameters cell (and papermill's injection) defined.

    Values that differ from the notebook file's own cell are overrides; the preset named by
    ``preset`` supplies the rest, through the same ``study_params`` ``hpstudy report`` uses.
    """
    ns = user_globals(namespace)
    cell = notebook_defaults(name)
    overrides = {k: v for k, v in ns.items() if k not in cell or cell[k] != v}
    return validate(name, study_params(name, ns.get("preset", cell.get("preset")), overrides))


def start(name: str, namespace: dict) -> "Session | DataSession":
    """Validate the notebook's parameters, show what it will run, return its session (the
    data notebook's is a ``data_study.DataSession``)."""
    p = params(name, namespace)
    show_figures()
    s = {"data": DataSession, "test": TestSession}.get(name, Session)(p)
    display(s.header())
    return s


def show_figures() -> None:
    """Let a cell that ends in a library Figure show it as a PNG (what ``%matplotlib inline``
    does for pyplot figures), without a magic line in every notebook."""
    ip = get_ipython()
    if ip is not None:
        ip.display_formatter.formatters["image/png"].for_type(
            Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


# What every study notebook says about the same steps: the prose under its headings.
EXPLAIN = {
    "training": "Every (setting, seed) goes through the run store: a run that is already there "
                "is read back, not trained again; an interrupted one resumes. One line per "
                "epoch.",
    "curves": "Per setting, the mean over seeds with the band between the lowest and highest "
              "seed. Training numbers are measured on augmented images during each epoch, "
              "validation numbers on the clean validation images after it.",
    "final": "Final-epoch validation accuracy and loss as mean ± sd over seeds with the "
             "t-interval over seeds, the mean of the last epochs, and the paired per-seed "
             "difference to the baseline with its interval (both at the usual confidence "
             "level, stated in the column names). The report's number appears only for runs "
             "at its full protocol.",
}


class Session:
    """A study notebook's state: its parameters, its runs and what they say."""

    def __init__(self, p: Params):
        self.p = p
        self.runs: dict[tuple[str, int], Run] = {}

    @property
    def name(self) -> str:
        return self.p.study.name

    def header(self) -> Markdown:
        p = self.p
        settings = ", ".join(f"`{s.label}`" for s in p.settings())
        pre = f" (preset `{p['preset']}`)" if p.get("preset") else ""
        return Markdown(f"**{p.study.title}**{pre}: {settings}; seeds {p.seeds}; shared "
                        f"settings `{shared_settings(p)}`.")

    def explain(self, step: str) -> Markdown:
        """The prose every study notebook shows under a step's heading (``EXPLAIN``):
        ``training``, ``curves`` or ``final``."""
        if step not in EXPLAIN:
            raise KeyError(f"explain: no text for {step!r}; steps: {', '.join(EXPLAIN)}")
        return Markdown(EXPLAIN[step])

    # --- training ----------------------------------------------------------------------------

    def train(self) -> dict:
        """Every (setting, seed) from the store; trained (or resumed) unless ``no_train``."""
        root = self.p.get("runs_root")
        for key, cfg in self.p.run_configs().items():
            self.runs[key] = find_run(cfg, root=root) if self.p.get("no_train") \
                else run(cfg, root=root)
        return self.runs

    def first_seed(self) -> dict:
        s0 = self.p.seeds[0]
        return {lab: r for (lab, seed), r in self.runs.items() if seed == s0}

    # --- numbers -----------------------------------------------------------------------------

    @cached_property
    def summary(self) -> dict:
        return readings.summarize(self.p, self.runs)

    def table(self):
        return readings.table(self.summary, self.p.baseline().label)

    # --- figures -----------------------------------------------------------------------------

    def curves(self):
        return plots.seed_curves(stats.long_table(self.runs), title=self.p.study.title)

    def learning_rates(self):
        return plots.learning_rates(self.first_seed())

    def forest(self):
        return plots.forest(readings.forest_rows(self.summary),
                            title=f"difference to {self.p.baseline().label}, 95% interval "
                                  f"over {len(self.p.seeds)} paired seeds")

    # --- reading -----------------------------------------------------------------------------

    def upstream(self, name: str) -> dict | None:
        """The recorded winner of an earlier study of this same report: None if absent,
        unreadable, or written by a report with other parameters (another ``report_id``), whose
        winner says nothing about this page's runs."""
        path = self.p.get("results_path")
        if not path:
            return None
        f = Path(path).parent / f"{name}.json"
        try:
            recorded = json.loads(f.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict) or recorded.get("report_id") != self.p.get("report_id"):
            return None
        return recorded.get("winner")

    def held_fixed(self, name: str, field: str, title: str) -> str:
        return readings.held_fixed(label(field, getattr(self.p.base, field)),
                                   self.upstream(name), title)

    def beta_density(self):
        return plots.beta_density(self.p.grid)

    # the value each study holds fixed from the studies before it: (study, field, title),
    # the training studies that vary a Config field, in the order of STUDIES
    UPSTREAM = [(st.name, st.grid_field, st.name.replace("_", " ").capitalize())
                for st in STUDIES.values() if st.trains and st.grid_field]

    def specific(self) -> list[str]:
        """The study's own paragraphs: whether what it holds fixed won before, and what only
        this study can say."""
        names = [u[0] for u in self.UPSTREAM]
        before = self.UPSTREAM[:names.index(self.name)] if self.name in names else self.UPSTREAM
        out = [self.held_fixed(*u) for u in before]
        extra = {"learning_rate": lambda: readings.learning_rate_reading(self.summary),
                 "schedule": lambda: readings.best_vs_final(self.summary),
                 "weight_decay": lambda: " ".join(x for x in [
                     readings.generalization_gap(self.summary),
                     readings.decay_budget({st.label: st.config
                                            for st in self.p.settings()})] if x),
                 "mixup": lambda: readings.mixup_reading(self.summary, self.p.grid)}
        if self.name in extra:
            out.append(extra[self.name]())
        return [x for x in out if x]

    def reading(self) -> Markdown:
        return Markdown("\n\n".join([readings.study_reading(self.p, self.summary),
                                       *self.specific()]))

    def record(self, **extra) -> dict:
        """The results JSON (schema in README): per setting statistics, the winner."""
        results = {"study": self.name, "preset": self.p.get("preset"),
                   "report_id": self.p.get("report_id"),
                   "seeds": self.p.seeds, "baseline": self.p.baseline().label,
                   "grid": {self.p.study.grid_key: self.p.grid} if self.p.study.grid_key else {},
                   "settings": self.summary, "winner": readings.winner(self.summary), **extra}
        if self.p.get("results_path"):
            write_json(self.p["results_path"], results)
        return results


def shared_settings(p: Params) -> str:
    """The settings all of a study's configs share, where they differ from the defaults
    (``lr`` and ``epochs`` always, unless they vary), as ``key=value, ...``."""
    dicts = [s.config.to_dict() for s in p.settings()]
    varying = [k for k, v in dicts[0].items() if any(d[k] != v for d in dicts[1:])]
    # where the data are and what runs them is the machine's, not the study's
    return describe(dicts[0], skip=("seed", *NOT_HASHED, *varying), float_format="g")


class TestSession(Session):
    """The test notebook: the final recipe, one model per seed, each scored once."""

    @cached_property
    def data(self):
        return load_cifar100(self.p.base.data_root)

    @cached_property
    def scores(self) -> dict:
        data = self.data
        return {seed: test_scores(r.model, data, r.config, n_confused=self.p["n_confused"])
                for (_, seed), r in self.runs.items() if r.status == "done"}

    def per_seed(self) -> list[dict]:
        out = []
        for seed, sc in self.scores.items():
            k, k5 = round(sc.acc * sc.n), round(sc.top5 * sc.n)
            out.append({"seed": seed, "acc": sc.acc, "top5": sc.top5, "loss": sc.loss,
                        "n": sc.n, "wilson95": list(stats.wilson(k, sc.n)),
                        "top5_wilson95": list(stats.wilson(k5, sc.n)),
                        "val_acc": self.runs[("final", seed)].final.get("val_acc")})
        return out

    def score(self):
        """Per seed: test accuracy with its Wilson interval, top-5, the final validation
        accuracy; then mean ± sd across seeds."""
        rows = [{"seed": r["seed"], "test acc %": round(100 * r["acc"], 2),
                 "95% Wilson": readings.fmt_ci(r["wilson95"]),
                 "top-5 %": round(100 * r["top5"], 2),
                 "top-5 95% Wilson": readings.fmt_ci(r["top5_wilson95"]),
                 "loss": round(r["loss"], 4),
                 "val acc % (final epoch)": round(100 * float(r["val_acc"]), 2)}
                for r in self.per_seed()]
        df = pd.DataFrame(rows).set_index("seed")
        acc, top5 = self.test_stats()
        clip = readings.clip_accuracy
        df.loc["mean ± sd"] = [readings.fmt_mean_sd(acc), readings.fmt_ci(clip(acc.get("ci95"))),
                               readings.fmt_mean_sd(top5), readings.fmt_ci(clip(top5.get("ci95"))),
                               "", ""]
        return df

    def test_stats(self) -> tuple[dict, dict]:
        ps = self.per_seed()
        return stats.summary([r["acc"] for r in ps]), stats.summary([r["top5"] for r in ps])

    def superclasses(self):
        """Accuracy per superclass, averaged over seeds."""
        tables = [sc.per_superclass for sc in self.scores.values()]
        t = pd.concat(tables).groupby("superclass", sort=False).mean(numeric_only=True).reset_index()
        acc, _ = self.test_stats()
        return plots.superclass_accuracy(t, overall=acc.get("mean"))

    def confused(self, n: int | None = None) -> pd.DataFrame:
        """The most confused (true, predicted) pairs, counts summed over seeds."""
        total = sum(sc.confusion for sc in self.scores.values())
        return confused_pairs(total, self.data, n or self.p["n_confused"])

    def reading(self) -> Markdown:
        recipe = {name: label(field, getattr(self.p.base, field))
                  for name, field, _ in self.UPSTREAM}
        upstream = {name: self.upstream(name) for name in recipe}
        return Markdown("\n\n".join(x for x in [
            readings.test_reading(self.per_seed(), upstream, recipe),
            readings.status_notes(self.summary), readings.scale_note(self.p.base)] if x))

    def record(self, **extra) -> dict:
        acc, top5 = self.test_stats()
        return super().record(test={"per_seed": self.per_seed(), "test_acc": acc, "top5": top5,
                                    "n": next(iter(self.scores.values())).n if self.scores else 0,
                                    "published": published.numbers("test", None, self.p.base)},
                              **extra)
