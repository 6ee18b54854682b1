"""The package's layers, kept by a test: no import goes up a layer, no vendor SDK above the adapters, no
cycle.

The rule is written once, in session_service/__init__.py (LAYERS below mirrors it) and docs/architecture.md.
Every import counts, also the lazy ones inside functions and those under TYPE_CHECKING: a lazy import is
still a dependency, and the layer it reaches is what a reader must know.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import session_service

PACKAGE = Path(session_service.__file__).parent

# Layer -> the layers it may import (itself included). Read bottom to top.
LAYERS: dict[str, set[str]] = {
    "domain": {"domain"},
    "support": {"domain", "support"},  # settings and observability: read by every layer above
    "services": {"domain", "support", "services"},
    "adapters": {"domain", "support", "adapters"},
    "root": {"domain", "support", "services", "adapters", "root"},  # the composition root
    "edges": {"domain", "support", "services", "root", "edges"},
}
SUPPORT = {"session_service.settings", "session_service.observability"}
ROOT_MODULES = {"session_service", "session_service.runtime", "session_service.snapstart"}

# Vendor SDKs: only adapters and the composition root import them.
VENDOR_SDKS = ("boto3", "botocore", "pynamodb", "redis", "e2b", "cryptography", "aws_xray_sdk")
# Powertools by part: its logger, metrics and tracer belong to observability alone; its idempotency utility is
# an adapter's; its HTTP resolver and Lambda typing are the edges' framework.
POWERTOOLS = {
    "aws_lambda_powertools.logging.correlation_paths": {"edges"},
    "aws_lambda_powertools.logging": {"support"},
    "aws_lambda_powertools.metrics": {"support"},
    "aws_lambda_powertools.tracing": {"support"},
    "aws_lambda_powertools.utilities.idempotency": {"adapters", "root"},
    "aws_lambda_powertools.event_handler": {"edges"},
    "aws_lambda_powertools.utilities.typing": {"edges"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in SUPPORT:
        return "support"
    if module in ROOT_MODULES:
        return "root"
    folder = module.split(".")[1]
    assert folder in LAYERS, (
        f"{module} is in no layer: put it in a layer's folder (session_service/__init__.py)"
    )
    return folder


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file: ours resolved to a module of the package, vendors as
    written."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                ours = node.module.split(".")[0] == "session_service"
                yield node.lineno, candidate if candidate in known or not ours else node.module


def graph() -> dict[str, set[str]]:
    known = set(modules())
    return {
        module: {name for _, name in imports(path, known) if name in known and name != module}
        for module, path in modules().items()
    }


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_import_goes_up_a_layer() -> None:
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if target != "session_service" and layer_of(target) not in LAYERS[layer_of(module)]
    ]
    assert not upward, "\n".join(upward)


def test_vendor_sdks_only_in_adapters_and_the_composition_root() -> None:
    known = set(modules())
    leaks = []
    for module, path in modules().items():
        layer = layer_of(module)
        for line, name in imports(path, known):
            if name.split(".")[0] in VENDOR_SDKS and layer not in {"adapters", "root"}:
                leaks.append(f"{module}:{line} imports {name}")
            for prefix in sorted(POWERTOOLS, key=len, reverse=True):
                if name == prefix or name.startswith(prefix + "."):
                    if layer not in POWERTOOLS[prefix]:
                        leaks.append(f"{module}:{line} imports {name} (only {sorted(POWERTOOLS[prefix])})")
                    break
    assert not leaks, "\n".join(leaks)


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if target == "session_service":
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize(
    ("module", "target", "allowed"),
    [
        ("session_service.domain.ids", "session_service.services.auth", False),
        ("session_service.services.auth", "session_service.domain.ids", True),
        ("session_service.services.tools", "session_service.runtime", False),
        ("session_service.runtime", "session_service.edges.mcp", False),
        ("session_service.adapters.sqs", "session_service.services.teardown", False),
        ("session_service.edges.api", "session_service.runtime", True),
    ],
)
def test_the_rule_itself(module: str, target: str, allowed: bool) -> None:
    """The rule says what the docs say (a test of the test: it would catch these)."""
    assert (layer_of(target) in LAYERS[layer_of(module)]) is allowed
