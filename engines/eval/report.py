"""What the evaluation and benchmark CLIs share: the command line, the JSON file, the table."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (header, row key, width, format spec): one right-aligned column of a printed table
Column = tuple[str, str, int, str]


def command_line(program: str, argv: Sequence[str] | None) -> str:
    """``program`` followed by the arguments it was run with (``sys.argv`` when None)."""
    return program + " " + " ".join(argv if argv is not None else sys.argv[1:])


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    print(" ".join(f"{header:>{width}}" for header, _, width, _ in columns))
    for row in rows:
        print(" ".join(f"{row[key]:>{width}{spec}}" for _, key, width, spec in columns))
