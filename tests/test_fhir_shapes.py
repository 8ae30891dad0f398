"""The shape validator gives fhir.resources' own verdict, valid or not, on ChargeItems."""

from __future__ import annotations

import copy
from zoneinfo import ZoneInfo

import pydantic
import pytest
from fhir.resources.R4B.chargeitem import ChargeItem

from coding_core.engine import code_encounter
from coding_core.profile import Profile
from connectors.routing import route_fhir, route_hl7
from connectors.settings import Topics
from connectors.synthetic import generate
from mapping.chargeitem_out import to_charge_items
from mapping.collector import FeedCollector
from mapping.fhir_shapes import ShapeValidator
from mapping.reference_data import load_formulary

TZ = ZoneInfo("America/New_York")
# Values each FHIR primitive type accepts or refuses for different reasons.
ODD_VALUES = ["", " ", " lead", "trail ", "a  b", "a\tb", "x" * 70, "bad id", "2026-13-01", "2026-11-02",
              "2026-11-02T10:00:00Z", "http://x", "ü", "-1", 0, -1, 7, 1.5, True, None, [], {}, ["a"], {"a": 1}]


def fhir_verdict(item: dict) -> bool:
    try:
        ChargeItem.model_validate(item)
        return True
    except (pydantic.ValidationError, ValueError, TypeError):
        return False


def shape_verdict(validator: ShapeValidator, item: dict) -> bool:
    try:
        validator.validate(item)
        return True
    except (pydantic.ValidationError, ValueError, TypeError):
        return False


@pytest.fixture(scope="module")
def items() -> list[dict]:
    formulary, profile = load_formulary(), Profile()
    out = []
    for fmt, route in (("fhir", route_fhir), ("hl7", route_hl7)):
        collector = FeedCollector()
        for _, _, value in generate(20, fmt, Topics(), seed=5):
            for record in route(value, TZ).records:
                collector.offer(record)
        for enc, events in collector.by_encounter().values():
            out += to_charge_items(code_encounter(enc, events, formulary, profile), enc)
    return out


def leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))
    else:
        yield path


def set_at(node, path, value):
    node = copy.deepcopy(node)
    target = node
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return node


def test_valid_items_take_the_fast_path(items):
    validator = ShapeValidator(ChargeItem)
    for item in items:
        validator.validate(item)
    assert validator.fast > 10 * validator.full, (validator.full, validator.fast)


def test_every_primitive_value_mutation_gets_the_fhir_resources_verdict(items):
    validator = ShapeValidator(ChargeItem)
    for item in items:
        validator.validate(item)
    fast_before = validator.fast
    sample = items[:: max(1, len(items) // 12)]
    checked = disagreements = 0
    for item in sample:
        for path in leaves(item):
            for value in ODD_VALUES:
                mutated = set_at(item, path, value)
                checked += 1
                if shape_verdict(validator, mutated) != fhir_verdict(mutated):
                    disagreements += 1
                    print("disagreement at", path, repr(value))
    assert checked > 2000
    assert validator.fast - fast_before > 500  # mutations of the same JSON type were judged by the fast path
    assert disagreements == 0


def test_structural_mutations_get_the_fhir_resources_verdict(items):
    validator = ShapeValidator(ChargeItem)
    for item in items:
        validator.validate(item)
    item = items[0]
    mutations = [
        {**item, "unknownElement": "x"},
        {k: v for k, v in item.items() if k != "code"},  # required element missing
        {k: v for k, v in item.items() if k != "status"},
        {**item, "occurrencePeriod": {"start": "2026-11-02"}},  # two choices of occurrence[x]
        {**item, "note": [None]},
        {**item, "note": {"text": "not a list"}},
        {**item, "quantity": [{"value": 1}]},
        {**item, "resourceType": "Patient"},
        {**item, "service": []},
        {**item, "extension": [{"url": "http://x"}]},
    ]
    for mutated in mutations:
        assert shape_verdict(validator, mutated) == fhir_verdict(mutated), mutated.keys()
    assert any(not fhir_verdict(m) for m in mutations)
