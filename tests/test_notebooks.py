"""The study notebooks, tested the way papermill is used: execute with injected parameters,
then assert on the output notebook and on the results JSON it records.

Executions share one run store (module scope), so a run trained by one notebook is read back by
the next (and that reuse is itself checked). Every execution starts a kernel (~5 s).
"""
from __future__ import annotations

import ast
import json
import re
import uuid
from pathlib import Path

import nbformat
import pytest

papermill = pytest.importorskip("papermill")
from papermill.exceptions import PapermillExecutionError  # noqa: E402

from hpstudy import readings  # noqa: E402
from hpstudy.studies import STUDIES, validate  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BY_NOTEBOOK = {s.notebook: s for s in STUDIES.values()}
NAMES = sorted(s.notebook for s in STUDIES.values())
# small enough to train in a second or two on the tiny fixture data set
TINY = {"width": 0.25, "epochs": 2, "batch_size": 100, "n_train": 200, "n_val": None,
        "device": "cpu", "seeds": [0, 1], "preset": None}


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


# --- the committed notebooks -----------------------------------------------------------------

def test_every_study_has_its_notebook():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean(name):
    nb = load(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"] == {"name": "python3", "display_name": "Python 3",
                                         "language": "python"}
    assert nb.metadata["language_info"]["name"] == "python"
    for c in code_cells(nb):
        assert c.outputs == [], f"{name}: a code cell carries outputs: {c.source[:60]!r}"
        assert c.execution_count is None, f"{name}: execution_count {c.execution_count}"


@pytest.mark.parametrize("name", NAMES)
def test_parameters_cell_holds_only_typed_defaults(name):
    """First code cell: tagged ``parameters``, plain assignments of literals, one comment each,
    defaults that pass the study's validation; the next cell validates, the last records."""
    study = BY_NOTEBOOK[name]
    cells = code_cells(load(name))
    first = cells[0]
    assert "parameters" in first.metadata.get("tags", [])
    tree = ast.parse(first.source)
    values = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{name}: only assignments belong in the parameters cell: {ast.unparse(node)}"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    for line in first.source.splitlines():
        assert "#" in line, f"{name}: parameter without a comment: {line!r}"
        # papermill's parameter inspection cannot parse a line with a second '='
        assert line.count("=") == 1, f"{name}: '=' in a comment: {line!r}"
    validate(study.name, values)  # the defaults are valid
    assert f'notebook.start("{study.name}", globals())' in cells[1].source
    assert "record" in cells[-1].source or "write_json" in cells[-1].source


@pytest.mark.parametrize("name", [n for n in NAMES if n != "05_test.ipynb"])
def test_study_notebooks_are_thin(name):
    """Outside its parameters cell a study notebook has at most 15 code lines (comments and
    blank lines aside): the logic lives in the library, where tests reach it."""
    lines = [line for c in code_cells(load(name))[1:] for line in c.source.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 15, lines


@pytest.mark.parametrize("name", NAMES)
def test_markdown_cells_type_no_numbers(name):
    """Numbers in readings come from code; a markdown cell types none by hand (names such as
    CIFAR-100 or md5 are not numbers)."""
    for c in load(name).cells:
        if c.cell_type == "markdown":
            number = re.search(r"(?<![\w-])[-+]?\.?\d", c.source)
            assert not number, f"{name}: number typed in markdown: {c.source!r}"


def test_study_notebooks_share_their_prose_through_the_library():
    """The prose every study notebook shows under the same headings is ``Session.explain``'s,
    called in one code cell, not copied into each notebook."""
    from hpstudy.notebook import EXPLAIN
    for study in ("01_learning_rate.ipynb", "02_schedule.ipynb", "03_weight_decay.ipynb",
                  "04_mixup.ipynb"):
        nb = load(study)
        calls = [c.source for c in code_cells(nb) if c.source.startswith("S.explain(")]
        assert calls == [f'S.explain("{step}")' for step in EXPLAIN], study
        prose = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for text in EXPLAIN.values():
            assert text[:40] not in prose, study


def test_upstream_is_the_training_studies_that_vary_a_config_field():
    from hpstudy.notebook import Session
    expected = [(s.name, s.grid_field) for s in STUDIES.values() if s.trains and s.grid_field]
    assert [(n, f) for n, f, _ in Session.UPSTREAM] == expected
    assert Session.UPSTREAM == [("learning_rate", "lr", "Learning rate"),
                                ("schedule", "schedule", "Schedule"),
                                ("weight_decay", "weight_decay", "Weight decay"),
                                ("mixup", "mixup_alpha", "Mixup")]


def test_explain_names_its_steps():
    from hpstudy.notebook import EXPLAIN, Session
    p = validate("learning_rate", {"lrs": [0.05]})
    assert Session(p).explain("curves").data == EXPLAIN["curves"]
    with pytest.raises(KeyError, match="training, curves, final"):
        Session(p).explain("nothing")


def test_data_session_records_what_it_shows(tiny_root, tmp_path):
    """The data notebook's session: the numbers of its sentences are those of its results
    JSON, computed once; ``record`` writes that JSON."""
    import torch

    from hpstudy import data as D
    from hpstudy.data_study import DataSession, black_fraction
    from hpstudy.notebook import params

    out = tmp_path / "data.json"
    p = params("data", {"data_root": str(tiny_root), "preset": None, "results_path": str(out),
                        "n_samples": 8})
    s = DataSession(p)
    res = s.record()
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    d = res["data"]
    assert list(d) == ["root", "md5", "official_md5", "official", "matches", "n_train",
                       "n_test", "split", "class_counts", "stats", "black_fraction", "normalize"]
    assert d["split"] == {"n_train": 800, "n_val": 200, "split_seed": 0,
                          "first_train": d["split"]["first_train"],
                          "first_val": d["split"]["first_val"], "matches_random_split": True}
    train_idx, val_idx = D.split_indices(1000, 200, 0)
    assert d["split"]["first_train"] == train_idx[:10].tolist()
    assert d["class_counts"]["per_class"] == \
        torch.bincount(D.load_cifar100(str(tiny_root)).train.fine[train_idx],
                       minlength=D.NUM_CLASSES).tolist()
    assert d["black_fraction"] == pytest.approx(1 - ((32 - 20 / 9) / 32) ** 2)   # 13.4%
    assert black_fraction(0) == 0
    before = torch.random.get_rng_state()
    assert s.matches_random_split                     # checked on a fork of the global RNG
    assert torch.equal(torch.random.get_rng_state(), before)
    assert f"{d['split']['n_train']:,} training" in s.split().data
    assert f"{d['class_counts']['min']} to {d['class_counts']['max']}" in s.class_counts().data
    assert "not the official release" in s.source().data
    assert list(s.md5()["matches"]) == [False] * 3
    table = s.stats_table()
    assert table.loc["augmented crops", "mean R"] == round(d["stats"]["augmented"]["mean"][0], 4)
    assert f"{100 * d['black_fraction']:.1f}% black" in s.reading().data
    assert len(s.samples().axes) >= 8 and s.class_proportions() and s.stats_figure()


# --- executing them --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("notebooks")


@pytest.fixture(scope="module")
def execute(workdir, tiny_root):
    """execute(name, **params) -> (output notebook, results dict); one shared run store."""
    store = workdir / "runs"

    def run(name: str, **params):
        tag = f"{Path(name).stem}-{uuid.uuid4().hex[:6]}"
        results = workdir / f"{tag}.json"
        base = {"data_root": str(tiny_root), "results_path": str(results), "preset": None}
        if BY_NOTEBOOK[name].name != "data":
            base.update(TINY, runs_root=str(store))
        out = workdir / f"{tag}.ipynb"
        papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters={**base, **params},
                                   kernel_name="python3", progress_bar=False, cwd=str(workdir))
        nb = nbformat.read(out, as_version=4)
        return nb, json.loads(results.read_text())

    return run


@pytest.fixture(scope="module")
def executed(execute):
    """Each notebook executed once with its defaults (on the tiny data), on demand."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = execute(name)
        return cache[name]

    return get


def outputs(nb, output_type=None) -> list:
    return [o for c in code_cells(nb) for o in c.outputs
            if output_type is None or o.output_type == output_type]


def figures(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs(nb))


def check_settings(results: dict, grid: list, seeds=(0, 1)):
    """The results JSON schema (README): per setting, its seeds, statistics over them and
    the paired difference to the baseline."""
    settings = results["settings"]
    assert len(settings) == len(grid)
    assert results["baseline"] in settings
    for label, s in settings.items():
        assert s["seeds"] == list(seeds)
        assert [r["seed"] for r in s["runs"]] == list(seeds)
        for r in s["runs"]:
            assert r["status"] == "done" and r["epochs_done"] == TINY["epochs"]
            assert set(r["final"]) == {"train_loss", "train_acc", "val_loss", "val_acc"}
        for key in ("val_acc", "val_loss"):
            st = s[key]
            assert set(st) >= {"mean", "sd", "n", "ci95"} and st["n"] == len(seeds)
            assert st["ci95"][0] <= st["mean"] <= st["ci95"][1]
            assert st["mean"] == pytest.approx(sum(s["per_seed"][key]) / len(seeds))
            assert s["last_k"][key]["n"] == len(seeds)
        assert ("difference" in s) == (label != results["baseline"])
        if "difference" in s:
            d = s["difference"]
            base = settings[results["baseline"]]["per_seed"]["val_acc"]
            diffs = [a - b for a, b in zip(s["per_seed"]["val_acc"], base)]
            assert d["mean"] == pytest.approx(sum(diffs) / len(diffs))
            assert len(d["ci95"]) == 2
    best = max(settings, key=lambda k: settings[k]["val_acc"]["mean"])
    assert settings[results["winner"]["label"]]["val_acc"]["mean"] == \
        settings[best]["val_acc"]["mean"]


def test_data_notebook(executed):
    nb, res = executed("00_data.ipynb")
    assert res["study"] == "data"
    d = res["data"]
    assert d["split"]["n_train"] == 800 and d["split"]["n_val"] == 200  # 4/5 of the tiny 1,000
    assert d["split"]["matches_random_split"] is True
    assert len(d["split"]["first_train"]) == 10
    assert set(d["stats"]) == {"train", "report", "augmented"}
    assert d["normalize"] == "train"
    assert all(len(v["mean"]) == 3 and len(v["std"]) == 3 for v in d["stats"].values())
    # zero-padded crops darken the mean: the report's defect, shown
    assert all(a < t for a, t in zip(d["stats"]["augmented"]["mean"], d["stats"]["train"]["mean"]))
    assert d["official"] is False  # the fixture is not the official release
    assert d["root"].endswith("cifar-100-python") and set(d["md5"]) == {"train", "test", "meta"}
    assert sum(d["class_counts"]["per_class"]) == 800
    assert figures(nb) >= 3  # class proportions, samples, statistics


@pytest.mark.parametrize("name", ["01_learning_rate.ipynb", "02_schedule.ipynb",
                                  "03_weight_decay.ipynb", "04_mixup.ipynb"])
def test_study_notebook(executed, name):
    nb, res = executed(name)
    study = BY_NOTEBOOK[name]
    assert res["study"] == study.name
    grid = res["grid"][study.grid_key]
    check_settings(res, grid)
    # the seed curves, the learning rates, the forest plot (+ the Beta density)
    assert figures(nb) >= 3 + (study.name == "mixup")
    assert not outputs(nb, "error")
    text = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs(nb))
    assert "over 2 seeds" in text and results_label_in(res["winner"]["label"], text)
    from hpstudy.notebook import EXPLAIN
    assert all(text.count(prose) == 1 for prose in EXPLAIN.values())   # S.explain's cells
    # each comparison is said once, computed from the numbers the results JSON holds
    for label, st in res["settings"].items():
        if label == res["baseline"]:
            continue
        d = st["difference"]
        assert {"mdd", "power", "seeds_needed"} <= set(d)
        sentence = readings.comparison(label, res["baseline"], d)
        assert text.count(sentence) == 1
        assert f"`{label}` vs `{res['baseline']}`" in sentence or "ends" in sentence


def results_label_in(label: str, text: str) -> bool:
    return f"`{label}`" in text


def test_runs_are_shared_between_studies(executed):
    """The mixup baseline is the weight-decay study's run; the test notebook's final model is
    the mixup run: read from the store, not trained again."""
    runs = {s: {label: [r["hash"] for r in st["runs"]]
                for label, st in executed(n)[1]["settings"].items()}
            for s, n in (("wd", "03_weight_decay.ipynb"), ("mixup", "04_mixup.ipynb"),
                         ("test", "05_test.ipynb"))}
    assert runs["mixup"]["mixup_alpha=0"] == runs["wd"]["weight_decay=0.0005"]
    assert runs["test"]["final"] == runs["mixup"]["mixup_alpha=0.2"]
    assert len(set(runs["test"]["final"])) == 2   # one run per seed


def test_test_notebook(executed):
    nb, res = executed("05_test.ipynb")
    t = res["test"]
    assert t["n"] == 200  # the tiny test set
    assert [r["seed"] for r in t["per_seed"]] == [0, 1]
    for r in t["per_seed"]:
        assert 0 <= r["acc"] <= r["top5"] <= 1
        assert r["wilson95"][0] <= r["acc"] <= r["wilson95"][1]
    assert t["test_acc"]["n"] == 2
    assert t["test_acc"]["mean"] == pytest.approx(sum(r["acc"] for r in t["per_seed"]) / 2)
    assert res["settings"]["final"]["runs"][0]["config"]["mixup_alpha"] == 0.2
    assert figures(nb) >= 2  # training curves, per-superclass accuracy
    text = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs(nb))
    assert "Wilson" in text and "final recipe" in text


def test_learning_rate_notebook_renders_a_diverged_run(execute):
    nb, res = execute("01_learning_rate.ipynb", lrs=[1e4, 0.05])
    status = {k: s["status"] for k, s in res["settings"].items()}
    assert status == {"lr=10000": ["diverged"] * 2, "lr=0.05": ["done"] * 2}
    assert res["winner"]["label"] == "lr=0.05"
    assert res["settings"]["lr=10000"]["val_acc"]["n"] == 0   # diverged runs count as missing
    assert not outputs(nb, "error")
    assert figures(nb) >= 3
    text = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs(nb))
    assert "`lr=10000` (seed 0) diverged after" in text


@pytest.mark.parametrize("name, params, needles", [
    ("02_schedule.ipynb", {"lr": -1}, ["'lr'", "must be > 0"]),
    ("01_learning_rate.ipynb", {"schedule": "cosin"}, ["'schedule'", "constant, cosine"]),
    ("03_weight_decay.ipynb", {"epochs": "ten"}, ["'epochs'", "expected int", "'ten'"]),
    ("01_learning_rate.ipynb", {"learning_rate": 0.1},
     ["'learning_rate'", "unknown parameter", "Allowed:"]),
])
def test_bad_parameters_fail_in_the_validation_cell(execute, name, params, needles):
    with pytest.raises(PapermillExecutionError) as info:
        execute(name, **params)
    e = info.value
    assert e.ename == "ConfigError"
    assert "notebook.start(" in e.source  # the validation cell, before any training
    for needle in needles:
        assert needle in e.evalue, (needle, e.evalue)
