"""``hpstudy report``: train a preset's plan, execute the study notebooks with
papermill, export HTML, write the index.

With an executor other than ``inline`` the plan's runs are dispatched first (longest first, to
a process pool, Ray or SLURM) and each notebook renders from the store (``no_train``) as soon as
its own runs are finished. A failing notebook still yields its HTML (with the error visible),
the index marks it failed, the remaining studies still run, and the command exits non-zero.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbconvert import HTMLExporter

from . import dispatch, index
from .atomic import atomic_write
from .config import ConfigError
from .paths import notebooks_dir, project_root
from .plan import (format_plan, parse_overrides, pin_precision, plan, runs_of,
                   study_parameters)
from .presets import PresetError, load_preset
from .progress import Progress
from .report_folder import FolderBusy, claim, report_id
from .data import resolve_root
from .schema import FINAL
from .store import store_root
from .studies import STUDIES

KERNEL_NAME = "hpstudy"


class _KnownParameters(logging.Filter):
    """papermill warns about every injected key the parameters cell does not assign; the
    notebooks take Config's keys without listing them, and validate what they get."""

    def filter(self, record):
        return "Passed unknown parameter" not in record.getMessage()


logging.getLogger("papermill").addFilter(_KnownParameters())


# --- kernel ----------------------------------------------------------------------------------

def ensure_kernel(name: str | None = None) -> str:
    """A kernel that runs this very Python, registered into this environment if needed."""
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
    nb = nbformat.read(nb_path, as_version=4)
    exporter = HTMLExporter(exclude_input=not show_input, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    atomic_write(html_path, body)


def execute_notebook(source: Path, out_nb: Path, params: dict, kernel: str,
                     cell_timeout: int | None = None) -> None:
    """papermill, with no cell running longer than ``cell_timeout`` seconds (a hung kernel
    raises instead of hanging the report)."""
    pm.execute_notebook(str(source), str(out_nb), parameters=params, kernel_name=kernel,
                        progress_bar=False, log_output=False, stdout_file=sys.stdout,
                        stderr_file=sys.stderr, cwd=str(notebooks_dir()),
                        execution_timeout=cell_timeout)


def run_study(study: str, params: dict, out: Path, kernel: str, show_input: bool,
              log=print, cell_timeout: int | None = None) -> dict:
    """Execute one notebook; return its outcome (status, seconds, error, results)."""
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
        execute_notebook(notebooks_dir() / s.notebook, out_nb, params, kernel, cell_timeout)
    except pm.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
        interrupted = e.ename == "KeyboardInterrupt"
    except KeyboardInterrupt:  # Ctrl-C reached this process before the kernel
        error, interrupted = "KeyboardInterrupt: interrupted", True
    except TimeoutError as e:  # nbclient's CellTimeoutError: a cell ran past cell_timeout
        error = (f"timed out: a cell ran longer than cell_timeout ({cell_timeout} s): "
                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
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
        try:
            results = json.loads(results_path.read_text())
        except (OSError, ValueError) as e:      # cut short or unreadable: the study failed
            error = error or f"{results_path}: unreadable ({type(e).__name__}: {e})"
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
    # absolute paths: the notebooks run in notebooks/, where a relative default would point
    # at another store (and another data folder) than the plan's
    extra = {"runs_root": str(store_root(args.runs)),
             "data_root": str(resolve_root(args.data_root))}
    executor = args.executor
    no_train = bool(args.no_train)
    if no_train or executor != "inline":
        extra["no_train"] = True   # notebooks render from the store
    # every study's parameters, checked before anything trains or renders
    overrides = parse_overrides(args.param)
    params = study_parameters(preset, studies, overrides, extra)
    machine = training_machine(args)
    params = pin_precision(params, machine)
    planned = plan(params, extra["runs_root"])
    out = Path(args.out or project_root() / "reports" / preset.name).resolve()
    rid = report_id(preset, overrides, extra, machine)
    for p in params.values():
        p.values["report_id"] = rid        # every page records it; upstream() cites only it
    try:
        with claim(out, rid):
            return _render(args, preset, studies, params, planned, out, rid, executor,
                           no_train, extra)
    except FolderBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:     # a full disk, a lost mount: the message names the path
        print(f"error: {e}; every finished epoch is kept in the run store, and the next run "
              f"of this command resumes", file=sys.stderr)
        return 1


def _render(args, preset, studies, params, planned, out: Path, rid: str, executor: str,
            no_train: bool, extra: dict) -> int:
    """Train (unless rendering only) and render, into the claimed folder ``out``."""
    kernel = ensure_kernel(args.kernel)
    print(f"hpstudy report: preset {preset.name} ({preset.path}), executor {executor}, "
          f"kernel {kernel}, out {out}", flush=True)
    print(format_plan(planned), flush=True)
    if no_train:
        missing = [r for r in planned if not r.finished]
        if missing:
            print(f"note: --no-train and {len(missing)} run(s) not finished in the store; the "
                  f"notebooks that need them fail naming their config", file=sys.stderr)
    t_all = time.perf_counter()
    outcomes: list[dict] = []
    pending = list(studies)

    def render_ready(final: bool = False) -> None:
        """Render, in order, every study whose runs are all finished (all, when ``final``).
        A notebook interrupted by Ctrl-C stops the report (KeyboardInterrupt)."""
        while pending:
            name = pending[0]
            if not final and not all(r.store.state in FINAL for r in runs_of(name, planned)):
                return
            pending.pop(0)
            i = len(outcomes) + 1
            nb = STUDIES[name].notebook
            print(f"[{i}/{len(studies)}] {nb} ...", flush=True)
            values = {k: v for k, v in params[name].values.items()}
            o = run_study(name, values, out, kernel, args.show_input,
                          cell_timeout=getattr(args, "cell_timeout", None) or preset.cell_timeout)
            outcomes.append(o)
            line = f"[{i}/{len(studies)}] {nb:<24} {o['status']:<6} {o['seconds']:7.1f}s"
            print(line + (f"  {o['error']}" if o["error"] else ""), flush=True)
            index.write(out, preset, outcomes, time.perf_counter() - t_all, rid)
            if o["status"] == "interrupted":
                raise KeyboardInterrupt

    try:
        if executor != "inline" and not no_train:
            # longest first (the executors keep this order among equals): among runs of one
            # length, a study's runs together and in the studies' order, so that each page
            # renders while the next study's runs still train
            order = {name: i for i, name in enumerate(STUDIES)}
            todo = sorted((r for r in planned if not r.finished),
                          key=lambda r: (-r.cost, min(order[u[0]] for u in r.uses),
                                         min(u[2] for u in r.uses)))
            render_ready()
            if todo:
                with Progress(todo) as shown:
                    dispatch.execute(todo, executor, root=extra["runs_root"], jobs=args.jobs,
                                     address=args.address, runs_per_gpu=args.runs_per_gpu,
                                     slurm=slurm_options(args), log=shown,
                                     on_done=lambda h, st: render_ready())
        render_ready(final=True)
    except KeyboardInterrupt:
        print("interrupted: every finished epoch is kept in the run store; run the same "
              "command again to resume", file=sys.stderr, flush=True)
        return 130
    total = time.perf_counter() - t_all
    index.write(out, preset, outcomes, total, rid)
    failed = [o["study"] for o in outcomes if o["status"] != "ok"]
    print(f"done in {total:.1f}s: {len(outcomes) - len(failed)} ok, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "") + f"; open {out / 'index.html'}")
    return 1 if failed else 0


def training_machine(args) -> str:
    """The device type of the machines that train the plan: ``--worker-device``; else a GPU
    for SLURM jobs that ask for one; else this machine's. A Ray cluster's GPU workers planned
    from a CPU head need ``--worker-device cuda`` (or a named precision): without it every
    worker refuses its runs, naming the option, before training anything."""
    if getattr(args, "worker_device", None):
        return args.worker_device
    if args.executor == "slurm" and getattr(args, "gpus_per_node", None):
        return "cuda"
    from .device import resolve_device

    return resolve_device("auto").type


def slurm_options(args) -> dict:
    return {k: v for k, v in {"partition": args.partition, "time": args.time,
                              "gpus_per_node": args.gpus_per_node,
                              "cpus_per_task": args.cpus_per_task,
                              "cluster": args.slurm_cluster}.items() if v is not None}
