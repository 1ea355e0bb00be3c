"""Sphinx extension: the settings reference, generated from the code at build time.

``docs/settings.md`` holds a ``{notifycore-settings}`` block; when Sphinx reads
the page, the block is replaced by one table per plugin, made from what each
plugin's ``notifycore_register_settings`` hook registers. The core and every
plugin under ``plugins/`` must be installed for the build: one that is not is
reported as a warning, which the test command turns into an error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from notifycore.plugins import DEFAULT_PLUGINS, Plugins, get_plugins
from notifycore.settings import Setting

MARKER = "```{notifycore-settings}\n```"
ROOT = Path(__file__).resolve().parents[2]


def repository_plugins(root: Path = ROOT) -> dict[str, str]:
    """Plugin name -> distribution, for the core and each ``plugins/*`` folder.

    Folders whose name starts with ``_`` (the plugin template) are not plugins
    of this repository.
    """
    found = {name: "notifycore" for name in DEFAULT_PLUGINS}
    for pyproject in sorted(root.glob("plugins/*/pyproject.toml")):
        if pyproject.parent.name.startswith("_"):
            continue
        project = tomllib.loads(pyproject.read_text())["project"]
        for name in project.get("entry-points", {}).get("notifycore", {}):
            found[name] = project["name"]
    return found


def settings_by_plugin(plugins: Plugins) -> dict[str, list[Setting]]:
    """What each registered plugin's settings hook registers, by plugin name."""
    by_plugin: dict[str, list[Setting]] = {}
    for impl in plugins.pm.hook.notifycore_register_settings.get_hookimpls():
        settings: list[Setting] = []
        register: Callable[[Setting], None] = settings.append
        impl.function(**{arg: register for arg in impl.argnames})
        by_plugin[impl.plugin_name] = settings
    return by_plugin


def _code(value: str) -> str:
    return f"`{value}`" if value else '`""`'


def _type(setting: Setting) -> str:
    if setting.choices is not None:
        return " or ".join(_code(str(c)) for c in setting.choices)
    name = setting.type.__name__
    if setting.allow_objects:
        name += " or a class"
    if setting.nullable:
        name += " or none"
    return name


def _default(setting: Setting) -> str:
    if setting.default is None:
        return "none"
    if isinstance(setting.default, bool):
        return _code(str(setting.default).lower())
    return _code(str(setting.default))


def _meaning(setting: Setting) -> str:
    text = setting.help
    if setting.minimum is not None:
        text += f" At least {setting.minimum:g}."
    if setting.maximum is not None:
        text += f" At most {setting.maximum:g}."
    if setting.secret:
        text += " Secret: shown as `***` (a URL: its password) in reprs and errors."
    return text.replace("|", "\\|")


def settings_table(settings: Iterable[Setting]) -> str:
    """A Markdown table: key, type, default, meaning, in the order they were declared."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for s in settings:
        lines.append(f"| `{s.name}` | {_type(s)} | {_default(s)} | {_meaning(s)} |")
    return "\n".join(lines)


def render_settings(plugins: Plugins, wanted: dict[str, str], warn: Callable[[str], None]) -> str:
    """One section per plugin of ``wanted`` (name -> distribution), in that order.

    ``warn`` is told about a wanted plugin that is not registered.
    """
    by_plugin = settings_by_plugin(plugins)
    registered = {name for name, _ in plugins.pm.list_name_plugin()}
    sections = []
    for name, distribution in wanted.items():
        if name not in registered:
            warn(
                f"plugin {name!r} of the distribution {distribution!r} is not installed, "
                "so its settings cannot be documented: install it in the docs environment"
            )
            continue
        settings = by_plugin.get(name, [])
        title = f"## {distribution}" if distribution != name else f"## {name}"
        body = (
            settings_table(settings) if settings else "This plugin declares no settings of its own."
        )
        sections.append(f"{title}\n\nDeclared by the plugin `{name}`.\n\n{body}\n")
    return "\n".join(sections)


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    if MARKER not in source[0]:
        return
    from sphinx.util import logging

    logger = logging.getLogger(__name__)

    def warn(message: str) -> None:
        logger.warning(message, location=docname)

    text = render_settings(get_plugins(), repository_plugins(), warn)
    source[0] = source[0].replace(MARKER, text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
