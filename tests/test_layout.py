"""The house's rules, read from its source: README's layout table is the map of the package;
only the store opens a run folder's files; the imports have no cycles and the engines do not
reach up into the studies."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PKG = REPO_ROOT / "lib" / "hpstudy"


def modules() -> dict[str, Path]:
    """``hpstudy.x.y`` -> its file, every module of the package."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def test_readme_layout_table_lists_every_module():
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("## Layout"):]
    listed = set()
    for row in re.findall(r"^\| (.+?) \|", table, flags=re.M):
        listed |= set(re.findall(r"`([\w/]+(?:\.py|/))`", row))
    have = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
            if p.name not in ("__init__.py", "__main__.py")}
    have |= {f"{d.relative_to(PKG)}/" for d in PKG.iterdir() if (d / "__init__.py").exists()}
    assert have - listed == set(), "modules missing from README's layout table"
    assert listed - have == set(), "README's layout table names modules that do not exist"


# --- the store's files are opened by the store only ------------------------------------------

def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def store_file_uses(tree: ast.AST, names: tuple[str, ...]) -> list[str]:
    """Where code spells a run folder's file: a string constant that is (or ends a path in)
    one of ``names``, or one of them joined to a path with ``/``. Docstrings do not count."""
    docs = _docstrings(tree)
    found = {}                                            # line -> the first finding there
    distinctive = [n for n in names if "." in n]          # config.json, history.csv, *.pt
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in names:
                    found.setdefault(node.lineno, f"line {node.lineno}: / {side.value!r}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docs):
            v = node.value
            if any(v == n or v.endswith("/" + n) or v.startswith(("*/" + n, ".*")) and n in v
                   for n in distinctive):
                found.setdefault(node.lineno, f"line {node.lineno}: {v!r}")
    return [found[k] for k in sorted(found)]


def test_only_the_store_opens_a_run_folders_files():
    from hpstudy.schema import RUN_FILES

    offenders = {}
    for name, path in modules().items():
        if name.startswith("hpstudy.store") or name == "hpstudy.schema":
            continue
        uses = store_file_uses(ast.parse(path.read_text()), RUN_FILES)
        if uses:
            offenders[name] = uses
    assert offenders == {}, "modules outside hpstudy.store spell a run folder's files"


def test_the_check_finds_what_it_looks_for():
    from hpstudy.schema import RUN_FILES

    code = ('"""history.csv in a docstring is fine"""\n'
            'a = d / "status"\nb = d / "history.csv"\nc = open(f"{d}/model.pt")\n'
            'e = {"status": 1}\n')
    uses = store_file_uses(ast.parse(code), RUN_FILES)
    assert uses == ["line 2: / 'status'", "line 3: / 'history.csv'", "line 4: '/model.pt'"]


# --- imports ---------------------------------------------------------------------------------

def imports(path: Path, name: str, top_level_only: bool) -> set[str]:
    """The hpstudy modules ``name`` (at ``path``) imports."""
    tree = ast.parse(path.read_text())
    known = modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:       # module level, incl. inside if/try blocks there
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("hpstudy")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("hpstudy"):
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in known else mod)
    return {m for m in out if m != name}


def test_no_import_cycles():
    """Module-level imports only (a function's import runs when called); the package's own
    ``__init__`` re-exports and is left out."""
    graph = {n: imports(p, n, top_level_only=True) - {"hpstudy"}
             for n, p in modules().items() if n != "hpstudy"}
    # a subpackage's __init__ importing its modules is fine; a module importing its own
    # package's __init__ is an edge like any other
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert cycles == []


def test_the_engines_do_not_import_the_studies():
    """Nothing under dispatch/ imports the study layer, not even inside a function."""
    study_layer = {"hpstudy.studies", "hpstudy.presets", "hpstudy.plan", "hpstudy.readings",
                   "hpstudy.notebook", "hpstudy.report", "hpstudy.index"}
    bad = {n: sorted(imports(p, n, top_level_only=False) & study_layer)
           for n, p in modules().items() if n.startswith("hpstudy.dispatch")}
    assert {n: v for n, v in bad.items() if v} == {}


def test_no_study_module_imports_the_benchmarks():
    bad = {n: sorted(m for m in imports(p, n, top_level_only=False)
                     if m.startswith("hpstudy.bench"))
           for n, p in modules().items() if not n.startswith(("hpstudy.bench", "hpstudy.cli"))}
    assert {n: v for n, v in bad.items() if v} == {}
