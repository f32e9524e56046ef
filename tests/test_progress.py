"""The terminal's view of a training plan: one line per run in training, the plan's progress
with an ETA, and plain lines (not 160 epoch lines) when the output is not a terminal."""
from __future__ import annotations

import io
from types import SimpleNamespace

from hpstudy.config import Config
from hpstudy.progress import Progress
from hpstudy.train import format_epoch


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def planned(h, label, epochs=4, n_train=1000, done=0):
    cfg = Config(epochs=epochs, n_train=n_train)
    return SimpleNamespace(hash=h, config=cfg, epochs_done=done, label=lambda: label)


def epoch_line(h, label, k, n, acc=0.1, seconds=2.0):
    row = {"epoch": k, "lr": 0.05, "train_loss": 4.0, "train_acc": 0.05, "val_loss": 4.1,
           "val_acc": acc, "seconds": seconds}
    return f"[{h} {label}] {format_epoch(row, n)}"


def test_plain_output_has_run_ends_and_timed_progress_lines_not_epoch_lines():
    out, clock = io.StringIO(), Clock()
    runs = [planned("aaaaaaaaaaaa", "learning_rate lr=0.05 seed 0"),
            planned("bbbbbbbbbbbb", "learning_rate lr=0.5 seed 0", n_train=3000, done=2)]
    p = Progress(runs, stream=out, live=False, every=30, clock=clock)
    with p:
        p("local pool: 2 processes, 1 torch threads each")
        for k in (1, 2, 3):
            clock.t += 10
            p(epoch_line("aaaaaaaaaaaa", "learning_rate lr=0.05 seed 0", k, 4))
        # a: 3 of 4 epochs of 1,000 images; b: 2 of 4 of 3,000 from the store (not counted
        # in the rate): 3,000 fresh images in 30 s; 1,000 + 6,000 images left: ETA 70 s
        t = p.totals()
        assert t["epochs_done"] == 5 and t["finished"] == 0
        assert t["eta"] == 70.0
        clock.t += 10
        p("[aaaaaaaaaaaa learning_rate lr=0.05 seed 0] done (4 epochs, trained)")
        p("[bbbbbbbbbbbb learning_rate lr=0.5 seed 0] failed: RuntimeError: boom")
    lines = out.getvalue().splitlines()
    assert lines[0] == "local pool: 2 processes, 1 torch threads each"
    assert not any(" epoch " in x and "val loss" in x for x in lines)   # no epoch lines
    # one timed progress line (at 30 s), then the two ends, each with the plan's progress
    assert lines[1].startswith("plan: 0/2 runs, 5/8 epochs") and "ETA 1:10" in lines[1]
    # the work is weighed in images: 10,000 of 16,000 done; 4,000 fresh in 40 s: 60 s left
    assert lines[2].endswith("| plan: 1/2 runs, 6/8 epochs, 62% of the work, 0:40 elapsed, "
                             "ETA 1:00")
    assert "failed: RuntimeError: boom" in lines[3] and "plan: 2/2 runs" in lines[3]


def test_live_panel_shows_one_line_per_run_in_training():
    clock = Clock()
    runs = [planned("aaaaaaaaaaaa", "schedule schedule=cosine seed 1", epochs=30),
            planned("bbbbbbbbbbbb", "mixup mixup_alpha=1 seed 0", epochs=30)]
    p = Progress(runs, stream=io.StringIO(), live=False, clock=clock)
    clock.t = 5
    p(epoch_line("aaaaaaaaaaaa", "schedule schedule=cosine seed 1", 15, 30, acc=0.0725))
    p(epoch_line("bbbbbbbbbbbb", "mixup mixup_alpha=1 seed 0", 3, 30, acc=float("nan")))
    active = p.active_lines()
    assert len(active) == 2
    assert active[0].startswith("aaaaaaaaaaaa schedule schedule=cosine seed 1")
    assert "[##########..........]   15/30" in active[0] and "val   7.25%" in active[0]
    assert "val       -" in active[1]                      # not scored yet: no number
    p("[bbbbbbbbbbbb mixup mixup_alpha=1 seed 0] done (30 epochs, trained)")
    assert len(p.active_lines()) == 1


def test_a_terminal_gets_the_rich_panel():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    runs = [planned("aaaaaaaaaaaa", "learning_rate lr=0.05 seed 0")]
    with Progress(runs, stream=out) as p:
        assert p._live is not None
        p(epoch_line("aaaaaaaaaaaa", "learning_rate lr=0.05 seed 0", 1, 4))
        p("[aaaaaaaaaaaa learning_rate lr=0.05 seed 0] done (4 epochs, trained)")
    text = out.getvalue()
    assert "plan: 1/1 runs, 4/4 epochs, 100% of the work" in text
