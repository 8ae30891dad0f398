"""The synthetic feed: deterministic, 5-30 administrations per encounter, and the FHIR and
HL7 renderings of the same seed code to the same lines (a parity check at volume)."""

from __future__ import annotations

from connectors.settings import Topics
from connectors.synthetic import generate, offline_charges

TOPICS = Topics()


def signature(items):
    return sorted((i["code"]["coding"][0]["code"], i["quantity"]["value"], i["occurrenceDateTime"]) for i in items)


def test_deterministic_and_sized():
    a, b = generate(20, "fhir", TOPICS, seed=9), generate(20, "fhir", TOPICS, seed=9)
    assert a == b and a != generate(20, "fhir", TOPICS, seed=10)
    per_encounter: dict[bytes, int] = {}
    for topic, _, value in a:
        if topic == TOPICS.fhir_administrations:
            enc = value.split(b'"reference": "Encounter/')[1].split(b'"')[0]
            per_encounter[enc] = per_encounter.get(enc, 0) + 1
    assert len(per_encounter) == 20 and all(5 <= n <= 30 for n in per_encounter.values())


def test_fhir_and_hl7_renderings_code_the_same():
    fhir = offline_charges(generate(25, "fhir", TOPICS, seed=4), TOPICS)
    hl7 = offline_charges(generate(25, "hl7", TOPICS, seed=4), TOPICS)
    assert len(fhir) == len(hl7) == 25
    for enc, items in fhir.items():
        assert items and signature(items) == signature(hl7[enc.replace("fhir", "hl7", 1)]), enc
