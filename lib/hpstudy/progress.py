"""What the terminal shows while a report trains its plan.

Parallel runs each log a line per epoch; interleaved, 160 of them say little. The executors'
log lines (``[hash label] epoch k/n ...``, ``[hash label] done (...)``) come here instead: on
a terminal a live panel (rich) holds one line per run in training and the whole plan's
progress with an ETA; elsewhere (a log file, CI) plain lines are printed: each run's end with
the plan's progress, and at most every ``every`` seconds a progress line while runs train.
Lines that are not about an epoch (warnings, errors, the executor's own) pass through.

The ETA weighs each epoch by its training images (``plan.cost``), measured from the rate
since this dispatch started, so epochs resumed from the store do not flatter it.
"""
from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass

LINE = re.compile(r"^\[(?P<hash>[0-9a-f]{6,}|config\d+)(?: (?P<label>[^\]]*))?\] (?P<rest>.*)$")
EPOCH = re.compile(r"^epoch\s+(?P<k>\d+)/(?P<n>\d+)\b.*?val loss\s+\S+\s+acc\s+(?P<acc>\S+)%?"
                   r".*?(?P<sec>[\d.]+)s$")
ENDS = ("done", "diverged", "failed", "interrupted")
CHATTY = re.compile(r"^run [0-9a-f]+: (training|resuming)")


@dataclass
class _Run:
    hash: str
    label: str
    epochs: int
    per_epoch: float          # training images of one epoch
    done: int = 0             # epochs finished
    start_done: int = 0       # epochs finished before this dispatch
    val_acc: float | None = None
    seconds: float | None = None
    state: str = "queued"     # queued | training | done | diverged | failed | interrupted


def _fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "--:--"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A ``log`` callable for ``dispatch.execute`` that shows the plan's progress.

    ``runs``: the planned runs to train (``plan.PlannedRun``s: hash, label(), config,
    epochs_done). ``live``: None = a rich panel when ``stream`` is a terminal."""

    def __init__(self, runs, stream=None, live: bool | None = None, every: float = 30.0,
                 clock=time.monotonic):
        self.stream = stream or sys.stdout
        self.clock = clock
        self.every = every
        self.runs: dict[str, _Run] = {}
        for r in runs:
            n = r.config.n_train or 40000
            self.runs[r.hash] = _Run(r.hash, r.label(), r.config.epochs, float(n),
                                     r.epochs_done, r.epochs_done)
        self.t0 = clock()
        self.last_plain = self.t0
        if live is None:
            live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._live = None
        if live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream)
            self._live = Live(self._render(), console=self._console, refresh_per_second=2,
                              transient=False)

    # --- numbers -----------------------------------------------------------------------------

    def totals(self) -> dict:
        rs = list(self.runs.values())
        total = sum(r.epochs * r.per_epoch for r in rs)
        done = sum(min(r.done, r.epochs) * r.per_epoch for r in rs)
        fresh = sum(max(0, min(r.done, r.epochs) - r.start_done) * r.per_epoch for r in rs)
        elapsed = self.clock() - self.t0
        rate = fresh / elapsed if elapsed > 0 and fresh > 0 else None
        left = total - done
        return {"runs": len(rs), "finished": sum(r.state in ENDS for r in rs),
                "epochs": sum(r.epochs for r in rs), "epochs_done": sum(min(r.done, r.epochs)
                                                                        for r in rs),
                "elapsed": elapsed, "eta": left / rate if rate else (0.0 if left <= 0 else None),
                "fraction": done / total if total else 1.0}

    def summary_line(self) -> str:
        t = self.totals()
        return (f"plan: {t['finished']}/{t['runs']} runs, {t['epochs_done']}/{t['epochs']} "
                f"epochs, {100 * t['fraction']:.0f}% of the work, {_fmt_time(t['elapsed'])} "
                f"elapsed, ETA {_fmt_time(t['eta'])}")

    # --- the log callable --------------------------------------------------------------------

    def __call__(self, line: str) -> None:
        m = LINE.match(line)
        run = self.runs.get(m["hash"]) if m else None
        if run is None:
            self._emit(line)
            return
        rest = m["rest"]
        e = EPOCH.match(rest)
        if e:
            run.state = "training"
            run.done = max(run.done, int(e["k"]))
            try:
                acc = float(e["acc"].rstrip("%"))
                run.val_acc = acc / 100 if math.isfinite(acc) else run.val_acc
            except ValueError:
                pass
            run.seconds = float(e["sec"])
            self._tick()
            return
        word = rest.split(":")[0].split(" ")[0]
        if word in ENDS:
            run.state = word
            if word == "done":
                run.done = run.epochs
            self._emit(f"{line}   | {self.summary_line()}")
            return
        if CHATTY.match(rest):
            run.state = "training"
            self._tick()
            return
        self._emit(line)

    def _emit(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
            self._live.update(self._render())
        else:
            print(line, file=self.stream, flush=True)

    def _tick(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
        elif self.clock() - self.last_plain >= self.every:
            self.last_plain = self.clock()
            print(self.summary_line(), file=self.stream, flush=True)

    # --- the live panel ----------------------------------------------------------------------

    def active_lines(self) -> list[str]:
        """One fixed-width line per run in training."""
        out = []
        for r in self.runs.values():
            if r.state != "training":
                continue
            acc = f"{100 * r.val_acc:6.2f}%" if r.val_acc is not None else "      -"
            sec = f"{r.seconds:5.1f}s/epoch" if r.seconds is not None else ""
            bar_n = 20
            filled = int(bar_n * r.done / max(r.epochs, 1))
            out.append(f"{r.hash} {r.label:<44.44} [{'#' * filled}{'.' * (bar_n - filled)}] "
                       f"{r.done:>4}/{r.epochs:<4} val {acc} {sec}")
        return out

    def _render(self):
        from rich.text import Text

        return Text("\n".join([*self.active_lines(), self.summary_line()]))

    def __enter__(self):
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
        return False
