"""The plugin registry: plugins registered in code or found through the `tally.plugins`
entry-point group, each by a unique name, with its lifecycle hooks and strategy ports."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from commands.billing.strategies import PORT_METHODS, StrategyPort
from projections.envelope import EventEnvelope

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "tally.plugins"
CATCH_ALL = "on_event"  # a hook that receives every event
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

Hook = Callable[[EventEnvelope], object]


class PluginError(ValueError):
    """A plugin that cannot be registered or selected (the message says why)."""


class EntryPointLike(Protocol):
    name: str
    value: str

    def load(self) -> object: ...


def snake(event_type: str) -> str:
    """InvoicePaid -> invoice_paid."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def known_events() -> dict[str, str]:
    """snake_case name -> event type, for every event type Tally records."""
    import commands.registry  # noqa: F401  (imports every aggregate: fills EVENT_TYPES)
    from domain.base import EVENT_TYPES

    return {snake(name): name for name in EVENT_TYPES}


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: its name, hooks (event types or "*"), ports and source."""

    name: str
    plugin: object
    hooks: dict[str, str]  # event type (or "*") -> method name
    ports: tuple[StrategyPort, ...]
    source: str

    @property
    def kind(self) -> str:
        kinds = (["hooks"] if self.hooks else []) + (["strategy"] if self.ports else [])
        return "+".join(kinds) or "none"

    def hook(self, event_type: str) -> Hook | None:
        method = self.hooks.get(event_type)
        return getattr(self.plugin, method) if method is not None else None


class PluginRegistry:
    """The plugins of one system; `register` refuses a duplicate name or an unknown hook."""

    def __init__(self) -> None:
        self._plugins: dict[str, PluginInfo] = {}
        self._lock = threading.Lock()
        self.on_register: list[Callable[[PluginInfo], None]] = []

    def register(self, plugin: object, *, source: str = "code") -> PluginInfo:
        info = describe(plugin, source)
        with self._lock:
            existing = self._plugins.get(info.name)
            if existing is not None:
                raise PluginError(
                    f"a plugin named {info.name!r} is already registered (from "
                    f"{existing.source}); refusing the one from {source}"
                )
            self._plugins[info.name] = info
        log.info("plugin_registered", plugin=info.name, kind=info.kind, source=source)
        for listener in self.on_register:
            listener(info)
        return info

    def discover(
        self, entry_points: Callable[[], Iterable[EntryPointLike]] | None = None
    ) -> list[PluginInfo]:
        """Register every plugin of the `tally.plugins` entry-point group. An entry point
        loads to a plugin object or a factory (class or function) called without arguments;
        a factory returning None means "not configured here" and is skipped."""
        found = entry_points() if entry_points else default_entry_points()
        registered = []
        for entry in found:
            plugin = instantiate(entry.load())
            if plugin is None:  # silently: every `tally` command discovers (JSON on stdout)
                continue
            registered.append(self.register(plugin, source=f"entry point {entry.value}"))
        return registered

    def plugins(self) -> list[PluginInfo]:
        with self._lock:
            return sorted(self._plugins.values(), key=lambda info: info.name)

    def get(self, name: str) -> PluginInfo | None:
        with self._lock:
            return self._plugins.get(name)

    def hook_plugins(self) -> list[PluginInfo]:
        return [info for info in self.plugins() if info.hooks]

    def hooks_for(self, event_type: str) -> list[tuple[PluginInfo, str, Hook]]:
        """(plugin, hook name, callable) for one event type, catch-alls included."""
        calls: list[tuple[PluginInfo, str, Hook]] = []
        for info in self.hook_plugins():
            for key in (event_type, "*"):
                hook = info.hook(key)
                if hook is not None:
                    calls.append((info, info.hooks[key], hook))
        return calls

    def strategy(self, port: StrategyPort, name: str, setting: str) -> object:
        """The plugin `name` implementing `port` (as selected by `setting`)."""
        info = self.get(name)
        if info is None:
            known = ", ".join(i.name for i in self.plugins()) or "none registered"
            raise PluginError(f"{setting}={name!r}: no plugin of that name (known: {known})")
        if port not in info.ports:
            raise PluginError(f"{setting}={name!r}: plugin {name!r} does not implement {port}")
        return info.plugin


def default_entry_points() -> Iterable[EntryPointLike]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def instantiate(loaded: object) -> object | None:
    """An entry point's object: a class or a factory function is called, else used as is."""
    if inspect.isclass(loaded) or inspect.isfunction(loaded):
        made: object | None = loaded()
        return made
    return loaded


def describe(plugin: object, source: str) -> PluginInfo:
    name = getattr(plugin, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(
            f"a plugin needs a `name` attribute: lowercase letters, digits, '_', '-' or '.' "
            f"(got {name!r} on {type(plugin).__name__} from {source})"
        )
    ports = tuple(port for port, method in PORT_METHODS.items() if _has(plugin, method))
    return PluginInfo(name, plugin, hooks_of(plugin, name), ports, source)


def hooks_of(plugin: object, name: str) -> dict[str, str]:
    """The plugin's `on_<event>` methods by event type; an unknown event name is refused."""
    events = known_events()
    hooks: dict[str, str] = {}
    for attribute in dir(plugin):
        if not attribute.startswith("on_") or not _has(plugin, attribute):
            continue
        if attribute == CATCH_ALL:
            hooks["*"] = attribute
        elif attribute[3:] in events:
            hooks[events[attribute[3:]]] = attribute
        else:
            raise PluginError(
                f"plugin {name!r}: {attribute} names no event type (hooks are on_<event> in "
                f"snake case, such as on_invoice_paid, or {CATCH_ALL} for every event)"
            )
    return hooks


def _has(plugin: object, method: str) -> bool:
    return callable(getattr(plugin, method, None))
