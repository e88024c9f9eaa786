"""The layering docs/ARCHITECTURE.md draws, checked on the code's own imports: the query
path (``qa/``) reads through the storage wing and the model and never imports the ingest
wing; below both wings nothing imports either; nothing in ``index/`` imports ``qa/``; no
module imports the project's own modules inside a function (no circle hides there), but for a
module whose top needs an optional extra and for what ``qa --help`` loads."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, whether inside a function) for each import of ``path``, relative
    imports resolved."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    inside = {id(n) for f in ast.walk(tree)
              if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
              for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [(f"{module}.{a.name}", id(node) in inside) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in inside) for a in node.names]
    return found


def _files(*patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in ROOT.glob(pattern))


def test_the_query_path_never_imports_the_ingest_wing():
    offenders = [(p.name, m) for p in _files("qa/**/*.py") for m, _ in _imports(p)
                 if m.startswith("index.ingest")]
    assert offenders == []


def test_below_the_wings_nothing_imports_them_and_index_never_imports_qa():
    below = _files("index/models/*.py", "index/*.py")
    storage = _files("index/storage/*.py")
    offenders = [(p.name, m) for p in below for m, _ in _imports(p)
                 if m.startswith(("index.ingest", "index.storage", "qa"))]
    offenders += [(p.name, m) for p in storage for m, _ in _imports(p)
                  if m.startswith(("index.ingest", "qa"))]
    offenders += [(p.name, m) for p in _files("index/ingest/*.py") for m, _ in _imports(p)
                  if m.startswith("qa")]
    assert offenders == []


# A module whose top imports an optional extra's library (FastAPI: ``pip install -e '.[serve]'``)
# is imported where that extra is needed, after checking it is installed.
OPTIONAL = {("qa/serving.py", "qa.api.create_api")}
# ``qa --help`` loads no numpy (tests/test_speed.py): cli.py and the terminal rendering it
# imports at its top reach the library (which needs numpy) inside the command using it.
HELP_PATH = ("cli.py", "qa/terminal.py")


def test_the_project_imports_its_own_modules_at_the_top_only():
    offenders = {(p.relative_to(ROOT).as_posix(), m)
                 for p in _files("index/**/*.py", "qa/**/*.py")
                 for m, inside in _imports(p) if inside and m.startswith(("index", "qa"))}
    offenders = {(path, m) for path, m in offenders if path not in HELP_PATH}
    assert offenders == OPTIONAL
