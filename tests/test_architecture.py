"""The coding core stays pure: no I/O, no Kafka, no FHIR classes (DEVELOPERS.md layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "coding_core"
FORBIDDEN_MODULES = {"fhir", "fhir_core", "kafka", "hl7apy", "socket", "os", "pathlib", "io", "shutil",
                     "subprocess", "requests", "urllib", "http", "sqlite3", "logging", "yaml", "json",
                     "importlib", "connectors", "mapping"}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}


def _modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_coding_core_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {node.func.id}()"
            continue
        else:
            continue
        bad = roots & FORBIDDEN_MODULES
        assert not bad, f"{path.name}:{node.lineno} imports {bad}"


def test_the_check_sees_every_core_module() -> None:
    names = {p.name for p in _modules()}
    assert {"engine.py", "rules.py", "classify.py", "timing.py", "drug_lines.py", "formulary.py", "model.py"} <= names
