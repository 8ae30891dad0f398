"""Per-encounter pipeline state: close, late data, duplicates, withdrawals, idle close, changelog."""

from __future__ import annotations

import json
import zlib
from zoneinfo import ZoneInfo

from coding_core.engine import code_encounter
from coding_core.profile import Profile
from connectors.state import EncounterState, Lifecycle
from mapping.chargeitem_out import to_charge_items
from mapping.collector import FeedCollector, Mapped
from mapping.fhir_in import map_resource
from mapping.hl7_in import map_message
from mapping.reference_data import load_formulary
from tests.hl7_builders import message, msh, orc, pid, pv1, ras, rxa, rxr, segment
from tests.test_fhir_in import r4

FORMULARY, PROFILE = load_formulary(), Profile()
TZ = ZoneInfo("America/New_York")
MIN = 60_000


def fhir(resource: dict) -> Mapped:
    mapped = map_resource(resource)
    assert mapped is not None
    return mapped


def encounter(status: str, cls: str = "AMB", version: str = "1") -> Mapped:
    return fhir({"resourceType": "Encounter", "id": "e-1", "status": status, "class": {"code": cls}, "meta": {"versionId": version}})


def chemo(id: str = "ma-1", end: str = "2026-03-02T10:40:00-05:00", version: str | None = None) -> Mapped:
    extra = {"meta": {"versionId": version}} if version else {}
    return fhir(r4(id=id, effectivePeriod={"start": "2026-03-02T09:00:00-05:00", "end": end}, **extra))


def codes(bundle: dict) -> dict[str, tuple[str, int]]:
    return {e["resource"]["id"]: (e["resource"]["code"]["coding"][0]["code"], e["resource"]["status"]) for e in bundle["entry"]}


def test_codes_once_closed_and_equals_the_offline_result():
    s = EncounterState(encounter_id="e-1")
    s.apply(encounter("in-progress"), 1 * MIN)
    s.apply(chemo(), 2 * MIN)
    assert s.lifecycle is Lifecycle.OPEN and not s.due()
    s.apply(encounter("finished", version="2"), 3 * MIN)
    assert s.lifecycle is Lifecycle.CLOSED and s.due()
    bundle = s.code(FORMULARY, PROFILE)
    assert bundle is not None and s.revision == 1 and bundle["meta"]["versionId"] == "1"

    offline = FeedCollector()
    offline.offer(encounter("finished"))
    offline.offer(chemo())
    (info, events), = offline.by_encounter().values()
    expected = to_charge_items(code_encounter(info, events, FORMULARY, PROFILE), info, PROFILE, events)
    assert [e["resource"] for e in bundle["entry"]] == expected


def test_duplicate_delivery_changes_nothing():
    s = EncounterState(encounter_id="e-1")
    for m in (chemo(version="1"), encounter("finished")):
        s.apply(m, MIN)
    first = s.code(FORMULARY, PROFILE)
    assert first is not None
    assert s.apply(chemo(version="1"), 2 * MIN) == "duplicate"
    assert s.apply(encounter("finished"), 2 * MIN) == "duplicate"
    assert not s.due() and s.code(FORMULARY, PROFILE) is None and s.revision == 1


def test_late_administration_publishes_a_corrected_revision():
    s = EncounterState(encounter_id="e-1")
    for m in (chemo(version="1"), encounter("finished")):
        s.apply(m, MIN)
    r1 = codes(s.code(FORMULARY, PROFILE))
    # a corrected stop time arrives after the close: 96415 appears, 96413 keeps its id
    s.apply(chemo(end="2026-03-02T11:45:00-05:00", version="2"), 5 * MIN)
    assert s.due()
    r2 = codes(s.code(FORMULARY, PROFILE))
    assert s.revision == 2
    assert {c for c, _ in r2.values()} >= {"96413", "96415"}
    assert {i for i, (c, _) in r1.items() if c == "96413"} == {i for i, (c, _) in r2.items() if c == "96413"}


def test_vanished_lines_are_withdrawn_once():
    s = EncounterState(encounter_id="V1")
    add = ras("C1", "V1", [("F1", [rxa("20261102093000-0500", "20261102103000-0500"), rxr()]),
                           ("F2", [rxa("20261102091000-0500", "", code="J2405", text="ondansetron", amount="8"), rxr(method="IVP")])])
    close = message(msh("C2", message="ADT^A03"), segment("EVN", {1: "A03"}), pid(), pv1("V1", f45="20261102120000-0500"))
    for m in (*map_message(add, TZ), *map_message(close, TZ)):
        s.apply(m, MIN)
    r1 = codes(s.code(FORMULARY, PROFILE))
    assert {c for c, _ in r1.values()} >= {"96413", "96375", "J2405"}
    delete = ras("C3", "V1", [("F2", [rxa("20261102091000-0500", "", code="J2405", text="ondansetron", amount="8", action="D"), rxr(method="IVP")])])
    for m in map_message(delete, TZ):
        s.apply(m, 5 * MIN)
    r2 = codes(s.code(FORMULARY, PROFILE))
    withdrawn = {c for c, status in r2.values() if status == "entered-in-error"}
    assert withdrawn == {"96375", "J2405"}
    # a later revision does not withdraw them again; a push of another drug is a new line with
    # an id of its own: the withdrawn ondansetron line's id never comes to mean dexamethasone
    late = ras("C4", "V1", [("F3", [rxa("20261102110000-0500", "", code="J1100", text="dexamethasone", amount="12"), rxr(method="IVP")])])
    for m in map_message(late, TZ):
        s.apply(m, 7 * MIN)
    r3 = codes(s.code(FORMULARY, PROFILE))
    assert all(status == "billable" for _, status in r3.values())
    new_push = {i for i, (c, _) in r3.items() if c == "96375"}
    assert new_push and not new_push & {i for i, (c, _) in r1.items() if c == "96375"}


def test_a_redelivered_hl7_message_is_a_duplicate_even_with_a_new_msh7():
    """An engine that re-stamps MSH-7 on resend must not undo a later delete (same MSH-10)."""
    given = (rxa("20261102093000-0500", "20261102103000-0500"), rxr())
    add = message(msh("C1", time="20261102093500"), pid(), pv1("V1"), orc(filler="F1"), *given)
    close = message(msh("C2", message="ADT^A03", time="20261102120000"), segment("EVN", {1: "A03"}), pid(),
                    pv1("V1", f45="20261102120000-0500"))
    delete = message(msh("C3", time="20261102121000"), pid(), pv1("V1"), orc(filler="F1"),
                     rxa("20261102093000-0500", "20261102103000-0500", action="D"), rxr())
    resent = add.replace("20261102093500", "20261102130000", 1)
    assert resent != add

    s = EncounterState(encounter_id="V1")
    for text in (add, close):
        for m in map_message(text, TZ):
            s.apply(m, MIN)
    assert all(status == "billable" for _, status in codes(s.code(FORMULARY, PROFILE)).values())
    for m in map_message(delete, TZ):
        s.apply(m, 2 * MIN)
    assert all(status == "entered-in-error" for _, status in codes(s.code(FORMULARY, PROFILE)).values())
    outcomes = {m.kind: s.apply(m, 9 * MIN) for m in map_message(resent, TZ)}
    assert outcomes["administration"] == "duplicate"
    assert s.code(FORMULARY, PROFILE) is None  # nothing changed, nothing published

    offline = FeedCollector()  # `infusion-charges code` applies the same rule
    for text in (add, close, delete, resent):
        for m in map_message(text, TZ):
            offline.offer(m)
    (admin,) = offline.administrations.values()
    assert admin.administration is not None and admin.administration.status.value == "entered-in-error"
    assert offline.duplicates >= 1


def test_cancelled_encounter_withdraws_everything():
    s = EncounterState(encounter_id="e-1")
    for m in (chemo(), encounter("finished")):
        s.apply(m, MIN)
    s.code(FORMULARY, PROFILE)
    s.apply(encounter("cancelled", version="3"), 2 * MIN)
    assert s.lifecycle is Lifecycle.DISCARDED and s.due()
    r2 = codes(s.code(FORMULARY, PROFILE))
    assert r2 and all(status == "entered-in-error" for _, status in r2.values())


def test_idle_close_for_outpatients_only_and_expiry():
    s = EncounterState(encounter_id="e-1")
    s.apply(encounter("in-progress"), 0)
    s.apply(chemo(), 10 * MIN)
    assert not s.idle_close_due(now_ms=60 * MIN, idle_close_ms=60 * MIN)
    assert s.lifecycle is Lifecycle.OPEN  # 50 silent minutes
    assert s.idle_close_due(now_ms=70 * MIN, idle_close_ms=60 * MIN) and s.idle_close(s.last_record_ms)
    assert s.lifecycle is Lifecycle.CLOSED and s.due()
    assert not s.expired(now_ms=70 * MIN, retention_ms=24 * 60 * MIN)
    assert s.expired(now_ms=70 * MIN + 24 * 60 * MIN, retention_ms=24 * 60 * MIN)

    inpatient = EncounterState(encounter_id="e-1")
    inpatient.apply(encounter("in-progress", cls="IMP"), 0)
    assert not inpatient.idle_close_due(now_ms=10_000 * MIN, idle_close_ms=60 * MIN)
    assert inpatient.lifecycle is Lifecycle.OPEN and not inpatient.expired(10_000 * MIN, MIN)


def test_an_idle_close_event_loses_to_a_record_that_arrived_after_the_decision():
    """The worker decides an idle close on a tick and sends it through the events topic; when
    it is applied, a record that got into the history first keeps the encounter open."""
    s = EncounterState(encounter_id="e-1")
    s.apply(chemo(), 10 * MIN)
    assert not s.idle_close_due(now_ms=60 * MIN, idle_close_ms=60 * MIN)
    assert s.idle_close_due(now_ms=80 * MIN, idle_close_ms=60 * MIN)
    basis = s.last_record_ms
    s.apply(chemo(id="ma-2"), 81 * MIN)  # in the events topic before the close event
    assert not s.idle_close(basis) and s.lifecycle is Lifecycle.OPEN and not s.due()
    assert s.idle_close(s.last_record_ms) and s.lifecycle is Lifecycle.CLOSED and s.due()
    inpatient = EncounterState(encounter_id="e-1")
    inpatient.apply(encounter("in-progress", cls="IMP"), 0)
    assert not inpatient.idle_close_due(10_000 * MIN, MIN) and not inpatient.idle_close(0)


def test_a_record_arriving_after_retention_is_refused_not_billed_from_scratch():
    s = EncounterState(encounter_id="e-1")
    for m in (chemo(), encounter("finished")):
        s.apply(m, MIN)
    assert s.code(FORMULARY, PROFILE) is not None and s.revision == 1
    retention = 30 * 24 * 60 * MIN
    assert s.expired(MIN + retention + 1, retention)
    s.retire()
    assert s.retired and not s.expired(MIN + 2 * retention, retention) and s.revision == 1
    restored = EncounterState.from_bytes(s.to_bytes())  # the marker survives a restart
    for state in (s, restored):
        assert state.apply(chemo(id="ma-late"), MIN + retention + 2) == "retired"
        assert not state.idle_close_due(now_ms=MIN + 2 * retention, idle_close_ms=60 * MIN)
        assert not state.idle_close(state.last_record_ms) and not state.due() and state.records == {} and state.revision == 1


def test_changelog_round_trip_continues_identically():
    a = EncounterState(encounter_id="e-1")
    for m in (chemo(), encounter("finished")):
        a.apply(m, MIN)
    a.code(FORMULARY, PROFILE)
    b = EncounterState.from_bytes(a.to_bytes())
    assert b == a and b.to_bytes() == a.to_bytes()
    data = a.to_bytes()  # JSON on the changelog, zlib-compressed above COMPRESS_FROM_BYTES
    assert json.loads(zlib.decompress(data) if data[:1] != b"{" else data) == json.loads(a.model_dump_json())
    late = chemo(id="ma-2", end="2026-03-02T11:45:00-05:00")
    a.apply(late, 5 * MIN)
    b.apply(late, 5 * MIN)
    assert a.code(FORMULARY, PROFILE) == b.code(FORMULARY, PROFILE)  # a takeover publishes the same revision


def test_mapped_records_survive_json_with_their_merge_semantics():
    reopen = message(msh("C9", message="ADT^A13"), segment("EVN", {1: "A13"}), pid(), pv1("V1"))
    (m,) = map_message(reopen, TZ)
    back = Mapped.from_json(json.loads(json.dumps(m.to_json())))
    assert back == m and back.encounter.model_fields_set == m.encounter.model_fields_set  # period_end: None is explicit
    admin = chemo(version="4")
    assert Mapped.from_json(json.loads(json.dumps(admin.to_json()))) == admin
    assert admin.key() == "e-1" and back.key() == "V1"


def _feed_records() -> list[Mapped]:
    """Mapped records of both synthetic feeds and the bundled samples: every kind and mode."""
    from connectors.routing import route_fhir, route_hl7
    from connectors.settings import Topics
    from connectors.synthetic import generate
    from tests.pipeline_helpers import sample_messages, settings_for

    topics = Topics()
    out = []
    for topic, _, value in [*generate(30, "fhir", topics, seed=3), *generate(30, "hl7", topics, seed=3),
                            *sample_messages(settings_for("unused:9092"))]:
        router = route_hl7 if topic.startswith("hl7") or b"MSH|" in value[:20] else route_fhir
        out += router(value, TZ).records
    assert {m.kind for m in out} == {"administration", "encounter"} and len({m.mode for m in out}) >= 3
    return out


def test_a_record_read_back_from_its_json_writes_the_same_json():
    """The events topic carries ``to_json``; the state store keeps a new record's JSON as it
    came, which is only right if reading and writing it again changes nothing."""
    for m in _feed_records():
        doc = json.loads(json.dumps(m.to_json()))
        assert Mapped.from_json(doc).to_json() == doc


def test_applying_with_the_json_in_hand_builds_the_same_state():
    records = _feed_records()
    records += records[::7]  # repeats: duplicates, and fills/merges of held encounters
    by_json: dict[str, EncounterState] = {}
    by_model: dict[str, EncounterState] = {}
    outcomes = []
    for i, m in enumerate(records):
        doc = json.loads(json.dumps(m.to_json()))
        a = by_json.setdefault(m.key(), EncounterState(encounter_id=m.key()))
        b = by_model.setdefault(m.key(), EncounterState(encounter_id=m.key()))
        outcomes.append((a.apply(Mapped.from_json(doc), i, as_json=doc), b.apply(Mapped.from_json(doc), i)))
    assert all(x == y for x, y in outcomes) and {x for x, _ in outcomes} >= {"added", "duplicate"}
    assert by_json.keys() == by_model.keys()
    for key, a in by_json.items():
        b = by_model[key]
        assert a.to_bytes() == b.to_bytes()
        a.idle_close(a.last_record_ms)
        b.idle_close(b.last_record_ms)
        assert a.code(FORMULARY, PROFILE) == b.code(FORMULARY, PROFILE)


def test_a_large_state_is_compressed_on_the_changelog_and_read_back():
    """A long stay's records and charges would outgrow Kafka's 1 MB message limit as JSON."""
    from connectors.state import COMPRESS_FROM_BYTES

    s = EncounterState(encounter_id="e-1")
    s.apply(encounter("in-progress", cls="IMP"), 0)
    n = 0
    while len(s.model_dump_json()) <= 4 * COMPRESS_FROM_BYTES:
        s.apply(chemo(id=f"ma-{n}"), n)
        n += 1
    data = s.to_bytes()
    assert len(data) < COMPRESS_FROM_BYTES and data[:1] != b"{"
    restored = EncounterState.from_bytes(data)
    assert restored == s and len(restored.administrations()) == n
    small = EncounterState(encounter_id="e-2")
    assert small.to_bytes()[:1] == b"{" and EncounterState.from_bytes(small.to_bytes()) == small  # plain JSON below it


def test_the_events_and_charges_encoders_write_what_the_standard_library_reads_back():
    """The worker writes events and bundles with orjson, which refuses integers beyond 64 bits:
    a 30-digit FHIR versionId (a valid id) must still reach the events topic, unchanged."""
    from connectors.codec import event_json as _event_json, loads as _loads, published_json as _json

    huge = chemo(version="1" * 30)
    assert huge.version[0] == int("1" * 30)
    for m in [*_feed_records()[:50], huge]:
        doc = {"records": [m.to_json()]}
        assert _loads(_event_json(doc)) == json.loads(json.dumps(doc)) == doc
        assert Mapped.from_json(_loads(_event_json(doc))["records"][0]) == m
    state = EncounterState(encounter_id="e-1")
    for m in (chemo(), encounter("finished")):
        state.apply(m, MIN)
    bundle = state.code(FORMULARY, PROFILE)
    assert _json(bundle) == json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert _json({"b": 1, "a": int("9" * 25)}) == b'{"a":' + b"9" * 25 + b',"b":1}'


def test_each_revision_records_the_formulary_and_profile_it_was_coded_with():
    s = EncounterState(encounter_id="e-1")
    for doc in (r4(), {"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}):
        s.apply(map_resource(doc), MIN)
    bundle = s.code(FORMULARY, Profile(name="acme-medicare"))
    assert {(t["system"], t["code"]) for t in bundle["meta"]["tag"]} == {
        ("urn:infusion-charges:coded-with/formulary", FORMULARY.version), ("urn:infusion-charges:coded-with/profile", "acme-medicare")}


def test_the_same_charges_are_told_by_the_live_lines_as_billed():
    """A coding publishes only when its lines differ from the live published ones, read as billed:
    without enteredDate and the formulary version, withdrawn lines not counted (the comparison
    looks at the ids first; every variant here must agree with comparing the two whole maps)."""
    from connectors.state import _as_billed
    from mapping.chargeitem_out import EXT_FORMULARY

    s = EncounterState(encounter_id="e-1")
    for m in (chemo(version="1"), encounter("finished")):
        s.apply(m, MIN)
    published = [e["resource"] for e in s.code(FORMULARY, PROFILE)["entry"]]
    assert len(published) >= 2

    def reworded(item: dict, **changes) -> dict:
        return {**json.loads(json.dumps(item)), **changes}

    def with_formulary(item: dict, version: str) -> dict:
        return {**item, "extension": [({**e, "valueString": version} if e["url"] == EXT_FORMULARY else e) for e in item["extension"]]}

    withdrawn = reworded(published[0], id="ci-gone", status="entered-in-error")
    variants = {
        "the same": (published, published, True),
        "entered again later": (published, [reworded(i, enteredDate="2030-01-01T00:00:00+00:00") for i in published], True),
        "another formulary version": (published, [with_formulary(i, "2099-01") for i in published], True),
        "a withdrawn line held": ([*published, withdrawn], published, True),
        "a line changed": (published, [reworded(published[0], quantity={"value": 99}), *published[1:]], False),
        "a line more": (published, [*published, reworded(published[0], id="ci-new")], False),
        "a line less": (published, published[1:], False),
        "a line under another id": (published, [reworded(published[0], id="ci-other"), *published[1:]], False),
        "an id twice, the last as published": (published, [reworded(published[0], quantity={"value": 99}), *published], True),
        "an id twice, the last changed": (published, [*published, reworded(published[0], quantity={"value": 99})], False),
        "nothing published yet": ([], published, False),
        "nothing either way": ([], [], True),
    }
    for name, (held, coded, same) in variants.items():
        s.published = {i["id"]: i for i in held}
        whole = {i["id"]: _as_billed(i) for i in coded} == {
            k: _as_billed(v) for k, v in s.published.items() if v.get("status") != "entered-in-error"}
        assert s._same_charges(coded) is same and whole is same, name
