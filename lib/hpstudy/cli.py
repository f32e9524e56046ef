"""Command line: ``hpstudy report|train|runs|bench`` (also ``python -m hpstudy``)."""
from __future__ import annotations

import argparse
import sys
import typing


from .config import Config, ConfigError, read_text
from .dispatch import DEFAULT_EXECUTOR, EXECUTORS
from .presets import PresetError
from .studies import STUDIES


def _parse_assignments(items: list[str]) -> dict:
    """``KEY=VALUE`` words -> values, read by the type of the Config field (``read_text``).
    Unknown keys are passed on for Config to reject by name."""
    hints = typing.get_type_hints(Config)
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = read_text(value, hints.get(key.strip()))
    return out


def cmd_train(args) -> int:
    from . import store
    from .data import DataError

    cfg = Config.from_dict(_parse_assignments(args.set))
    try:
        r = store.run(cfg, root=args.runs)
    except KeyboardInterrupt:
        # store.run already said where the run is kept and how to resume
        print("stopped by Ctrl-C; nothing finished is lost", file=sys.stderr)
        return 130
    except (DataError, store.StoreError, store.StoreUnavailable) as e:
        # the message names the file; a traceback would only bury it
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{r.status}: {r.dir}")
    return 0


def cmd_runs(args) -> int:
    from . import store

    if args.clear:
        for h in args.clear:
            try:
                print(f"removed {store.remove_run(h, args.runs)}")
            except store.StoreError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
        return 0
    df = store.list_runs(args.runs)
    if df.empty:
        print(f"no runs under {store.store_root(args.runs)}")
        return 0
    cols = [c for c in ["hash", "status", "epochs_done", "epochs", "lr", "schedule",
                        "weight_decay", "mixup_alpha", "width", "n_train",
                        "final_val_acc", "best_val_acc"] if c in df]
    print(df[cols].to_string(index=False))
    return 0


def cmd_report(args) -> int:
    from . import report

    return report.main(args)


def _plan(args):
    from .plan import parse_overrides, plan, study_parameters
    from .store import store_root
    from .presets import load_preset

    preset = load_preset(args.preset)
    extra = {"runs_root": str(store_root(args.runs))}
    params = study_parameters(preset, list(args.studies or STUDIES), parse_overrides(args.param),
                              extra)
    return params, plan(params, args.runs)


def cmd_plan(args) -> int:
    from .plan import format_plan, measured_rate
    from .studies import write_json

    params, planned = _plan(args)
    print(format_plan(planned, measured_rate(planned)))
    if args.json:
        write_json(args.json, [r.row() for r in planned])
        print(f"wrote {args.json}")
    if args.power is not None:
        from .plan import format_power, pilot_power

        pilot = args.power or args.runs
        print(f"\npower of this plan from the stored runs under {pilot or 'the run store'} "
              f"(same configs, other seeds):")
        print(format_power(pilot_power(params, pilot)))
    return 0


def cmd_status(args) -> int:
    """A table of the plan read from the store (runs started elsewhere too); --watch repeats."""
    import time

    from .plan import format_plan, measured_rate

    while True:
        _, planned = _plan(args)
        print(format_plan(planned, measured_rate(planned)), flush=True)
        if not args.watch or all(r.finished for r in planned):
            return 0
        time.sleep(args.watch)
        print()


def cmd_export(args) -> int:
    from . import export

    n = export.tensorboard(args.dir, root=args.runs)
    print(f"wrote {n} runs to {args.dir} (tensorboard --logdir {args.dir})")
    return 0


def cmd_bench(args, rest) -> int:
    from .bench import throughput

    return throughput.main(rest)


def _store_option() -> argparse.ArgumentParser:
    """``--runs``, the run store, as every command that reads or writes it takes it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--runs", default=None, help="run store (default $HPSTUDY_RUNS or ./runs)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpstudy", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    store = [_store_option()]

    r = sub.add_parser("report", parents=store,
                       help="execute study notebooks with a preset and render HTML")
    r.add_argument("studies", nargs="*", help="studies to run (default: all, in order)")
    r.add_argument("--preset", default="quick", help="preset name (params/NAME.yaml) or a YAML path")
    r.add_argument("--out", default=None, help="output folder (default reports/<preset>)")
    r.add_argument("--kernel", default=None, help="Jupyter kernel (default: this environment's, registered if needed)")
    r.add_argument("--show-input", action="store_true", help="keep code cells in the HTML")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="papermill-style override given to every study (checked by the notebooks)")
    r.add_argument("--data-root", default=None, help="CIFAR-100 folder (default $HPSTUDY_DATA or ./data)")
    r.add_argument("--executor", choices=EXECUTORS, default=DEFAULT_EXECUTOR,
                   help=f"who trains the plan's runs (default {DEFAULT_EXECUTOR}): inline = each "
                        "notebook in its kernel; local = a process pool here; ray; slurm (submitit)")
    r.add_argument("--jobs", type=int, default=None, help="local: parallel runs (default: one per core)")
    r.add_argument("--address", default=None, help="ray: cluster address (default: start a local Ray on loopback)")
    r.add_argument("--runs-per-gpu", type=int, default=1, help="ray: runs packed on one GPU")
    r.add_argument("--worker-device", choices=("cpu", "cuda"), default=None,
                   help="the device of the machines that train the runs (default: a GPU for "
                        "slurm with --gpus-per-node, else this machine's): 'precision: auto' "
                        "is settled for it, so that head and workers name each run alike")
    r.add_argument("--partition", default=None, help="slurm: partition")
    r.add_argument("--time", type=int, default=None, help="slurm: minutes per job (requeued jobs resume)")
    r.add_argument("--gpus-per-node", type=int, default=None, help="slurm: GPUs per job")
    r.add_argument("--cpus-per-task", type=int, default=None, help="slurm: CPUs per job")
    r.add_argument("--slurm-cluster", default=None, help=argparse.SUPPRESS)  # tests: submitit's local/debug
    r.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                   help="no notebook cell may run longer (default: the preset's cell_timeout, "
                        "else 10 days)")
    r.add_argument("--no-train", action="store_true",
                   help="render from the store only; a missing run is an error naming its config")
    r.set_defaults(func=cmd_report)

    for name, helptext, func in (("plan", "every run a preset will ask for, with its state", cmd_plan),
                                 ("status", "the plan's state in the store (a run started elsewhere too)", cmd_status)):
        q = sub.add_parser(name, parents=store, help=helptext)
        q.add_argument("studies", nargs="*", help="studies (default: all)")
        q.add_argument("--preset", default="quick", help="preset name or YAML path")
        q.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
        if name == "plan":
            q.add_argument("--json", default=None, help="write the plan as JSON")
            q.add_argument("--power", nargs="?", const="", default=None, metavar="PILOT_RUNS",
                           help="each comparison's minimum detectable difference at the "
                                "plan's seeds, from stored runs of the same configs at other "
                                "seeds (a pilot's store; default the run store)")
        else:
            q.add_argument("--watch", type=float, default=0, metavar="SECONDS", help="repeat until done")
        q.set_defaults(func=func)

    x = sub.add_parser("export", parents=store, help="export stored runs (tensorboard)")
    x.add_argument("format", choices=["tensorboard"])
    x.add_argument("dir", help="output folder")
    x.set_defaults(func=cmd_export)

    t = sub.add_parser("train", parents=store,
                       help="train (or resume, or fetch from the store) one run")
    t.add_argument("set", nargs="*", metavar="KEY=VALUE", help="config values, e.g. lr=0.05 epochs=2")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("runs", parents=store, help="list stored runs, or clear some")
    s.add_argument("--clear", nargs="+", metavar="HASH", help="delete these runs")
    s.set_defaults(func=cmd_runs)

    sub.add_parser("bench", help="training throughput: ours vs the report's pipeline", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return cmd_bench(None, argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, PresetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
