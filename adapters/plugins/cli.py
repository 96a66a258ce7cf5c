"""`tally plugins list`: the registered plugins with their kind, hooks or ports, and source."""

from __future__ import annotations

from collections.abc import Callable

from adapters.plugins.registry import PluginInfo, PluginRegistry


def describe_rows(registry: PluginRegistry) -> list[tuple[str, str, str, str]]:
    return [(i.name, i.kind, _what(i), i.source) for i in registry.plugins()]


def _what(info: PluginInfo) -> str:
    hooks = sorted(info.hooks.values())
    return ", ".join([*hooks, *info.ports]) or "-"


def run_list(echo: Callable[[str], None]) -> int:
    from adapters.plugins.wiring import load_plugins
    from adapters.settings import Settings

    plugins = load_plugins(Settings())
    rows = describe_rows(plugins.registry)
    if not rows:
        echo("no plugins registered (entry-point group tally.plugins; docs/plugins.md)")
        return 0
    header = ("name", "kind", "hooks / strategy ports", "source")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[3]
        )
    return 0
