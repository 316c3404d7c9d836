"""The direction of imports, as docs/architecture.md draws it, checked on the source.

Every module under ``worker/`` is parsed with ``ast`` (nothing is imported, so this runs with
no server) and every import it makes is read: at module level, inside functions and under
``if TYPE_CHECKING:`` alike, since a type-only import still means one layer knows the other.
``from worker import clock`` counts as importing ``worker.clock``.

Each rule is a row of ``RULES``: which modules it covers, what they may import (``only``) or
must not (``never``), and why. A module name matches a rule's prefix when it is the prefix or
lies below it (``worker.ledger`` covers ``worker.ledger.models``, not ``worker.ledgers``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "worker"


@dataclass(frozen=True)
class Rule:
    subject: str  # the modules the rule covers (a module or package name)
    why: str
    only: tuple[str, ...] | None = None  # the parts of worker they may import, besides themselves
    never: tuple[str, ...] = ()  # the parts of worker they must not import
    exempt: tuple[tuple[str, str], ...] = ()  # (module, import) pairs allowed, each with its why


# The plumbing the simulator shares with the worker: it computes no signature and no fee, so
# sharing it cannot hide a bug the simulator is there to catch.
SIMULATOR_PLUMBING = (
    "worker.runners.asgi",
    "worker.runners.limits",
    "worker.tokens",
    "worker.clock",
)

RULES: tuple[Rule, ...] = (
    Rule(
        "worker.tencent",
        "the protocol (signing, requests, answers and their classes, segments, the HTTP client) "
        "is usable on its own: it knows nothing of Celery, the database or a message's history",
        only=(),
    ),
    Rule(
        "worker.ledger",
        "the tables and their queries sit under everything that uses them; the clock stamps "
        "rows, and tencent.codes names the attempt outcomes the tables store",
        only=("worker.clock", "worker.tencent.codes"),
        # Alembic's environment is an entry point of the `alembic` command line, which gets its
        # database URL from the settings; nothing in worker imports it.
        exempt=(("worker.ledger.migrations.env", "worker.config"),),
    ),
    Rule(
        "worker.services",
        "services are plain functions given their collaborators, tested without Celery or a "
        "web server; the adapters call them, never the other way round",
        never=(
            "worker.celery",
            "worker.cli",
            "worker.api",
            "worker.receiver",
            "worker.runners",
            "worker.console",
            "worker.simulator",
        ),
    ),
    Rule(
        "worker.observability.logs",
        "anything may log, the ledger and the protocol client included: a leaf imports nothing "
        "of the worker, or it would import what imports it",
        only=("worker.clock",),
    ),
    Rule(
        "worker.observability.metrics",
        "anything may count: a leaf imports nothing of the worker",
        only=("worker.clock",),
    ),
    Rule(
        "worker.observability",
        "observability sits under the services (they log and count); its gauges and endpoint "
        "read the ledger and the settings, and are told the rest (the queues to measure)",
        never=(
            "worker.services",
            "worker.celery",
            "worker.cli",
            "worker.api",
            "worker.receiver",
            "worker.runners",
            "worker.console",
            "worker.simulator",
        ),
    ),
    Rule(
        "worker.simulator",
        "the simulator checks the client: it shares the protocol's data types and code table, "
        "and the server plumbing, but never the code that computes a signature or a fee, or a "
        "bug in one place would pass both (tests/simulator/test_signature.py proves its own "
        "signing against the published vectors)",
        only=("worker.tencent.types", "worker.tencent.codes", *SIMULATOR_PLUMBING),
    ),
    *(
        Rule(
            plumbing,
            "what the simulator shares must itself stay free of the client's code",
            only=SIMULATOR_PLUMBING,
        )
        for plumbing in SIMULATOR_PLUMBING
    ),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The names of worker's modules (or packages) that ``name`` imports, wherever it does."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from worker import clock` imports a module; `from worker.x import f` a name.
            submodules = {f"{module}.{alias.name}" for alias in node.names}
            found.update((submodules & MODULES.keys()) or {module})
    return {imported for imported in found if within(imported, "worker")}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def covering(name: str) -> list[Rule]:
    """The rules for ``name``: the most specific subject wins over its package's rule."""
    rules = [rule for rule in RULES if within(name, rule.subject)]
    if not rules:
        return []
    longest = max(len(rule.subject) for rule in rules)
    return [rule for rule in rules if len(rule.subject) == longest]


def breaks(rule: Rule, name: str, imported: str) -> bool:
    if within(imported, rule.subject) or (name, imported) in rule.exempt:
        return False
    if any(within(imported, forbidden) for forbidden in rule.never):
        return True
    return rule.only is not None and not any(within(imported, ok) for ok in rule.only)


def violations(sources: dict[str, Path]) -> list[str]:
    found = []
    for name, path in sources.items():
        for rule in covering(name):
            for imported in sorted(imports_of(name, path)):
                if breaks(rule, name, imported):
                    found.append(f"{name} imports {imported}: {rule.why}")
    return found


@pytest.mark.parametrize("rule", RULES, ids=[rule.subject for rule in RULES])
def test_each_rule_covers_modules_that_exist(rule: Rule) -> None:
    # A rule for a package that was renamed away would pass for ever.
    assert any(within(name, rule.subject) for name in MODULES)
    for module, imported in rule.exempt:
        assert module in MODULES, module
        assert imported in imports_of(module, MODULES[module]), (module, imported)


def test_imports_point_inward() -> None:
    assert violations(MODULES) == []


def test_a_wrong_import_is_caught(tmp_path: Path) -> None:
    # The checker itself must be able to fail: each of these breaks one row.
    wrong = {
        "worker.services.dispatch": "from worker.celery.routing import DISPATCH_EVERY_SECONDS\n",
        "worker.tencent.client": "def f() -> None:\n    from worker.ledger import messages\n",
        "worker.ledger.models": "from worker import config\n",
        "worker.observability.logs": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from worker.config import X\n"
        ),
        "worker.simulator.signature": "from worker.tencent.signing import sign\n",
        "worker.runners.asgi": "from worker.tencent import client\n",
    }
    sources = {}
    for name, text in wrong.items():
        path = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        sources[name] = path
    found = violations(sources)
    assert [line.split(":")[0] for line in found] == [
        "worker.services.dispatch imports worker.celery.routing",
        "worker.tencent.client imports worker.ledger.messages",
        "worker.ledger.models imports worker.config",
        "worker.observability.logs imports worker.config",
        "worker.simulator.signature imports worker.tencent.signing",
        "worker.runners.asgi imports worker.tencent.client",
    ]


def test_the_simulator_shares_no_code_with_the_client_it_checks() -> None:
    # Moved from tests/simulator/test_signature.py: it does use the protocol's shared types.
    imported = set().union(
        *(
            imports_of(name, path)
            for name, path in MODULES.items()
            if within(name, "worker.simulator")
        )
    )
    from_client = {name for name in imported if within(name, "worker.tencent")}
    assert from_client and from_client <= {"worker.tencent.types", "worker.tencent.codes"}
    assert {
        name
        for name in imported
        if not within(name, "worker.simulator") and not within(name, "worker.tencent")
    } <= set(SIMULATOR_PLUMBING)
    for name in SIMULATOR_PLUMBING:
        assert {n for n in imports_of(name, MODULES[name])} <= set(SIMULATOR_PLUMBING), name


def test_the_code_cites_only_documents_of_the_repository() -> None:
    # The design facts a docstring relies on live in docs/; a note kept elsewhere goes stale unseen.
    texts = {name: path.read_text(encoding="utf-8") for name, path in MODULES.items()}
    cited = {cite for text in texts.values() for cite in re.findall(r"docs/[\w-]+\.md", text)}
    assert cited
    assert {cite for cite in cited if not (PACKAGE.parent / cite).is_file()} == set()
    assert [name for name, text in texts.items() if "DESIGN" in text] == []
