"""The index page of a report: every study's settings with their statistics over seeds, the
test scores, every run with its numerics, and a summary figure.

Rendered from a Jinja2 template (``templates/index.html.j2``; Jinja2 ships with nbconvert);
this module only gathers the numbers the notebooks recorded and formats them.
"""
from __future__ import annotations

import base64
import datetime as _dt
import io
import platform
import re
from pathlib import Path

import jinja2
import markupsafe
import torch
from matplotlib.figure import Figure

from . import published, readings
from .atomic import atomic_write
from .stats import is_finite
from .store import RunDir
from .studies import write_json

TEMPLATES = Path(__file__).parent / "templates"
PT = 100


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["pct"] = lambda v: "" if not is_finite(v) else f"{PT * float(v):.2f}%"
    env.filters["num"] = lambda v: "" if not is_finite(v) else f"{float(v):.4f}"
    env.filters["mean_sd"] = readings.fmt_mean_sd
    env.filters["ci"] = readings.fmt_ci
    env.filters["sci"] = lambda ci: readings.fmt_ci(ci, signed=True)
    env.filters["pts"] = lambda v: "" if not is_finite(v) else f"{PT * float(v):+.2f}"
    env.filters["md"] = inline_markdown
    env.filters["clip"] = readings.clip_accuracy
    return env


def inline_markdown(text: str) -> markupsafe.Markup:
    """The readings' inline Markdown (``code``, **bold**) as HTML, everything else escaped:
    the index shows the same sentences as the notebooks, without raw backticks."""
    html = str(markupsafe.escape(text or ""))
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    html = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", html)
    return markupsafe.Markup(html)


def setting_rows(outcome: dict, compare: bool) -> list[dict]:
    """One row per setting of a study as the template shows it."""
    res = outcome.get("results") or {}
    winner = (res.get("winner") or {}).get("label")
    rows = []
    settings = res.get("settings") or {}
    base = settings.get(res.get("baseline")) or {}
    for label, s in settings.items():
        pub = s.get("published") if compare else None
        pub_diff = None
        if pub and base.get("published") and "difference" in s:
            pub_diff = pub["val_acc"] - base["published"]["val_acc"]
        rows.append({"label": label, "baseline": label == res.get("baseline"),
                     "winner": label == winner, "s": s, "pub": pub, "pub_diff": pub_diff,
                     "d": s.get("difference")})
    return rows


def headline(outcome: dict) -> str:
    res = outcome.get("results") or {}
    if res.get("test"):
        t = res["test"]
        return (f"test accuracy {readings.fmt_mean_sd(t['test_acc'])}, top-5 "
                f"{readings.fmt_mean_sd(t['top5'])} on {t.get('n', 0):,} images")
    if res.get("winner"):
        return readings.winner_sentence(res["winner"], "by final validation accuracy").replace(
            "by final validation accuracy: ", "")
    return ""


def summary_figure(outcomes: list[dict]) -> str | None:
    """One panel per study: each setting's mean final validation accuracy with its 95%
    interval and every seed's value; PNG as a data URI."""
    studies = [o for o in outcomes if (o.get("results") or {}).get("settings")]
    if not studies:
        return None
    fig = Figure(figsize=(3.2 * len(studies), 3.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(studies), squeeze=False)[0]
    for ax, o in zip(axes, studies):
        settings = o["results"]["settings"]
        for i, (label, s) in enumerate(settings.items()):
            vals = [v for v in s["per_seed"]["val_acc"] if is_finite(v)]
            ax.plot([i] * len(vals), [PT * v for v in vals], "o", color="0.6", ms=4)
            m, ci = s["val_acc"].get("mean"), s["val_acc"].get("ci95")
            if is_finite(m):
                err = None if not ci else [[PT * (m - ci[0])], [PT * (ci[1] - m)]]
                ax.errorbar([i], [PT * m], yerr=err, fmt="D", color="C0", capsize=4)
        ax.set_xticks(range(len(settings)))
        ax.set_xticklabels([k.split("=", 1)[-1] for k in settings], rotation=30, fontsize=8)
        ax.set_title(o["title"].split(":")[0], fontsize=9)
        ax.set_ylabel("final val acc (%)")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("final validation accuracy: mean and 95% interval (diamond), seeds (dots)",
                 fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def run_rows(outcomes: list[dict]) -> list[dict]:
    """Every run of every study, with its numerics as it ran (from its config.json)."""
    rows = []
    for o in outcomes:
        res = o.get("results") or {}
        for label, s in (res.get("settings") or {}).items():
            for r in s["runs"]:
                rows.append({"study": o["study"], **r, "resolved": RunDir(r["dir"]).resolved()})
    return rows


def write(out: Path, preset, outcomes: list[dict], total: float,
          report_id: str | None = None) -> Path:
    compare = preset.compare_with_report
    data = next(((o.get("results") or {}).get("data") for o in outcomes
                 if o["study"] == "data" and o.get("results")), None)
    test = next(((o.get("results") or {}).get("test") for o in outcomes
                 if o["study"] == "test" and o.get("results")), None)
    studies = [{"o": o, "rows": setting_rows(o, compare), "headline": headline(o),
                "k": next((s["last_k"]["k"] for s in ((o.get("results") or {}).get("settings")
                                                       or {}).values()), None)}
               for o in outcomes]
    results = {o["study"]: o["results"] for o in outcomes if o.get("results")}
    page = _env().get_template("index.html.j2").render(
        answers=readings.answers(results), preset=preset, compare=compare, outcomes=outcomes, studies=studies, data=data,
        test=test, test_published=(test or {}).get("published") if compare else None,
        runs=run_rows(outcomes), figure=summary_figure(outcomes), total=total,
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), host=platform.node(),
        machine=f"{platform.machine()}, Python {platform.python_version()}, torch "
                f"{torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}",
        published_lr_same=published.NUMBERS[("learning_rate", 0.5)]
        == published.NUMBERS[("learning_rate", 0.05)])
    path = out / "index.html"
    atomic_write(path, page)
    write_json(out / "summary.json", {
        "preset": preset.name, "report_id": report_id, "seconds": total,
        "studies": [{k: v for k, v in o.items() if k != "results"} for o in outcomes],
        "runs": run_rows(outcomes)})
    return path


