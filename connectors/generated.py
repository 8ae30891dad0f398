"""Files generated from the code (docs/configuration.md, the Helm values schema): rewritten by
their module's ``main``, or, with ``--check``, compared -- the tests fail when one is stale."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def regenerate(path: Path, wanted: Callable[[str | None], str], check: bool, command: str) -> int:
    """Write ``wanted(current text)`` to ``path`` when it differs (0); with ``check``, only say
    whether it does (1 when stale)."""
    current = path.read_text(encoding="utf-8") if path.exists() else None
    text = wanted(current)
    if text == current:
        return 0
    if check:
        print(f"{path}: stale; run {command}", file=sys.stderr)
        return 1
    path.write_text(text, encoding="utf-8")
    print(f"{path}: rewritten")
    return 0
