"""Run every benchmark in bench/ (each prints a table and writes JSON under bench/results/).

`python bench/run_all.py --quick` is the CI smoke mode: every benchmark runs briefly and reports; nothing asserts
a figure. Extra arguments are passed to each script.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in {"run_all.py", "__init__.py"} and not p.name.startswith("_"))
    if not scripts:
        print("no benchmarks found in bench/", file=sys.stderr)
        return 1
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} {' '.join(argv)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *argv], cwd=HERE.parent)
        print(f"=== {script.name}: exit {code} after {time.monotonic() - started:.1f} s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
