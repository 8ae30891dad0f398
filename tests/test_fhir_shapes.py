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


# --- the FHIR mapper reads resources through the shape validator: same events, same errors --


def fhir_corpus() -> list[dict]:
    from pathlib import Path

    from mapping.fhir_in import iter_json_document, iter_ndjson
    from tests.test_fhir_in import dosage, r4, r5

    root = Path(__file__).resolve().parent.parent / "samples"
    resources = []
    for path in sorted(root.glob("*.json")):
        resources += [r for _, r in iter_json_document(path.read_text(), path.name)]
    for path in sorted(root.glob("*.ndjson")):
        resources += [r for _, r in iter_ndjson(path.read_text(), path.name)]
    for _, _, value in generate(15, "fhir", Topics(), seed=9):
        resources += [r for _, r in iter_json_document(value.decode(), "message")]
    resources += [r4(), r5(), r4(effectiveDateTime=START_TIME), r4(dosage=dosage(rateQuantity={"value": 2, "unit": "mL/min"})),
                  r4(dosage=dosage(method={"coding": [{"code": "IVP"}], "text": "push"})), r5(status="stopped"),
                  r4(extension=[{"url": "https://infusion-charges.dev/fhir/StructureDefinition/wasted-amount",
                                 "valueQuantity": {"value": 12.5, "unit": "mg"}}])]
    return [r for r in resources if isinstance(r, dict)]


START_TIME = "2026-03-02T09:00:00-05:00"


def map_outcome(resource: dict, monkeypatch, validators: dict) -> object:
    import mapping.fhir_in as fhir_in
    from mapping.errors import MappingError

    monkeypatch.setattr(fhir_in, "_VALIDATORS", validators)
    try:
        mapped = fhir_in.map_resource(copy.deepcopy(resource))
    except MappingError as e:
        return ("error", str(e))
    return None if mapped is None else mapped.to_json()


def full_only() -> dict:
    """Validators that never learn a shape: every resource is a fhir.resources model."""
    from fhir.resources.encounter import Encounter as E5
    from fhir.resources.medicationadministration import MedicationAdministration as M5
    from fhir.resources.R4B.encounter import Encounter as E4
    from fhir.resources.R4B.medicationadministration import MedicationAdministration as M4

    return {cls: ShapeValidator(cls, max_shapes=0) for cls in (M4, M5, E4, E5)}


def test_mapping_through_views_equals_mapping_through_models(monkeypatch):
    corpus = fhir_corpus()
    assert len(corpus) > 300
    learned: dict = {}
    for resource in corpus:  # learn the shapes
        map_outcome(resource, monkeypatch, learned)
    fast_before = sum(v.fast for v in learned.values())
    for resource in corpus:
        assert map_outcome(resource, monkeypatch, learned) == map_outcome(resource, monkeypatch, full_only()), resource.get("id")
    assert sum(v.fast for v in learned.values()) - fast_before > len(corpus) // 2


def test_mutated_resources_map_or_fail_the_same_through_views(monkeypatch):
    corpus = fhir_corpus()
    learned: dict = {}
    for resource in corpus:
        map_outcome(resource, monkeypatch, learned)
    sample = corpus[:: max(1, len(corpus) // 10)]
    checked = 0
    for resource in sample:
        for path in leaves(resource):
            for value in ODD_VALUES:
                mutated = set_at(resource, path, value)
                checked += 1
                fast = map_outcome(mutated, monkeypatch, learned)
                assert fast == map_outcome(mutated, monkeypatch, full_only()), (path, value)
    assert checked > 1500


def test_lists_of_any_length_are_one_shape_and_each_item_is_still_checked(items):
    """A list of complex elements is one shape whatever its length (fhir.resources checks each
    item on its own), so the 2nd..12th note cost no full validation; every item's values and
    structure are still judged as fhir.resources judges them."""
    base = next(i for i in items if len(i["note"]) == 1 and len(i["service"]) == 1)
    validator = ShapeValidator(ChargeItem)
    for n in range(1, 13):
        validator.validate({**base, "note": [{"text": f"note {k}"} for k in range(n)],
                            "service": base["service"] * n})
    assert validator.full == 1 and validator.fast == 11
    good = {"text": "fine"}
    mutations = [
        {**base, "note": [good, None]},
        {**base, "note": [good, {"text": ""}]},
        {**base, "note": [good, {"text": "x", "unknownElement": 1}]},
        {**base, "note": [good, {"text": 5}]},
        {**base, "note": [good, "text"]},
        {**base, "note": [good, []]},
        {**base, "note": [good, {}]},
        {**base, "service": [*base["service"], {"reference": "MedicationAdministration/x", "display": ""}]},
        {**base, "extension": [*base["extension"], {"url": "http://x", "valueString": "a", "valueInteger": 1}]},
        {**base, "definitionUri": ["http://a", "http://b"], "_definitionUri": [None, {"id": "x"}]},
        {**base, "definitionUri": ["http://a", "http://b"], "_definitionUri": [{"id": "x"}]},
        {**base, "definitionUri": ["http://a", "http://b"], "_definitionUri": [None, None, {"id": "x"}]},
        {**base, "definitionUri": ["http://a", "not a uri"]},
        {**base, "definitionUri": ["http://a", None]},
    ]
    for mutated in mutations:
        assert shape_verdict(validator, mutated) == fhir_verdict(mutated), mutated
        assert shape_verdict(validator, mutated) == fhir_verdict(mutated), mutated  # again, once learned
    assert sum(not fhir_verdict(m) for m in mutations) >= 8


def test_unknown_elements_are_refused_and_do_not_grow_the_validator(items):
    """Keys a feed invents are not model elements: each such resource gets fhir.resources'
    verdict (invalid), and the validator remembers nothing about them."""
    validator = ShapeValidator(ChargeItem)
    validator.validate(items[0])
    known = validator._elements
    for k in range(300):
        mutated = {**items[0], f"invented{k}": {"deeper": [{"deepest": k}]}}
        assert not shape_verdict(validator, mutated) and not fhir_verdict(mutated)
    assert validator._elements == known
    capped = ShapeValidator(ChargeItem, max_elements=5)
    for item in items[:20]:  # past the cap every resource is validated in full, still correctly
        capped.validate(item)
    assert capped._elements <= 5 and capped.full == 20


def test_an_element_one_view_lacks_is_still_read_from_the_view_that_has_it():
    """A view answers None for an element it lacks (and the class remembers the name, so the next
    miss is cheap); a view holding the element reads its own value, and ``<name>_fhir`` keeps
    reading the keyword-named element."""
    from fhir.resources.R4B.encounter import Encounter

    validator = ShapeValidator(Encounter)
    bare = {"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}
    noted = {**bare, "id": "e-2", "serviceType": {"text": "infusion clinic"}}
    for resource in (bare, noted):
        validator.parse(copy.deepcopy(resource))  # learned: the next parse of each shape is a view
    lacking, holding = validator.parse(copy.deepcopy(bare)), validator.parse(copy.deepcopy(noted))
    assert validator.fast == 2
    assert lacking.serviceType is None and lacking.serviceType is None  # the second read finds the class's None
    assert holding.serviceType.text == "infusion clinic"
    assert lacking.class_fhir.code == "AMB" and lacking.priority_fhir is None
    later = validator.parse(copy.deepcopy(noted))
    assert later.serviceType.text == "infusion clinic" and later.id == "e-2"
    assert later.class_fhir.code == "AMB" and later.priority_fhir is None  # a keyword-named element read again
