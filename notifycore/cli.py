"""The ``notifycore`` command line.

Errors print as one line on standard error with exit status 1 (2 for usage
errors, as argparse does).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from notifycore import drivers
from notifycore.errors import NotifycoreError
from notifycore.plugins import get_plugins

__all__ = ["build_parser", "main"]


def _cmd_plugins(args: argparse.Namespace) -> int:
    out = sys.stdout
    out.write("plugins:\n")
    for info in get_plugins().list_plugins():
        origin = (
            f"{info.distribution} {info.version}" if info.distribution else "registered at run time"
        )
        out.write(f"  {info.name}  ({origin})  hooks: {', '.join(info.hooks) or '-'}\n")
    for title, namespace in (("backends", drivers.BACKENDS), ("consumers", drivers.CONSUMERS)):
        out.write(f"{title}:\n")
        for driver in drivers.list_drivers(namespace):
            origin = f"{driver.distribution} {driver.version}" if driver.distribution else "?"
            out.write(f"  {driver.name} = {driver.target}  ({origin})\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="notifycore", description="Send, follow and deliver notifications."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins = commands.add_parser(
        "plugins", help="list the plugins, backends and consumers that are installed"
    )
    plugins.set_defaults(handler=_cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except NotifycoreError as exc:
        sys.stderr.write(f"notifycore: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
