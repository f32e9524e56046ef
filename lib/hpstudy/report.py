"""The runner: execute the study notebooks with a preset, export HTML, write the index.

Built on papermill's Python API. A failing notebook still yields its HTML (with the error
visible), the index marks it failed, the remaining studies still run, and the command exits
non-zero.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import yaml

from .config import ConfigError
from .presets import PresetError, load_preset
from .reference import REPORT
from .studies import STUDIES

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL_NAME = "hpstudy"


# --- kernel ----------------------------------------------------------------------------------

def ensure_kernel(name: str | None = None) -> str:
    """A kernel that runs this very Python, registered into this environment if needed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    if name:
        try:
            ksm.get_kernel_spec(name)
        except NoSuchKernel:
            raise ConfigError(f"no Jupyter kernel named {name!r}; installed: "
                              f"{', '.join(sorted(ksm.find_kernel_specs()))}") from None
        return name
    exe_names = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    for candidate in ("python3", KERNEL_NAME):
        try:
            argv0 = ksm.get_kernel_spec(candidate).argv[0]
        except NoSuchKernel:
            continue
        # jupyter_client runs a bare "python" as the current interpreter
        if argv0 in exe_names or os.path.realpath(argv0) == os.path.realpath(sys.executable):
            return candidate
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name=f"Python (hpstudy, {sys.prefix})",
            prefix=sys.prefix)
    return KERNEL_NAME


# --- execution -------------------------------------------------------------------------------

def export_html(nb_path: Path, html_path: Path, show_input: bool = False) -> None:
    """A self-contained HTML page: figures are embedded as data URIs, CSS inlined."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    exporter = HTMLExporter(exclude_input=not show_input, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    html_path.write_text(body, encoding="utf-8")


def run_study(study: str, params: dict, out: Path, kernel: str, show_input: bool,
              log=print) -> dict:
    """Execute one notebook; return its outcome (status, seconds, error, results)."""
    import papermill as pm

    s = STUDIES[study]
    stem = Path(s.notebook).stem
    out_nb, out_html = out / f"{stem}.ipynb", out / f"{stem}.html"
    results_path = out / "results" / f"{study}.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    if results_path.exists():
        results_path.unlink()
    params = {**params, "results_path": str(results_path)}
    t0 = time.perf_counter()
    error = None
    interrupted = False
    try:
        pm.execute_notebook(str(NOTEBOOKS / s.notebook), str(out_nb), parameters=params,
                            kernel_name=kernel, progress_bar=False, log_output=False,
                            stdout_file=sys.stdout, stderr_file=sys.stderr,
                            cwd=str(NOTEBOOKS))
    except pm.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
        interrupted = e.ename == "KeyboardInterrupt"
    except KeyboardInterrupt:  # Ctrl-C reached the runner before the kernel
        error, interrupted = "KeyboardInterrupt: interrupted", True
    except Exception as e:  # kernel died, notebook missing, ...
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    if out_nb.exists():
        try:
            export_html(out_nb, out_html, show_input)
        except Exception as e:
            error = error or f"HTML export failed: {type(e).__name__}: {e}"
    results = None
    if results_path.exists():
        results = json.loads(results_path.read_text())
    elif error is None:
        error = f"the notebook recorded no results ({results_path} missing)"
    return {"study": study, "notebook": s.notebook, "title": s.title,
            "html": out_html.name if out_html.exists() else None,
            "status": "interrupted" if interrupted else "failed" if error else "ok", "error": error,
            "seconds": seconds, "results": results}


def main(args) -> int:
    try:
        preset = load_preset(args.preset)
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    studies = args.studies or list(STUDIES)
    unknown = [s for s in studies if s not in STUDIES]
    if unknown:
        print(f"error: unknown study {unknown[0]!r}; studies: {', '.join(STUDIES)}", file=sys.stderr)
        return 2
    overrides = {k: yaml.safe_load(v) for k, v in (args.param or [])}
    extra = {"preset": preset.name}
    if args.runs:
        extra["runs_root"] = str(Path(args.runs).resolve())
    if args.data_root:
        extra["data_root"] = str(Path(args.data_root).resolve())
    kernel = ensure_kernel(args.kernel)
    out = Path(args.out or ROOT / "reports" / preset.name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"hpstudy report: preset {preset.name} ({preset.path}), kernel {kernel}, out {out}",
          flush=True)
    outcomes = []
    t_all = time.perf_counter()
    for i, study in enumerate(studies, 1):
        nb = STUDIES[study].notebook
        print(f"[{i}/{len(studies)}] {nb} ...", flush=True)
        accepts = STUDIES[study].keys
        # an override goes to the studies that take it; one that no study takes goes to all,
        # so the notebooks report it as unknown
        params = {**preset.params(study),
                  **{k: v for k, v in extra.items() if k in accepts},
                  **{k: v for k, v in overrides.items()
                     if k in accepts or not any(k in s.keys for s in STUDIES.values())}}
        o = run_study(study, params, out, kernel, args.show_input)
        outcomes.append(o)
        line = f"[{i}/{len(studies)}] {nb:<24} {o['status']:<6} {o['seconds']:7.1f}s"
        print(line + (f"  {o['error']}" if o["error"] else ""), flush=True)
        write_index(out, preset, outcomes, time.perf_counter() - t_all)
        if o["status"] == "interrupted":
            print(f"interrupted during {nb}: every finished epoch is kept in the run store; "
                  f"run the same command again to resume", file=sys.stderr, flush=True)
            return 130
    total = time.perf_counter() - t_all
    write_index(out, preset, outcomes, total)
    failed = [o["study"] for o in outcomes if o["status"] != "ok"]
    print(f"done in {total:.1f}s: {len(outcomes) - len(failed)} ok, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "") + f"; open {out / 'index.html'}")
    return 1 if failed else 0


# --- the index -------------------------------------------------------------------------------

def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def _num(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _diff(ours, theirs, pct: bool) -> str:
    if ours is None or theirs is None or (isinstance(ours, float) and math.isnan(ours)):
        return ""
    d = ours - theirs
    return f"{100 * d:+.2f} pt" if pct else f"{d:+.4f}"


def run_rows(outcomes: list[dict]) -> list[dict]:
    """One row per run of every study, as recorded by the notebooks."""
    rows = []
    for o in outcomes:
        res = o.get("results") or {}
        for r in res.get("runs", []):
            rows.append({"study": o["study"], **r, "best_setting": res.get("best_setting")})
    return rows


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.ok{color:#0a7a2f;font-weight:600}.failed,.diverged,.interrupted{color:#b00020;font-weight:600}
.err{font-family:monospace;white-space:pre-wrap;color:#b00020;text-align:left}
.note{color:#555;font-size:.9rem}tr.best td{background:#f3faf5}
"""


def write_index(out: Path, preset, outcomes: list[dict], total: float) -> Path:
    e = html.escape
    compare = preset.compare_with_report
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>hpstudy: {e(preset.name)}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>hpstudy report: preset <code>{e(preset.name)}</code></h1>",
             f"<p>{e(preset.description)}</p>",
             f"<p class='note'>Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} on "
             f"{e(platform.node())} ({e(platform.machine())}, Python {platform.python_version()}); "
             f"{len(outcomes)} notebooks in {total:.0f} s. Every number below is read from the "
             f"run that produced it.</p>"]
    data = next((o["results"].get("data") for o in outcomes
                 if o["study"] == "data" and o.get("results")), None)
    if data:
        official = "matches the official release" if data.get("official") else \
            "does NOT match the official release byte for byte (md5)"
        parts.append(f"<p class='note'>Data: <code>{e(str(data.get('root')))}</code>; {official}.</p>")
    parts.append("<h2>Studies</h2><table><tr><th class='l'>notebook</th><th class='l'>study</th>"
                 "<th>status</th><th>time</th><th class='l'>result</th></tr>")
    for o in outcomes:
        link = f"<a href='{e(o['html'])}'>{e(o['notebook'])}</a>" if o["html"] else e(o["notebook"])
        res = o.get("results") or {}
        headline = ""
        if res.get("best_setting"):
            headline = f"best by validation accuracy: {e(str(res['best_setting']))}"
        if res.get("test"):
            t = res["test"]
            headline = f"test accuracy {_pct(t.get('acc'))}, top-5 {_pct(t.get('top5'))} on {t.get('n', 0):,} images"
        status = f"<span class='{o['status']}'>{o['status']}</span>"
        parts.append(f"<tr><td class='l'>{link}</td><td class='l'>{e(o['title'])}</td><td>{status}</td>"
                     f"<td>{o['seconds']:.0f} s</td><td class='l'>{headline}</td></tr>")
        if o["error"]:
            parts.append(f"<tr><td></td><td colspan='4' class='err'>{e(o['error'])}</td></tr>")
    parts.append("</table>")

    rows = run_rows(outcomes)
    head = ["study", "setting", "status", "epochs", "train loss", "train acc", "val loss",
            "val acc", "best val acc (epoch)", "time"]
    if compare:
        head += ["report val loss", "report val acc", "Δ val acc"]
    parts.append("<h2>Runs (final epoch)</h2><table><tr>" + "".join(
        f"<th class='{'l' if i < 3 else ''}'>{e(h)}</th>" for i, h in enumerate(head)) + "</tr>")
    for r in rows:
        f, b = r.get("final", {}), r.get("best", {})
        best_cls = " class='best'" if r.get("label") == r.get("best_setting") else ""
        cells = [e(r["study"]), e(str(r.get("label"))),
                 f"<span class='{e(r.get('status', ''))}'>{e(r.get('status', ''))}</span>",
                 f"{r.get('epochs_done')}/{r.get('epochs')}", _num(f.get("train_loss")),
                 _pct(f.get("train_acc")), _num(f.get("val_loss")), _pct(f.get("val_acc")),
                 f"{_pct(b.get('val_acc'))} ({b.get('epoch') and int(b['epoch'])})",
                 f"{r.get('seconds', 0):.0f} s"]
        if compare:
            ref = REPORT.get((r["study"], r.get("label")), {})
            cells += [_num(ref.get("val_loss")), _pct(ref.get("val_acc")),
                      _diff(f.get("val_acc"), ref.get("val_acc"), True)]
        parts.append(f"<tr{best_cls}>" + "".join(
            f"<td class='{'l' if i < 3 else ''}'>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    parts.append("</table>")
    test = next((o["results"].get("test") for o in outcomes
                 if o["study"] == "test" and o.get("results")), None)
    if test:
        ref = REPORT[("test", "final")]["test_acc"]
        line = f"<h2>Test</h2><p>Final model: test accuracy <b>{_pct(test.get('acc'))}</b>, " \
               f"top-5 {_pct(test.get('top5'))} on {test.get('n', 0):,} test images"
        if compare:
            line += f"; the report gives {_pct(ref)} ({_diff(test.get('acc'), ref, True)})"
        parts.append(line + ".</p>")
    if compare:
        parts.append("<p class='note'>The report's learning-rate rows for 0.5 and 0.05 are "
                     "identical to the last digit (copied by hand); they are shown as printed.</p>")
    parts.append("<p class='note'>One run per setting: differences of a point or two are "
                 "within seed-to-seed spread and are not evidence.</p></body></html>")
    path = out / "index.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    (out / "summary.json").write_text(json.dumps(
        {"preset": preset.name, "seconds": total,
         "studies": [{k: v for k, v in o.items() if k != "results"} for o in outcomes],
         "runs": rows}, indent=2, default=str))
    return path
