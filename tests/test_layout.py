"""The walls of the layout (docs/architecture.md): which package may import what.

Static checks read every module's import statements (function-level imports included), so a
forbidden import fails here even if no test happens to execute it; the import checks run a
fresh interpreter, so what a module drags in is measured, not assumed.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from modq.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "modq"

# Lower layers never import upper ones: a package may import only from its own layer or below.
LAYERS: list[set[str]] = [
    {"modq.errors", "modq.settings", "modq.assets"},
    {"modq.domain"},
    {"modq.policy", "modq.store", "modq.detectors"},
    {"modq.pipeline", "modq.ingest"},
    {"modq.tasks", "modq.backfill"},
    {"modq.cli", "modq.console"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level or None]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
                # `from modq.store import verdicts` imports the submodule too
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = _modules()
IMPORTS = {name: _imports(path, name) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def _top(imported: str) -> str:
    return imported.split(".")[0]


def test_only_the_store_imports_sqlalchemy() -> None:
    offenders = {
        m: sorted(i for i in imps if _top(i) in ("sqlalchemy", "alembic", "psycopg2"))
        for m, imps in IMPORTS.items()
        if not m.startswith("modq.store")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


@pytest.mark.parametrize("package", ["modq.domain", "modq.policy"])
def test_domain_and_policy_import_neither_sqlalchemy_nor_celery(package: str) -> None:
    banned = {"sqlalchemy", "celery", "celery_batches", "kombu", "redis", "onnxruntime"}
    offenders = {
        m: sorted(i for i in imps if _top(i) in banned)
        for m, imps in IMPORTS.items()
        if m == package or m.startswith(package + ".")
    }
    # The one exception: the contract reads an ONNX file's metadata through ONNX Runtime,
    # imported inside `read_contract` only.
    if offenders.get("modq.domain.contract") == ["onnxruntime"]:
        del offenders["modq.domain.contract"]
    assert {m: i for m, i in offenders.items() if i} == {}


def test_imports_point_down_the_layers() -> None:
    upward = []
    for module, imps in IMPORTS.items():
        mine = _layer(module)
        for imported in imps:
            theirs = _layer(imported)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_every_package_module_has_a_layer() -> None:
    unplaced = [
        m for m in MODULES if m != "modq" and not m.startswith("modq.__") and _layer(m) is None
    ]
    assert unplaced == []


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imps in IMPORTS.items():
        for imported in imps:
            if imported in MODULES and imported != module:
                graph[module].add(imported)
    seen: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in seen:
                visit(nxt, [*stack, nxt])
        seen[node] = 2

    for module in sorted(MODULES):
        if module not in seen:
            visit(module, [module])
    assert cycles == []


def _loaded_after(statement: str) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout
    return {name.split(".")[0] for name in json.loads(out)}


def test_the_worker_never_imports_torch_or_training() -> None:
    loaded = _loaded_after("import modq.tasks.app, modq.cli.main")
    assert {"torch", "torchvision", "training"} & loaded == set()


def test_a_producer_imports_no_worker_machinery() -> None:
    """What a marketplace imports to publish: no task module, no model runtime, no database."""
    loaded = _loaded_after("import modq.ingest.publish")
    assert {"onnxruntime", "sqlalchemy", "torch", "numba", "celery_batches"} & loaded == set()
    full = _loaded_after(
        "import modq.ingest.publish; import sys; assert 'modq.tasks.app' not in sys.modules"
    )
    assert "modq" in full
