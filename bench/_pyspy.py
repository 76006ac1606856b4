"""py-spy around a benchmark point: sample named processes while it runs, then say where their time went.

`Profiler(pids, out_dir, tag).start(seconds)` launches one `py-spy record --format raw --threads --nonblocking`
per process (non-blocking: the process is not paused while sampled, so the profile perturbs the run little);
`stop()` waits for them and returns, per process, the samples per thread and the top frames by self time and by
inclusive time. Idle samples (threads waiting on a lock, a socket or a condition) are left out by py-spy
unless `--idle` is given, so the shares are of the time the process was running Python or C code.

Used by `e2e_ingest.py --py-spy DIR`; needs `py-spy` (`pip install py-spy`) and ptrace rights (root, or
`kernel.yama.ptrace_scope=0`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 100
_THREAD = re.compile(r'^thread \((0x[0-9a-fA-F]+)\)$')


def available() -> str | None:
    """The py-spy executable, or None."""
    venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"
    return str(venv) if venv.exists() else shutil.which("py-spy")


class Profiler:
    """One py-spy per process for the duration of a benchmark point."""

    def __init__(self, pids: dict[str, int], out_dir: Path, tag: str) -> None:
        self.pids = pids
        self.out_dir = out_dir
        self.tag = tag
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, seconds: float) -> None:
        exe = available()
        if exe is None:
            raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            out = self.out_dir / f"{self.tag}-{name}.txt"
            self._procs[name] = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--duration", str(max(1, int(seconds))),
                 "--format", "raw", "--threads", "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        for name, proc in self._procs.items():
            try:
                _, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            path = self.out_dir / f"{self.tag}-{name}.txt"
            report[name] = summarize(path) if path.exists() else {"error": err.decode(errors="replace")[-300:]}
        return report


def _frame_name(frame: str) -> str:
    """`function (path/to/file.py:123)` -> `function (file.py:123)`."""
    match = re.match(r"^(.*) \((.*?):(\d+)\)$", frame)
    if not match:
        return frame
    func, path, line = match.groups()
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{func} ({short}:{line})"


def _func_only(frame: str) -> str:
    """Function and file without the line: the inclusive view adds up all lines of a function."""
    return re.sub(r":\d+\)$", ")", _frame_name(frame))


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Samples per thread, top self frames and top inclusive functions of one raw py-spy output."""
    threads: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        thread = "?"
        if frames and _THREAD.match(frames[0]):
            thread = frames[0]
            frames = frames[1:]
        # a thread is best named by its run() target: the frame below threading's bootstrap
        named = next((_func_only(f) for f in frames if "threading.py" not in f and "<module>" not in f), thread)
        threads[named] += count
        total += count
        if frames:
            leaf[_frame_name(frames[-1])] += count
        for func in {_func_only(f) for f in frames}:
            inclusive[func] += count
    share = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "rate_hz": RATE_HZ,
        "threads_pct": {k: share(v) for k, v in threads.most_common(8)},
        "self_pct": {k: share(v) for k, v in leaf.most_common(top)},
        "inclusive_pct": {k: share(v) for k, v in inclusive.most_common(top * 3)},
    }


def render(report: dict[str, Any], limit: int = 12) -> str:
    """A short text view of `Profiler.stop()`'s report."""
    lines = []
    for name, data in report.items():
        if "error" in data:
            lines.append(f"  {name}: py-spy failed: {data['error']}")
            continue
        lines.append(f"  {name}: {data['samples']} samples at {data['rate_hz']} Hz (non-idle)")
        lines.append("    threads: " + ", ".join(f"{k} {v}%" for k, v in data["threads_pct"].items()))
        lines.append("    self:    " + "; ".join(f"{k} {v}%" for k, v in list(data["self_pct"].items())[:limit]))
    return "\n".join(lines)
