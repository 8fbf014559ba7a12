"""Where the tests find the dev extra's command-line tools (hadolint, check-jsonschema, zizmor)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def dev_tool(name: str) -> str | None:
    """The tool installed beside the Python running the tests, else on ``PATH`` (None: neither).

    ``make test`` runs the project virtualenv's Python without activating the virtualenv, so
    the dev extra's scripts (in the same ``bin`` directory) are not on ``PATH``: looking only
    there skipped every test that uses them on a machine without a system-wide copy."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)
