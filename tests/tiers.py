"""The three test tiers, decided from what a test uses, and the guard that keeps `unit` honest.

- `unit`: no services. No PostgreSQL, no Redis, no real photos from the datasets, no browser,
  no child process (worker, CLI, compiler). In-process ONNX Runtime on a tiny model and
  loopback HTTP servers on threads are fine. `make test-fast` runs this tier.
- `integration`: PostgreSQL, Redis, a worker process, the shipped models, the datasets.
- `system`: a browser, fault injection (tests/faults), the wheel installed in a fresh
  virtualenv, the demo, training end to end: the slow whole-system checks.

`classify` reads an item's directory, its module's imports (torch and friends mean the train
extra), its fixtures (the whole closure of what it requests) and the code of its test
function, of those fixtures and of every helper in tests/ they call, looking for the names
below. A test says its tier with a marker only where that cannot tell
(`pytestmark = pytest.mark.system` in a module, or `@pytest.mark.integration`). The explicit
marker wins; the guard below catches one that lies.

The guard: while a `unit` item is set up and runs (not its teardown, which may also tear
down an earlier integration test's module fixtures), connecting to PostgreSQL or
Redis, connecting anywhere but loopback, starting a process, or opening anything under the
datasets directory raises `TierViolation`, and the item fails even if the code under test
caught that error. A mis-tiered test fails at once instead of quietly making the tier slow.
"""

from __future__ import annotations

import ast
import inspect
import ipaddress
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

UNIT, INTEGRATION, SYSTEM = "unit", "integration", "system"
TIERS = (UNIT, INTEGRATION, SYSTEM)

TESTS_DIR = Path(__file__).resolve().parent

# Fixtures (shared ones from the conftest files) that mean a tier on their own.
SYSTEM_FIXTURES = frozenset({"browser", "cluster", "make_run"})
INTEGRATION_FIXTURES = frozenset(
    {"pg_url", "redis_url", "make_settings", "datasets_dir", "shipped_model", "live", "worker"}
)
# Names in the code of a test, its fixtures or the tests/ helpers they call.
SYSTEM_NAMES = frozenset({"sync_playwright", "async_playwright", "PostgresCluster"})
INTEGRATION_NAMES = (  # the most telling first: the first found is the reason given
    "running_worker",  # a worker process (tests/workerkit.py)
    "live_console",  # the console on a migrated PostgreSQL (tests/console_server.py)
    "RedisServer",  # a redis-server of the test's own
    "create_database",  # a throwaway PostgreSQL database
    "drop_database",
    "open_stores",  # the SQL stores behind a URL
    "PG_ADMIN_URL",
    "REDIS_TEST_URL",
    "Redis",  # redis.Redis / StrictRedis clients
    "StrictRedis",
    "build_detectors",  # the shipped detector models (open_nsfw, OCR)
    "NudityDetector",
    "ContactsDetector",
    "subprocess",  # any child process: the CLI, a compiler
    "Popen",
)
# Directories whose tests are system tests whatever they use.
SYSTEM_DIRS = (TESTS_DIR / "faults",)
# Markers that put an item in a tier of their own accord.
SYSTEM_MARKERS = frozenset({"slow"})


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _helpers(obj: Any) -> Iterator[types.FunctionType]:
    """The functions inside `obj` worth reading: itself, or a class's methods."""
    if inspect.isclass(obj):
        for value in vars(obj).values():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property) and value.fget is not None:
                value = value.fget
            if inspect.isfunction(value):
                yield value
    elif inspect.isfunction(obj):
        # A decorated helper (@contextmanager, functools.wraps) is read through to the code
        # that was written, not the decorator's wrapper.
        yield inspect.unwrap(obj)


def names_used(funcs: Iterable[Callable[..., Any]]) -> set[str]:
    """Every global and attribute name the functions mention, following helpers defined in
    tests/ (workerkit, console_server, a module's own helper functions) transitively."""
    names: set[str] = set()
    seen: set[int] = set()
    todo = [f for f in funcs if inspect.isfunction(f)]
    while todo:
        func = todo.pop()
        if id(func) in seen:
            continue
        seen.add(id(func))
        code_names = set(_code_names(func.__code__))
        names |= code_names
        module_globals = func.__globals__
        for name in code_names:
            target = module_globals.get(name)
            if getattr(target, "__module__", "").startswith("tests"):
                todo.extend(_helpers(target))
    return names


def names_mentioned(funcs: Iterable[Callable[..., Any]]) -> set[str]:
    """The string constants in the functions' code that could be fixture names."""
    found: set[str] = set()

    def walk(code: types.CodeType) -> None:
        for const in code.co_consts:
            if isinstance(const, str) and const.isidentifier():
                found.add(const)
            elif isinstance(const, types.CodeType):
                walk(const)

    for func in funcs:
        if inspect.isfunction(func) and "getfixturevalue" in set(_code_names(func.__code__)):
            walk(func.__code__)
    return found


def _fixture_defs(item: pytest.Item, name: str) -> Iterable[Any]:
    manager = getattr(item.session, "_fixturemanager", None)
    try:
        return manager.getfixturedefs(name, item) or () if manager else ()
    except Exception:  # a private pytest API: without it, the guard still catches the test
        return ()


# ---- the train extra: what `make test-fast` never imports ------------------------------

# Importing these costs 6 to 20 s (torch's dynamo, scikit-learn's scipy) and they come with
# the train extra only (`make install-train`). A test module that imports them, itself or
# through training/, is not unit, and a unit-only run does not even import it.
HEAVY_ROOTS = frozenset({"torch", "torchvision", "sklearn"})
# modq itself never imports them (tests/test_layout.py holds the worker to that): not followed.
LOCAL_ROOTS = ("training", "tests")
REPO_ROOT = TESTS_DIR.parent
_heavy_cache: dict[Path, str | None] = {}


def _module_file(name: str) -> Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_imports(tree: ast.Module, package: str) -> Iterator[str]:
    """Modules imported when the module is (not inside functions, which run later)."""
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .modelkit import ...: relative to the package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        else:
            todo.extend(ast.iter_child_nodes(node))


def _heavy_module(name: str) -> str | None:
    module = _module_file(name)
    return heavy_import(module) if module is not None else None


def heavy_import(path: Path) -> str | None:
    """The train-extra module that importing `path` pulls in (through local modules), if any."""
    path = path.resolve()
    if path in _heavy_cache:
        return _heavy_cache[path]
    _heavy_cache[path] = None  # an import cycle ends here
    found: str | None = None
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError):
        return None
    try:
        package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts[:-1])
    except ValueError:  # outside the checkout: relative imports lead nowhere we follow
        package = ""
    for name in _top_level_imports(tree, package):
        if name.split(".")[0] in HEAVY_ROOTS:
            found = name
            break
        if name.split(".")[0] in LOCAL_ROOTS and (heavy := _heavy_module(name)):
            found = f"{name} (imports {heavy})"
            break
    _heavy_cache[path] = found
    return found


def _explicit(item: pytest.Item) -> str | None:
    found = {m.name for m in item.iter_markers() if m.name in TIERS}
    if len(found) > 1:  # -m would select it twice over: one tier per test
        raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(sorted(found))}")
    return found.pop() if found else None


def inferred(item: pytest.Item) -> tuple[str, str]:
    """The tier `item` needs by what it uses, and why (for `--tiers` and error messages)."""
    path = Path(str(item.path)).resolve()
    for directory in SYSTEM_DIRS:
        if directory in path.parents:
            return SYSTEM, f"lives in {directory.relative_to(TESTS_DIR.parent)}/"
    for marker in item.iter_markers():
        if marker.name in SYSTEM_MARKERS:
            return SYSTEM, f"marked {marker.name}"
    if heavy := heavy_import(path):
        return INTEGRATION, f"imports {heavy}, the train extra"
    fixtures = set(getattr(item, "fixturenames", ()))
    if hit := sorted(fixtures & SYSTEM_FIXTURES):
        return SYSTEM, f"fixture {hit[0]}"
    funcs: list[Callable[..., Any]] = []
    if isinstance(item, pytest.Function):
        funcs.append(item.function)
        info = getattr(item, "_fixtureinfo", None)
        for name in fixtures:
            for fixdef in info.name2fixturedefs.get(name, ()) if info else ():
                funcs.append(fixdef.func)
    names = names_used(funcs)
    # A fixture asked for by name at run time (request.getfixturevalue("pg_store_url")).
    for name in sorted(names_mentioned(funcs) - fixtures):
        for fixdef in _fixture_defs(item, name):
            fixtures.add(name)
            names |= names_used([fixdef.func])
    if hit := sorted(names & SYSTEM_NAMES):
        return SYSTEM, f"uses {hit[0]}"
    for name in sorted(names):  # `from training.cli import main` inside a test
        if name.split(".")[0] in HEAVY_ROOTS:
            return INTEGRATION, f"imports {name}, the train extra"
        if name.split(".")[0] == "training" and (heavy := _heavy_module(name)):
            return INTEGRATION, f"imports {name} (imports {heavy}), the train extra"
    if hit := sorted(fixtures & INTEGRATION_FIXTURES):
        return INTEGRATION, f"fixture {hit[0]}"
    if hit := [name for name in INTEGRATION_NAMES if name in names]:
        return INTEGRATION, f"uses {hit[0]}"
    return UNIT, "uses no service"


def classify(item: pytest.Item) -> tuple[str, str]:
    tier, why = inferred(item)
    explicit = _explicit(item)
    if explicit == UNIT and tier != UNIT and why.startswith(("lives in", "imports")):
        # `make test-fast` does not even collect such a module: the marker would be a lie.
        raise pytest.UsageError(f"{item.nodeid} is marked unit but {why}")
    if explicit:
        return explicit, f"marked {explicit}"
    return tier, why


def skipped_by_unit_runs(path: Path) -> bool:
    """A file or directory a unit-only run need not import: it holds no unit test."""
    path = path.resolve()
    if any(path == d or d in path.parents for d in SYSTEM_DIRS):
        return True
    return path.suffix == ".py" and path.name.startswith("test_") and bool(heavy_import(path))


# ---- the unit-tier guard ---------------------------------------------------------------


class TierViolation(RuntimeError):
    """A test classified `unit` reached for a service, a process or the datasets."""


class Guard:
    """An audit hook (sys.addaudithook; it cannot be removed, so it is armed and disarmed)
    plus a wrapper round the PostgreSQL driver, whose libpq connects outside Python's socket
    module and so outside the audit events."""

    def __init__(self, service_ports: set[int], datasets_dir: Path, driver: bool = True) -> None:
        self.ports = service_ports
        self.datasets = str(datasets_dir.resolve())
        self.armed: str | None = None  # the nodeid of the unit item running
        self.bystanders: set[int | None] = set()
        self.violations: list[str] = []
        sys.addaudithook(self._audit)
        if driver:
            self._wrap_psycopg2()

    def arm(self, nodeid: str) -> None:
        self.violations = []
        # Threads an earlier (integration) test left running are not this test's doing.
        me = threading.get_ident()
        self.bystanders = {t.ident for t in threading.enumerate() if t.ident != me}
        self.armed = nodeid

    def disarm(self) -> list[str]:
        self.armed = None
        found, self.violations = self.violations, []
        return found

    def refuse(self, what: str) -> None:
        message = (
            f"{what}: a unit test may not do this. Move it to the integration tier (request "
            "the fixture that provides the service, or mark it `@pytest.mark.integration`); "
            "see docs/testing.md"
        )
        self.violations.append(message)
        raise TierViolation(message)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.armed is None or threading.get_ident() in self.bystanders:
            return
        if event == "socket.connect":
            self._connect(args[1])
        elif event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork"):
            shown = args[1] if event in ("subprocess.Popen", "os.exec") else args[:1]
            self.refuse(f"starting a process ({event} {shown!r:.120})")
        elif event in ("open", "os.listdir", "os.scandir"):
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                text = os.fsdecode(path)
                if text.startswith(self.datasets) or os.path.abspath(text).startswith(
                    self.datasets
                ):
                    self.refuse(f"reading the datasets ({text})")

    def _connect(self, address: Any) -> None:
        if isinstance(address, (str, bytes)):  # AF_UNIX
            text = os.fsdecode(address)
            if ".s.PGSQL" in text or "redis" in text:
                self.refuse(f"connecting to {text}")
            return
        if not isinstance(address, tuple) or len(address) < 2:
            return
        host, port = address[0], address[1]
        if port in self.ports:
            self.refuse(f"connecting to {host}:{port} (PostgreSQL or Redis)")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            self.refuse(f"connecting to {host}:{port} (not loopback)")

    def _wrap_psycopg2(self) -> None:
        try:
            import psycopg2
        except ImportError:
            return
        real = psycopg2.connect
        guard = self

        def connect(*args: Any, **kwargs: Any) -> Any:
            if guard.armed is not None and threading.get_ident() not in guard.bystanders:
                guard.refuse("connecting to PostgreSQL (psycopg2.connect)")
            return real(*args, **kwargs)

        psycopg2.connect = connect  # SQLAlchemy's dialect looks it up at each connect
