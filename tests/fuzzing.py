"""Time-bounded mutation fuzzing of both mappers.

Seeds: the bundled samples, the sender corpus and synthetic messages.  Mutations: for FHIR,
structural edits of the JSON (drop keys, swap value types, deep garbage, wrong resource
types); for HL7, byte-level edits (delete, duplicate, insert separators and escapes, truncate).
A crash is any exception other than MappingError.

    python -m tests.fuzzing --seconds 600      # a longer run than CI's
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from connectors.settings import Topics
from connectors.synthetic import generate
from mapping.errors import MappingError
from mapping.fhir_in import map_resource
from mapping.hl7_er7 import split_messages
from mapping.hl7_in import map_message

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("America/New_York")
GARBAGE: list[Any] = [None, 0, -1, 1e308, float("nan"), "", "x" * 300, [], {}, [[]], {"a": {"b": {}}}, True,
                      "2026-13-45T99:99:99Z", "Encounter/", "#", "\u0000", "Patient/../../etc", 10**30]


def fhir_seeds() -> list[dict]:
    seeds: list[dict] = []
    for path in sorted((ROOT / "samples").glob("*.json*")):
        text = path.read_text()
        docs = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".ndjson" else [json.loads(text)]
        for doc in docs:
            seeds += [e["resource"] for e in doc["entry"]] if doc.get("resourceType") == "Bundle" else [doc]
    seeds += [json.loads(v) for _, _, v in generate(5, "fhir", Topics(), seed=5)]
    return seeds


def hl7_seeds() -> list[str]:
    paths = [*sorted((ROOT / "samples").glob("*.hl7")), *sorted((ROOT / "tests" / "data" / "hl7").glob("*.hl7"))]
    seeds = [m for p in paths for _, m in split_messages(p.read_text(encoding="latin-1"))]
    return seeds + [v.decode() for _, _, v in generate(5, "hl7", Topics(), seed=5)]


def _garbage(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(GARBAGE))  # a fresh object: never the same list inserted twice


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def mutate_fhir(rng: random.Random, seed: dict) -> Any:
    doc = copy.deepcopy(seed)
    for _ in range(rng.randint(1, 4)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return _garbage(rng)
        path = rng.choice(paths)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        action = rng.random()
        if action < 0.3 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.5 and isinstance(parent, dict):
            parent[rng.choice(["resourceType", "status", "extra", "contained", "meta"])] = _garbage(rng)
        else:
            parent[path[-1]] = _garbage(rng)
    return doc


# Numbers and time stamps at the edges: zero and huge counts, overflowing exponents, more
# digits than int() converts, year 9999, negatives, NaN and infinities.
NUMERIC_EDGES = ["H0", "M0", "H" + "9" * 5000, "9E999999", "1E-999999", "9" * 5000, "99991231235959", "00010101",
                 "-1", "NaN", "sNaN", "Infinity", "-Infinity", "mL/h", "ml/min", "X"]
HL7_INSERTS = ["", "|", "^", "~", "&", "\\", "\r", "\n", "\\X0\\", "\\F", "\"\"", "MSH|^~\\&|", "99999999999999",
               "-9999", "\x00", "é", "\ufeff", "\nJANE DOE", "BTS|1", *NUMERIC_EDGES]


def mutate_hl7(rng: random.Random, seed: str) -> str:
    text = seed
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.3:  # replace one whole field, so the edges reach RXA-6/7/12/23 and the times
            fields = text.split("|")
            fields[rng.randrange(len(fields))] = rng.choice(NUMERIC_EDGES)
            text = "|".join(fields)
            continue
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randint(0, 30))
        insert = rng.choice([*HL7_INSERTS, text[i:j]])
        text = text[:i] + insert + text[j if rng.random() < 0.7 else i:]
    return text


def run(seconds: float, seed: int = 1) -> dict[str, dict[str, Any]]:
    """Fuzz each mapper for ``seconds``; per mapper: inputs tried, mapping errors, crashes by type."""
    rng = random.Random(seed)
    targets: dict[str, tuple[list, Callable[[random.Random, Any], Any], Callable[[Any], Any]]] = {
        "fhir": (fhir_seeds(), mutate_fhir, map_resource),
        "hl7": (hl7_seeds(), mutate_hl7, lambda m: map_message(m, TZ)),
    }
    report: dict[str, dict[str, Any]] = {}
    for name, (seeds, mutate, target) in targets.items():
        tried = rejected = 0
        crashes: Counter[str] = Counter()
        examples: dict[str, str] = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sample = mutate(rng, rng.choice(seeds))
            tried += 1
            try:
                target(sample)
            except MappingError:
                rejected += 1
            except Exception as e:  # a crash: anything but the mapping error type
                crashes[type(e).__name__] += 1
                examples.setdefault(type(e).__name__, repr(sample)[:500])
        report[name] = {"inputs": tried, "rejected": rejected, "crashes": sum(crashes.values()),
                        "crash_types": dict(crashes), "examples": examples}
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    result = run(args.seconds, args.seed)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "examples"} for k, v in result.items()}))
    for name, r in result.items():
        for kind, example in r["examples"].items():
            print(f"{name} {kind}: {example}")
