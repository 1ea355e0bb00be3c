"""This plugin's build backend: setuptools, plus the checkout's own distributions when editable.

Nothing is published to a package index yet, so ``pip install -e ".[test]"``
inside ``plugins/<name>/`` of a notifycore checkout could not find
``notifycore`` (nor a sibling plugin a test extra needs). For an editable
build inside a checkout, each requirement on one of the checkout's
distributions that the environment being installed into does not have yet
is rewritten to its folder (``notifycore @ file:///...``). One already
installed (editable or not) keeps the plain requirement, so it is never
replaced. Wheels and sdists are setuptools' own, with the requirements as
written in pyproject.toml: what is published never names a path on the
build machine. The same file is in every first-party plugin
(tests/test_packaging.py keeps the copies identical; docs/installing.md).
"""

from __future__ import annotations

import importlib.metadata
import re
import site
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

CORE = "notifycore"
# "Requires-Dist: name[extras]>=1.0; marker": the name, the extras and the marker.
_REQUIREMENT = re.compile(
    r"^Requires-Dist: (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?"
    r"[^;\n]*(?:;(?P<marker>[^\n]*))?$",
    re.MULTILINE,
)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_name(folder: Path) -> str | None:
    try:
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = project.get("project", {}).get("name")
    return _normal(name) if isinstance(name, str) else None


def checkout_distributions() -> dict[str, Path]:
    """The checkout this plugin folder sits in (``plugins/<name>/``): distribution -> folder."""
    root = Path(__file__).resolve().parent.parent.parent
    if _project_name(root) != CORE:
        return {}
    found = {CORE: root}
    for folder in sorted((root / "plugins").iterdir()):
        name = _project_name(folder)
        if name is not None:
            found.setdefault(name, folder)
    return found


def installed(name: str) -> bool:
    """Whether the environment pip installs into already has distribution ``name``."""
    # pip's build isolation takes the target's site-packages off sys.path, not out of sysconfig.
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    if sys.prefix == sys.base_prefix:  # outside a virtual environment, --user installs count
        paths.add(site.getusersitepackages())
    for dist in importlib.metadata.distributions(path=sorted(paths)):
        if _normal(dist.metadata["Name"] or "") == name:
            return True
    return False


def _use_checkout(dist_info: Path) -> None:
    folders = checkout_distributions()
    own = _normal(dist_info.name.split("-")[0])

    def rewrite(match: re.Match[str]) -> str:
        name = _normal(match["name"])
        folder = folders.get(name)
        if folder is None or name == own or installed(name):
            return match[0]
        marker = match["marker"]
        line = f"Requires-Dist: {match['name']}{match['extras'] or ''} @ {folder.as_uri()}"
        return line if marker is None else f"{line} ; {marker.strip()}"

    metadata = dist_info / "METADATA"
    # Only the headers: the description after the first blank line is the README's text.
    headers, blank, description = metadata.read_text(encoding="utf-8").partition("\n\n")
    headers = _REQUIREMENT.sub(rewrite, headers)
    metadata.write_text(headers + blank + description, encoding="utf-8")


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    name: str = _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)
    _use_checkout(Path(metadata_directory) / name)
    return name


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    # The editable wheel carries the prepared (rewritten) metadata. Frontends pass the
    # .dist-info folder itself (PEP 517); setuptools looks for one inside the folder given.
    if metadata_directory is not None:
        prepared = Path(metadata_directory)
        if prepared.name.endswith(".dist-info"):
            prepared = prepared.parent
        return str(_setuptools.build_editable(wheel_directory, config_settings, str(prepared)))
    with tempfile.TemporaryDirectory() as folder:
        prepare_metadata_for_build_editable(folder, config_settings)
        return str(_setuptools.build_editable(wheel_directory, config_settings, folder))
