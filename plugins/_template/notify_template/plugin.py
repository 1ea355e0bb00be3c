"""The plugin module, registered through the ``notifycore`` entry-point group.

Every function marked ``@hookimpl`` implements the hook of the same name
(see notifycore's docs/hooks.md); an implementation may take only the
arguments it needs.
"""

from __future__ import annotations

from collections.abc import Callable

from notifycore import Setting, hookimpl

SETTINGS = (
    Setting(
        "TEMPLATE_PREFIX",
        str,
        "[template] ",
        "Text the template consumer writes before each event's title.",
    ),
    Setting(
        "TEMPLATE_MAX_LINES",
        int,
        1000,
        "Lines the template consumer keeps in memory; older ones are dropped.",
        minimum=1,
    ),
)


@hookimpl
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    # Declared keys are validated like the core's: type, "did you mean", environment variables.
    for setting in SETTINGS:
        register(setting)
