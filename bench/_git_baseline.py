"""Load a past version of the broker's store from git at bench time, so a bench can measure the layout it replaced
beside the current one in the same run without a copy of the store in the tree.

The old `_store.py` and `_rollups.py` are read with `git show <commit>:<path>` into a temporary package whose
other imports (`_legacy`, `_json`, `_model`) resolve to the current broker package's modules.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]

# The last commit with the schema-3 store (wide rows, numbers as SQL numbers): the parent of schema 4's commit.
SCHEMA_3_COMMIT = "e0158b2"
# The last commit with the schema-4 store (rollups one row per key, folded by ~45 SQL statements per 50 entities).
SCHEMA_4_COMMIT = "f41ff13"


def load_store(commit: str = SCHEMA_3_COMMIT, package: str = "bench_store_v3") -> ModuleType:
    """The `_store` module of `commit`, importable as `<package>._store` (its rollups as `<package>._rollups`)."""
    if f"{package}._store" in sys.modules:
        return sys.modules[f"{package}._store"]
    root = Path(tempfile.mkdtemp(prefix="bench-git-store-"))
    pkg = root / package
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("_store.py", "_rollups.py"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:twin_service/broker/{name}"],
                              check=True, capture_output=True, text=True).stdout
        text = text.replace("from . import _legacy, _rollups",
                            "from twin_service.broker import _legacy\nfrom . import _rollups")
        for module in ("_json", "_model", "_repeats"):
            text = text.replace(f"from .{module} import", f"from twin_service.broker.{module} import")
        (pkg / name).write_text(text)
    sys.path.insert(0, str(root))
    return importlib.import_module(f"{package}._store")
