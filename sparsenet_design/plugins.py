"""Plugin discovery through entry points (timm-style).

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."sparsenet_design.plugins"]
    myplugin = "my_package.plugin:register"      # a callable, no arguments

    [project.entry-points."sparsenet_design.cli"]
    myplugin = "my_package.cli:group"            # a click command or group

``register()`` is called once, the first time the core needs its registries
(tracing, channel rules, prunable layers); it registers channel rules, custom
ops and layers. The core never imports a plugin by name.
"""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

PLUGIN_GROUP = "sparsenet_design.plugins"
CLI_GROUP = "sparsenet_design.cli"

log = logging.getLogger(__name__)
_loaded: list[str] | None = None


def load_plugins() -> list[str]:
    """Import and register every installed plugin (once: scanning entry points is
    slow, so later calls return the names found the first time)."""
    global _loaded
    if _loaded is not None:
        return list(_loaded)
    found = list(entry_points(group=PLUGIN_GROUP))
    _loaded = [ep.name for ep in found]
    for ep in found:
        try:
            ep.load()()
        except Exception as exc:  # a broken plugin must not break the core
            log.warning("sparsenet-design plugin %r failed to load: %s", ep.name, exc)
    return list(_loaded)


def cli_commands():
    """``(name, click command)`` for every plugin that adds CLI sub-commands."""
    found = []
    for ep in entry_points(group=CLI_GROUP):
        try:
            found.append((ep.name, ep.load()))
        except Exception as exc:
            log.warning("sparsenet-design CLI plugin %r failed to load: %s", ep.name, exc)
    return found
