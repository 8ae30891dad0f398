"""Bounded mutation fuzzing of both mappers in CI (longer runs: python -m tests.fuzzing)."""

from __future__ import annotations

from tests.fuzzing import run

SECONDS_PER_MAPPER = 5


def test_mappers_raise_nothing_but_mapping_errors():
    report = run(SECONDS_PER_MAPPER, seed=7)
    for name, r in report.items():
        print(f"fuzz {name}: {r['inputs']} inputs, {r['rejected']} rejected, {r['crashes']} crashes")
        assert r["inputs"] > 1000, name
        assert r["crashes"] == 0, (name, r["crash_types"], r["examples"])
