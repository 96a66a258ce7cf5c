"""Layering rules, checked on the source: the domain depends on nothing but the standard
library, pydantic and the eventsourcing library's domain parts; commands never reach into
adapters or projections."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DOMAIN_ALLOWED = ("pydantic", "pydantic_core", "eventsourcing.domain", "eventsourcing.utils")
COMMANDS_FORBIDDEN = ("adapters", "projections")


def imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in a module of `package`, nested too."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = (
                package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            )
            yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])


def imports(path: Path) -> Iterator[tuple[int, str]]:
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    return imports_in(path.read_text(encoding="utf-8"), package)


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def python_files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def test_domain_imports_only_stdlib_pydantic_and_eventsourcing_domain() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module!r}"
        for path in python_files("domain")
        for line, module in imports(path)
        if not (
            module.split(".")[0] in sys.stdlib_module_names
            or within(module, DOMAIN_ALLOWED)
            or within(module, ("domain",))
        )
    ]
    assert not bad, (
        "the domain may import only the standard library, pydantic, eventsourcing.domain, "
        "eventsourcing.utils and domain.*:\n  " + "\n  ".join(bad)
    )


def test_commands_never_import_adapters_or_projections() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module!r}"
        for path in python_files("commands")
        for line, module in imports(path)
        if within(module, COMMANDS_FORBIDDEN)
    ]
    assert not bad, "commands must not depend on adapters or projections:\n  " + "\n  ".join(bad)


def test_projections_never_import_adapters_or_commands() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module!r}"
        for path in python_files("projections")
        for line, module in imports(path)
        if within(module, ("adapters", "commands"))
    ]
    assert not bad, "projections must not depend on adapters or commands:\n  " + "\n  ".join(bad)


PRODUCT_PACKAGES = ("domain", "commands", "projections", "adapters")
# The one product module that may load the benchmarks: `tally bench`, lazily, inside the
# command (benchmarks/ is not in the wheel; the command says so when it is missing).
BENCH_ENTRY_POINT = Path("adapters/cli/main.py")


# Likewise the chaos suite (chaos/, not in the wheel): only `tally chaos stack`, lazily.
CHAOS_ENTRY_POINT = Path("adapters/simulation/cli.py")


def bench_imports(relative: Path, source: str) -> list[str]:
    """The imports of benchmarks in a product module that break the rule."""
    return lazy_only_imports(relative, source, "benchmarks", BENCH_ENTRY_POINT)


def chaos_imports(relative: Path, source: str) -> list[str]:
    """The imports of the chaos suite in a product module that break the rule."""
    return lazy_only_imports(relative, source, "chaos", CHAOS_ENTRY_POINT)


def lazy_only_imports(relative: Path, source: str, target: str, entry_point: Path) -> list[str]:
    """Imports of `target` anywhere but inside a function of `entry_point`."""
    package = ".".join(relative.parts[:-1])
    module_level = {
        node.lineno
        for node in ast.parse(source).body
        if isinstance(node, ast.Import | ast.ImportFrom)
    }
    return [
        f"{relative}:{line}: imports {module!r}"
        for line, module in imports_in(source, package)
        if within(module, (target,)) and (relative != entry_point or line in module_level)
    ]


def test_product_packages_never_import_the_benchmarks() -> None:
    bad = [
        problem
        for folder in PRODUCT_PACKAGES
        for path in python_files(folder)
        for problem in bench_imports(path.relative_to(ROOT), path.read_text(encoding="utf-8"))
    ]
    assert not bad, (
        "domain/, commands/, projections/ and adapters/ must not import benchmarks/ (only "
        f"{BENCH_ENTRY_POINT} may, lazily inside `tally bench`):\n  " + "\n  ".join(bad)
    )


def test_the_benchmarks_rule_allows_only_a_lazy_import_in_the_entry_point() -> None:
    lazy = "def bench():\n    from benchmarks import run\n"
    eager = "from benchmarks.report import Figure\n"
    assert bench_imports(BENCH_ENTRY_POINT, lazy) == []
    assert bench_imports(BENCH_ENTRY_POINT, eager) == [
        f"{BENCH_ENTRY_POINT}:1: imports 'benchmarks.report'"
    ]
    assert len(bench_imports(Path("adapters/http/app.py"), lazy)) == 1
    assert len(bench_imports(Path("domain/money.py"), "import benchmarks.run\n")) == 1
    source = (ROOT / BENCH_ENTRY_POINT).read_text(encoding="utf-8")
    assert "from benchmarks import run" in source, "tally bench moved: update this rule"


def test_product_packages_never_import_the_chaos_suite() -> None:
    bad = [
        problem
        for folder in PRODUCT_PACKAGES
        for path in python_files(folder)
        for problem in chaos_imports(path.relative_to(ROOT), path.read_text(encoding="utf-8"))
    ]
    assert not bad, (
        "domain/, commands/, projections/ and adapters/ must not import chaos/ (only "
        f"{CHAOS_ENTRY_POINT} may, lazily inside `tally chaos stack`):\n  " + "\n  ".join(bad)
    )


def test_the_chaos_rule_allows_only_a_lazy_import_in_the_entry_point() -> None:
    lazy = "def stack():\n    from chaos import run\n"
    assert chaos_imports(CHAOS_ENTRY_POINT, lazy) == []
    assert chaos_imports(CHAOS_ENTRY_POINT, "import chaos.stack\n") == [
        f"{CHAOS_ENTRY_POINT}:1: imports 'chaos.stack'"
    ]
    assert len(chaos_imports(Path("adapters/cli/main.py"), lazy)) == 1
    assert len(chaos_imports(Path("commands/bus.py"), "from chaos.result import Result\n")) == 1
    source = (ROOT / CHAOS_ENTRY_POINT).read_text(encoding="utf-8")
    assert "from chaos import run" in source, "tally chaos stack moved: update this rule"


def test_the_checker_resolves_relative_and_nested_imports() -> None:
    source = "from . import money\nfrom ..adapters import x\ndef f():\n    import redis\n"
    assert [m for _, m in imports_in(source, "domain")] == ["domain", "adapters", "redis"]
