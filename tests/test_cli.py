"""The command line (hpstudy.cli): every command that touches the store takes --runs, the
store's commands on a tiny run, and errors that name their culprit with exit status 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import hpstudy
from hpstudy import store as R
from hpstudy.cli import build_parser, main as cli_main

from conftest import REPO_ROOT as REPO, quiet


@pytest.mark.parametrize("argv", [["report"], ["plan"], ["status"], ["train"], ["runs"],
                                  ["export", "tensorboard", "out"]])
def test_every_store_command_takes_runs(argv):
    args = build_parser().parse_args([*argv, "--runs", "/some/store"])
    assert args.runs == "/some/store"
    assert build_parser().parse_args(argv).runs is None      # then $HPSTUDY_RUNS or ./runs


def test_unknown_parameter_is_named_with_exit_status_2(tiny_env, capsys):
    assert cli_main(["plan", "--preset", "smoke", "-p", "learning_rat", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "learning_rat" in err and err.startswith("error: ")
    assert cli_main(["train", "lr=oops"]) == 2
    assert "lr" in capsys.readouterr().err


def test_plan_json_lists_the_plan(tiny_env, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert cli_main(["plan", "learning_rate", "--preset", "smoke", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert rows and all(r["state"] == "missing" for r in rows)
    assert {r["hash"] for r in rows} == {line.split()[0] for line in printed.splitlines()[1:-2]}


def test_cli_train_list_and_clear(tiny_env, store, capsys):
    assert cli_main(["train", "width=0.25", "epochs=1", "batch_size=100", "lr=5e-2",
                     "device=cpu", "compile=off"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out
    (d,) = [p for p in store.iterdir()]
    assert out.strip().endswith(f"done: {d}")

    assert cli_main(["runs"]) == 0
    assert d.name in capsys.readouterr().out

    assert cli_main(["runs", "--clear", "nope"]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    assert cli_main(["runs", "--clear", ".."]) == 1
    assert d.exists()

    assert cli_main(["runs", "--clear", d.name]) == 0
    assert f"removed {d}" in capsys.readouterr().out
    assert not d.exists()
    assert cli_main(["runs"]) == 0
    assert "no runs under" in capsys.readouterr().out


def test_cli_runs_clear_in_a_subprocess_and_busy_run_is_kept(done_run, store, capsys):
    d = done_run.dir
    env = {**os.environ, "HPSTUDY_RUNS": str(store)}
    # a run whose lock is held (a process is training it) is not removed (flock locks
    # belong to an open file, so this process's own lock counts as another holder)
    with R.run_lock(d, log=quiet):
        assert cli_main(["runs", "--clear", d.name]) == 1
        assert "in use by another process" in capsys.readouterr().err and d.exists()
    p = subprocess.run([sys.executable, "-m", "hpstudy", "runs", "--clear", d.name],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not d.exists()
    assert hpstudy.list_runs().empty


