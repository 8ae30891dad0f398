"""The Medication reference table (a GlobalKTable): administrations naming a Medication by id
are coded with it; a Medication that arrives after the close codes the encounter again."""

from __future__ import annotations

import io
import json
import time

from connectors.recovery import WAITING, changelog_headers, row_from_record
from coding_core.formulary import RXNORM_SYSTEM
from mapping.fhir_in import map_medication, map_resource
from mapping.medications import MedicationCodes
from connectors.cli import main
from tests.pipeline_helpers import Running, billable, dead_letters, latest_revisions, produce, settings_for, write_config
from tests.test_fhir_in import r4
from tests.test_rooms import _events, _rooms

CLOSE = {"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}


def _by_reference(medication_id: str, **over) -> dict:
    ma = r4(medicationReference={"reference": f"Medication/{medication_id}"}, **over)
    del ma["medicationCodeableConcept"]
    return ma


def _rituximab(medication_id: str = "m-1") -> dict:
    return {"resourceType": "Medication", "id": medication_id,
            "code": {"coding": [{"system": RXNORM_SYSTEM, "code": "121191", "display": "rituximab"}]}}


class Table:
    def __init__(self, *medications: dict):
        self.held = {m.id: m for m in map(map_medication, medications)}

    def get(self, medication_id: str) -> MedicationCodes | None:
        return self.held.get(medication_id)

    def holds(self, medication_id: str) -> bool:
        return medication_id in self.held


def _drug_codes(outbox, topic) -> list[list[str]]:
    return [[i["resource"]["code"]["coding"][0]["code"] for i in json.loads(kw["value"])["entry"]
             if i["resource"]["status"] == "billable" and i["resource"]["code"]["coding"][0]["code"][0] in "JQ"]
            for t, kw in outbox.sent if t == topic]


def test_an_administration_is_coded_with_the_medication_the_table_holds(tmp_path):
    rooms = _rooms(tmp_path)
    rooms.processor.medications = Table(_rituximab())
    _events(rooms, map_resource(_by_reference("m-1"), medication_table=True), map_resource(CLOSE))
    assert _drug_codes(rooms.outbox, rooms.settings.topics.charges) == [["J9312"]]
    assert rooms.stores.open(0).get("e-1").waiting == []


def test_a_medication_arriving_after_the_close_codes_the_encounter_again(tmp_path):
    rooms = _rooms(tmp_path)
    table = rooms.processor.medications = Table()
    _events(rooms, map_resource(_by_reference("m-1"), medication_table=True), map_resource(CLOSE))
    charges = rooms.settings.topics.charges
    assert _drug_codes(rooms.outbox, charges) == [["J3490"]]  # unknown until the Medication is read
    store = rooms.stores.open(0)
    assert store.get("e-1").waiting == ["m-1"]
    ((_, row, headers),) = rooms.processor.changelog()
    assert row.waiting == ("m-1",) and (WAITING, b"m-1") in headers
    store.save([row], 1)
    assert store.waiting({"m-9"}) == [] and store.waiting({"m-1"}) == ["e-1"]

    table.held["m-1"] = map_medication(_rituximab())
    assert rooms.processor.medications_arrived({"m-1"}, set()) == 0  # partition 0 still recovering: checked when it is done
    assert rooms.processor.medications_arrived({"m-1"}, {0}) == 1
    assert _drug_codes(rooms.outbox, charges) == [["J3490"], ["J9312"]]  # revision 2: the drug line corrected
    assert store.get("e-1").waiting == []
    ((_, row, headers),) = rooms.processor.changelog()
    store.save([row], 2)
    assert store.waiting({"m-1"}) == [] and WAITING not in dict(headers)
    assert rooms.processor.medications_arrived({"m-1"}, {0}) == 0  # nothing waits for it any more


def test_a_restored_state_still_waits_and_is_coded_once_the_table_holds_its_medication(tmp_path):
    rooms = _rooms(tmp_path)
    rooms.processor.medications = Table()
    _events(rooms, map_resource(_by_reference("m-1"), medication_table=True), map_resource(CLOSE))
    ((_, row, headers),) = rooms.processor.changelog()
    again = _rooms(tmp_path / "new-volume")  # another worker restores the changelog record
    again.processor.medications = Table(_rituximab())
    restored = row_from_record(row.key, row.value, headers)
    assert restored.waiting == ("m-1",)
    again.stores.open(0).restore([restored], 1)
    assert again.processor.recheck_waiting({0}) == 1
    assert _drug_codes(again.outbox, again.settings.topics.charges) == [["J9312"]]


def test_changelog_headers_name_what_a_state_waits_for():
    state = row_from_record("e-1", b"{}", [("standing", b"closed"), ("last-record-ms", b"5"), (WAITING, b"m-1,m-2")])
    assert state.waiting == ("m-1", "m-2")
    from connectors.state import EncounterState

    assert WAITING not in dict(changelog_headers(EncounterState(encounter_id="e-1")))


def test_the_worker_reads_the_table_codes_with_it_and_codes_again_when_a_medication_arrives(kafka_bootstrap, tmp_path):
    settings = settings_for(kafka_bootstrap)
    t = settings.topics
    produce(kafka_bootstrap, [(t.fhir_medications, b"m-1", json.dumps(_rituximab("m-1")).encode())])  # before the worker starts
    worker = Running(settings)
    try:
        produce(kafka_bootstrap, [
            (t.fhir_administrations, b"ma-1", json.dumps(_by_reference("m-1")).encode()),
            (t.fhir_administrations, b"ma-2", json.dumps(_by_reference("m-2", id="ma-2", context={"reference": "Encounter/e-2"})).encode()),
            (t.fhir_medications, b"bad", b'{"resourceType": "Medication", "id": "bad"}'),  # no code: dead-lettered
            (t.fhir_administrations, b"ma-3", json.dumps(r4(id="ma-3", context={"reference": "Encounter/e-3"}, medicationCodeableConcept={"coding": [
                {"system": "http://hl7.org/fhir/sid/ndc", "code": "99999-9999-99"}]})).encode()),  # not in any formulary
        ])
        time.sleep(1)
        produce(kafka_bootstrap, [(t.fhir_encounters, b"e-1", json.dumps(CLOSE).encode()),
                                  (t.fhir_encounters, b"e-2", json.dumps({**CLOSE, "id": "e-2"}).encode())])

        def codes(bundle):
            return sorted(r["code"]["coding"][0]["code"] for r in billable(bundle) if r["code"]["coding"][0]["code"][0] == "J")

        first = latest_revisions(kafka_bootstrap, t.charges, lambda got: {"e-1", "e-2"} <= set(got), timeout_s=90)
        assert codes(first["e-1"]) == ["J9312"]  # restored on start: read before anything was coded
        assert codes(first["e-2"]) == ["J3490"]  # m-2 not yet known: an unknown drug, coded conservatively
        produce(kafka_bootstrap, [(t.fhir_medications, b"m-2", json.dumps(_rituximab("m-2")).encode())])
        second = latest_revisions(kafka_bootstrap, t.charges, lambda got: int(got.get("e-2", {}).get("meta", {}).get("versionId", 0)) >= 2,
                                  timeout_s=60)
        assert codes(second["e-2"]) == ["J9312"] and int(second["e-2"]["meta"]["versionId"]) == 2
        (letter,) = dead_letters(kafka_bootstrap, t.dead_letter)
        headers = dict(letter.headers)
        assert headers["source.topic"] == t.fhir_medications.encode() and b"no code" in headers["error.message"]
        text = worker.worker.metrics.render().decode()
        assert 'infusion_charges_medications_total{outcome="added"} 2.0' in text
        assert 'infusion_charges_medications_total{outcome="rejected"} 1.0' in text
        assert 'infusion_charges_records_total{outcome="medication-arrived"} 1.0' in text
        config = write_config(settings, tmp_path / "worker.yaml")  # the pharmacist's worklist, from what the workers hold
        deadline = time.monotonic() + 30
        while True:
            out, err = io.StringIO(), io.StringIO()
            assert main(["formulary", "missing", "--config", str(config)], out, err) == 0, err.getvalue()
            if "99999-9999-99" in out.getvalue() or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "1\thttp://hl7.org/fhir/sid/ndc|99999-9999-99\t" in out.getvalue() and "121191" not in out.getvalue()
    finally:
        worker.close()


def test_the_table_keeps_the_latest_medication_per_id_and_reports_every_change_once(tmp_path):
    from types import SimpleNamespace

    from connectors.medications import MedicationTable

    rooms = _rooms(tmp_path)
    table = MedicationTable(rooms.settings, rooms.processor.metrics, rooms.processor.dead_letters)

    def rec(offset, key, value):
        return SimpleNamespace(topic=rooms.settings.topics.fhir_medications, partition=0, offset=offset, timestamp=1,
                               key=key, value=value, headers=[])

    ondansetron = {"resourceType": "Medication", "id": "m-1", "code": {"coding": [{"system": RXNORM_SYSTEM, "code": "1740467"}]}}
    table._apply({0: [rec(0, b"m-1", json.dumps(_rituximab()).encode()), rec(1, b"m-2", json.dumps(_rituximab("m-2")).encode())]})
    table._apply({0: [rec(2, b"m-1", json.dumps(ondansetron).encode())]})  # read by a coding's settle: still reported
    assert table.poll() == {"m-1", "m-2"} and table.poll() == set()
    assert [c.code for c in table.get("m-1").codings] == ["1740467"]  # the latest per id
    table._apply({0: [rec(3, b"m-2", json.dumps(_rituximab("m-2")).encode())]})  # the same again: no change
    table._apply({0: [rec(4, b"m-2", None)]})  # a tombstone
    table._apply({0: [rec(5, b"x", b'{"resourceType": "Medication", "id": "x", "code": {"text": "x", "text": "y"}}')]})
    table._apply({0: [rec(6, b"not-m-3", json.dumps(_rituximab("m-3")).encode())]})  # its key is not its id
    assert table.poll() == {"m-2"} and table.get("m-2") is None and table.get("m-3") is None and len(table) == 1
    letters = [dict(kw["headers"])["error.message"] for t, kw in rooms.outbox.sent if t == rooms.settings.topics.dead_letter]
    assert len(letters) == 2 and b"appears twice" in letters[0] and b"key is not the Medication's id" in letters[1]


def test_between_batches_the_topic_is_read_at_most_every_poll_interval(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import connectors.medications as medications

    rooms = _rooms(tmp_path)
    table = medications.MedicationTable(rooms.settings, rooms.processor.metrics, rooms.processor.dead_letters)
    polls: list[int] = []
    table._reader = SimpleNamespace(poll=lambda timeout_ms: polls.append(timeout_ms) or {})
    now = [1000.0]
    monkeypatch.setattr(medications.time, "monotonic", lambda: now[0])
    table.poll()
    now[0] += medications.POLL_INTERVAL_S / 2
    table.poll()
    assert polls == [0]  # without waiting, and not again within the interval
    now[0] += medications.POLL_INTERVAL_S
    table.poll()
    assert polls == [0, 0]


def test_a_coding_failure_when_a_medication_arrives_is_dead_lettered_and_the_worker_goes_on(tmp_path, monkeypatch):
    from connectors.state import EncounterState

    rooms = _rooms(tmp_path)
    table = rooms.processor.medications = Table()
    _events(rooms, map_resource(_by_reference("m-1"), medication_table=True), map_resource(CLOSE))
    table.held["m-1"] = map_medication(_rituximab())

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError

    monkeypatch.setattr(EncounterState, "code", broken)
    assert rooms.processor.medications_arrived({"m-1"}, {0}) == 1  # no exception: the loop goes on
    (letter,) = [kw for t, kw in rooms.outbox.sent if t == rooms.settings.topics.dead_letter]
    headers = dict(letter["headers"])
    assert headers["error.type"] == b"CodingError" and headers["source.topic"] == rooms.settings.topics.events.encode()


def test_the_waiting_index_follows_the_last_version_of_each_state(tmp_path):
    from connectors.store import PartitionStore, Row

    store = PartitionStore(tmp_path / "0.sqlite3", 0)
    store.restore([Row("e-1", b"{}", "closed", 1, ("m-1",)), Row("e-1", b"{}", "closed", 2, ())], 2)  # v1 waited, v2 does not
    store.restore([Row("e-2", b"{}", "closed", 1, ("m-1",)), Row("e-2", None)], 4)  # waited, then deleted
    store.restore([Row("e-3", b"{}", "closed", 1, ()), Row("e-3", b"{}", "closed", 2, ("m-2",))], 6)
    assert store.waiting({"m-1"}) == [] and store.waiting({"m-2"}) == ["e-3"] and store.waiting_medications() == ["m-2"]
