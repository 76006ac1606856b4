"""The repository stands alone: no file points into the design notes kept beside it, which a clone does not have.

Facts a reader needs live in docs/ and cite their public source (ETSI GS CIM 009, EN 50160, the ADE9000
datasheet, the Smart Data Models and FIWARE docs, BOE orders); a pointer to the sibling `shared` folder, the design page or the
reference notes would leave the reader of a clone with a dead end.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Written so that this file does not match itself.
_NOTES = r"(?:ade9000|community|datamodels|fiware|power-quality)"
DEAD_POINTERS = re.compile(
    r"\.\./shared\b"
    r"|\bshared/reference\b"
    r"|\bshared/(?:DESIGN|STYLE)\b"
    r"|\bDESIGN\.md\b"
    r"|(?<![\w./-])reference/" + _NOTES + r"\.md\b"
    r"|\bPQ ref\b"
)
SKIPPED_PARTS = {"node_modules", ".venv", ".git"}


def tracked_files() -> list[Path]:
    """Files git tracks (what a clone has); without git, every file outside the skipped folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    return [ROOT / name for name in names if not SKIPPED_PARTS & set(Path(name).parts)]


def dead_pointers(text: str) -> list[tuple[int, str]]:
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if DEAD_POINTERS.search(line)]


def test_the_pattern_catches_each_kind_of_dead_pointer() -> None:
    shared = ".." + "/shared"
    for line in (f"see {shared}/reference/fiware.md", "(DESIGN" + ".md §3.1)", "reference/" + "community.md §1.3",
                 "facts: `shared/" + "refer" + "ence/power-quality.md`", "(PQ" + " ref §1.2)"):
        assert dead_pointers(line), line
    for line in ("docs/power-quality.md §1.2", "ETSI GS CIM 009 clause 5.5.2", "code = ((1 + c)·reference/meter − 1)",
                 "docs/community.md, \"Legal frame (Spain)\""):
        assert not dead_pointers(line), line


def test_no_tracked_file_points_outside_the_repository() -> None:
    found = []
    files = tracked_files()
    assert len(files) > 100  # the walk saw the repository, not an empty folder
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or vanished while the suite runs
        found += [f"{path.relative_to(ROOT)}:{number}: {line}" for number, line in dead_pointers(text)]
    assert not found, "cite the public source or a docs/ page instead:\n" + "\n".join(found)
