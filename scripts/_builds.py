"""Two (or more) installed builds of bcers in one process, for the comparison scripts beside
this file.

Each ``bcers`` package directory is copied under a name of its own (``bcers_NAME``: the
package imports itself relatively, and each copy loads its own extension module and thread
pool) into a fresh temporary directory, which is put first on ``sys.path``, and imported.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def stage(builds: dict[str, Path], prefix: str) -> tuple[Path, dict[str, Any]]:
    """Imports each build of ``builds`` (name -> package directory) as ``bcers_NAME``: the
    staging directory (the caller removes it) and the modules by name."""
    staging = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        for name, path in builds.items():
            shutil.copytree(path, staging / f"bcers_{name}")
        sys.path.insert(0, str(staging))
        modules = {name: importlib.import_module(f"bcers_{name}") for name in builds}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, modules
