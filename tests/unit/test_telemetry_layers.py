"""The OpenTelemetry base sits under every layer, and `phalanx.observe` on top of them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "phalanx"


def imported(path: Path) -> Iterator[str]:
    """Every `phalanx...` module `path` imports (TYPE_CHECKING and lazy imports too)."""
    # "phalanx.durable._runner" or "phalanx.observe.__init__": the package is the prefix.
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            # `from . import _spans` imports a module, not a name.
            yield from (f"{target}.{alias.name}" for alias in node.names)


def modules(under: str) -> list[Path]:
    return sorted((PACKAGE / under).rglob("*.py"))


def test_the_base_imports_nothing_else_from_phalanx() -> None:
    """`phalanx._telemetry` is domain-free: it imports no other phalanx module."""
    paths = modules("_telemetry")
    assert paths
    for path in paths:
        for name in imported(path):
            if name == "phalanx" or name.startswith("phalanx."):
                assert name.startswith("phalanx._telemetry"), f"{path.name} imports {name}"


def test_no_layer_below_observe_imports_it() -> None:
    """Only the command line uses `phalanx.observe`; the layers trace through the base."""
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0]
        if top in ("observe", "cli"):
            continue
        for name in imported(path):
            assert not name.startswith("phalanx.observe"), f"{path} imports {name}"


def test_the_checker_sees_relative_imports() -> None:
    """The import walk resolves a relative import, so the two tests above can fail."""
    assert "phalanx.durable._spans" in set(imported(PACKAGE / "durable" / "_runner.py"))
    assert "phalanx._telemetry" in set(imported(PACKAGE / "durable" / "_spans.py"))
    assert "phalanx.observe._config" in set(imported(PACKAGE / "observe" / "__init__.py"))
