"""Sphinx configuration: the Markdown pages of docs/, read with MyST.

``./scripts/test`` builds them with warnings as errors (``-W --keep-going``), so
a broken link, a page missing from the table of contents or a settings
reference that cannot be generated fails the test command.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "notifycore"
author = "the notifycore authors"
copyright = "notifycore authors"

extensions = ["myst_parser", "notifycore_docs"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

# Links to a heading of another page (`hooks.md#notifycore_metric`) are checked too.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_title = "notifycore"
