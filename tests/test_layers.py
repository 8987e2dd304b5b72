"""The layout shows the architecture: layers import only downwards, modules form no cycle, no
first-party import hides inside a function, and no source file outside SQL text grows past 400
lines. Read from the source (AST), so the check holds whatever the tests happen to import."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("segmentation", "segment_cli", "bot")
# lowest first: a module may import its own layer or a lower one, never a higher one
LAYERS = (
    "segmentation.errors",
    "segmentation.runtime",
    "segmentation.model",
    "segmentation.data",
    "segmentation.serving",
    "segmentation.analysis",
    "segment_cli",
    "bot",
)
MAX_LINES = 400
SQL_TEXT = {"segmentation/data/relations.py"}  # SQL text may be longer


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> str | None:
    if isinstance(node, ast.Import):
        name = alias.name
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if not MODULES[module].name == "__init__.py":
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        name = f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(first-party module imported, line, whether inside a function without a ``# lazy:``
    reason: an import deferred only because it is slow, said on its line)."""
    source = MODULES[module].read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    found = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for alias in child.names:
                    target = _target(module, child, alias)
                    if target and target != module:
                        lazy = "# lazy:" in lines[child.lineno - 1]
                        found.append((target, child.lineno, in_function and not lazy))
            walk(child, inner)

    walk(tree, False)
    return found


def _layer(module: str) -> int:
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return -1  # the package roots (segmentation/__init__) sit below everything


def test_layers_import_only_downwards():
    upward = [f"{m} (line {line}) imports {t}" for m in MODULES for t, line, _ in _imports(m) if _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_first_party_import_hides_inside_a_function():
    hidden = [f"{m} (line {line}) imports {t}" for m in MODULES for t, line, inner in _imports(m) if inner]
    assert not hidden, "\n".join(hidden)


def test_modules_form_no_cycle():
    graph = {m: {t for t, _, _ in _imports(m) if not MODULES[t].name == "__init__.py"} for m in MODULES}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_files_stay_small():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in MODULES.values()}
    big = sorted(f"{f}: {n} lines" for f, n in sizes.items() if n > MAX_LINES and f not in SQL_TEXT)
    assert not big, "\n".join(big)


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :].split("\n## ", 1)[0]
    missing = sorted(
        str(p.relative_to(ROOT))
        for p in MODULES.values()
        if p.name not in ("__init__.py", "__main__.py") and p.name not in layout
    )
    assert not missing, f"README's Layout section does not name: {missing}"


def test_a_lookup_from_the_command_line_imports_no_engine_scheduler_or_learner(trained):
    """`segment customer ID` starts cold in a fresh process: SQLGlot, DuckDB, APScheduler and
    scikit-learn (together about 0.1 s of imports before the first answer) load only in the
    commands that read a source, schedule a digest or train. The command runs to its answer in a
    process of its own, which then lists what it imported."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    table = next((trained / "models").glob("*.assignments.parquet"))
    cid = pq.read_table(table, columns=["customer_id"]).column(0)[0].as_py()
    heavy = ("sqlglot", "duckdb", "apscheduler", "sklearn", "sqlalchemy", "pyspark", "matplotlib")
    code = (
        "import sys, contextlib, io\n"
        "from segment_cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main(['--artifacts', {str(trained)!r}, 'customer', {cid!r}])\n"
        f"print(code, {cid!r} in out.getvalue(), sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0 True []", done.stdout + done.stderr
