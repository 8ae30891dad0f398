"""The worker's rooms on their own, with fakes for Kafka: the close hold's watermark, the
input side, the events side, and the order of the checkpoint's steps."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kafka import TopicPartition

from coding_core.profile import Profile
from connectors.checkpoint import Checkpoint
from connectors.dead_letters import DeadLetters
from connectors.errors import DeliveryPending
from connectors.hold import CloseHold
from connectors.intake import RECORDS, Intake
from connectors.ops import Metrics
from connectors.processor import EncounterProcessor
from connectors.settings import Settings
from connectors.store import StateStores
from mapping.fhir_in import map_resource
from mapping.reference_data import load_formulary
from tests.test_fhir_in import r4, r4_bulky

TZ = ZoneInfo("America/New_York")


class FakeOutbox:
    transactional = False

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.log: list[str] = []
        self.pending: list[bool] = []  # settle() raises DeliveryPending while the next of these is True

    def send(self, topic: str, **kwargs: Any) -> Any:
        self.sent.append((topic, kwargs))
        self.log.append(f"send {topic}")
        return SimpleNamespace(value=SimpleNamespace(offset=len(self.sent)))

    def settle(self, timeout_s: float) -> None:
        self.log.append("settle")
        if self.pending and self.pending.pop(0):
            raise DeliveryPending("in flight")


class FakeConsumer:
    def __init__(self, ends: dict[TopicPartition, int] | None = None, positions: dict[TopicPartition, int] | None = None):
        self.ends, self.positions, self.commits = ends or {}, positions or {}, []
        self.log: list[str] = []

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends.get(tp, 0) for tp in tps}

    def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, 0)

    def commit(self, offsets: dict, timeout_ms: int = 0) -> None:
        self.commits.append({tp: m.offset for tp, m in offsets.items()})
        self.log.append("commit")


def record(topic: str, value: bytes, partition: int = 0, offset: int = 0, timestamp: int = 1_000, key: bytes | None = None):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, timestamp=timestamp, key=key, value=value, headers=[])


def _rooms(tmp_path, **over):
    settings = Settings(state_dir=tmp_path, metrics_port=None, **over)
    stats = {k: 0 for k in ("input", "events", "dead_letters", "revisions", "coding_failures", "revisions_too_large", "blocked")}
    outbox, metrics = FakeOutbox(), Metrics()
    dead = DeadLetters(settings.topics.dead_letter, settings.max_dead_letter_bytes, outbox, metrics, stats)
    hold = CloseHold(settings.hold_grace_ms, lambda: 100.0, metrics)
    intake = Intake(settings, TZ, outbox, dead, hold, stats)
    stores = StateStores(tmp_path, settings.topics.state)
    processor = EncounterProcessor(settings, load_formulary(), Profile(), stores, outbox, dead, metrics, stats, lambda: 100.0)
    return SimpleNamespace(settings=settings, stats=stats, outbox=outbox, hold=hold, intake=intake, stores=stores, processor=processor)


def test_the_hold_releases_an_update_once_every_input_partition_is_read_past_it():
    metrics = Metrics()
    a, b = TopicPartition("in.a", 0), TopicPartition("in.b", 0)
    hold = CloseHold(0, lambda: 100.0, metrics)
    close = map_resource({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}})
    hold.read(a, 6, 5_000)
    hold.hold(a, 7, 5_000, close)
    consumer = FakeConsumer(ends={a: 10, b: 3}, positions={a: 10, b: 1})  # b not read to its end
    assert hold.release(consumer, [a, b]) == [] and hold.floors() == {a: 7}
    hold.read(b, 1, 5_001)  # b's records are past the close's time now
    hold._ends_next = float("-inf")
    assert hold.release(consumer, [a, b]) == [close] and hold.floors() == {}


def test_the_hold_asks_for_a_position_only_until_it_knows_the_partition_is_read_to_its_end():
    """The worker forgets a partition here when it is revoked or lost and before it seeks it:
    until then a partition read to its end (or reported there) is not asked about again."""
    a, b = TopicPartition("in.a", 0), TopicPartition("in.b", 0)
    asked: list[TopicPartition] = []

    class Counting(FakeConsumer):
        def position(self, tp: TopicPartition) -> int:
            asked.append(tp)
            return super().position(tp)

    hold = CloseHold(0, lambda: 100.0, Metrics())
    close = map_resource({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}})
    consumer = Counting(ends={a: 10, b: 4}, positions={a: 10, b: 4})
    hold.read(a, 9, 5_000)  # a's last record: read to its end
    hold.hold(a, 9, 5_000, close)
    assert hold.release(consumer, [a, b]) == [close] and asked == [b]  # b (nothing read) asked once
    hold.hold(a, 9, 5_000, close)
    hold._ends_next = float("-inf")
    assert hold.release(consumer, [a, b]) == [close] and asked == [b]  # neither asked again
    hold.forget([a])  # a rewind: a goes back to its commit
    consumer.positions[a] = 3
    hold.hold(a, 3, 5_000, close)
    hold._ends_next = float("-inf")
    assert hold.release(consumer, [a, b]) == [] and asked == [b, a]  # asked again, and not caught up
    hold.read(a, 9, 5_001)
    assert hold.release(consumer, [a, b]) == [close]


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_measured_grace_is_the_largest_recent_lateness_at_most_the_setting():
    """Lateness: a record the partition's end had not reached when it was asked for, stamped
    before that."""
    clock, a, b = Clock(1_000.0), TopicPartition("in.a", 0), TopicPartition("in.b", 0)
    fixed, measured = CloseHold(100, clock, Metrics()), CloseHold(100, clock, Metrics(), measured=True)
    consumer = FakeConsumer(ends={a: 10, b: 4}, positions={a: 10, b: 4})
    close = map_resource({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}})
    assert fixed.grace() == measured.grace() == 100  # no end asked for yet: the setting
    for hold in (fixed, measured):
        hold.read(a, 9, 999_000)
        hold.hold(a, 9, 999_000, close)
        hold.release(consumer, [a, b])  # ends asked for at 1000.000 s: a at 10, b at 4
    assert measured.grace() == 100  # asked for only just now: a late record may not have shown itself yet
    clock.now = 1_000.2
    assert fixed.grace() == 100 and measured.grace() == 0  # asking for longer than the setting, nothing late
    for hold in (fixed, measured):
        hold.read(a, 9, 999_900)  # in the log when the end was asked for: not late
        hold.read(a, 10, 1_000_050)  # stamped after the query
        hold.read(b, 4, 999_970)  # stamped 30 ms before the query, not in the log then
    assert fixed.grace() == 100 and measured.grace() == 30
    measured.read(b, 5, 999_990)  # later in the log, stamped later: less late
    assert measured.grace() == 30
    clock.now = 1_004.0
    measured.hold(a, 11, 1_003_000, close)
    measured._ends_next = float("-inf")
    measured.release(FakeConsumer(ends={a: 12, b: 6}, positions={a: 12, b: 6}), [a, b])  # asked at 1004.000 s
    measured.read(b, 6, 1_003_500)  # 500 ms late: capped by the setting
    assert measured.grace() == 100
    clock.now = 1_015.0  # the window has passed: no end asked for in it
    assert measured.grace() == 100
    measured._ends_next = float("-inf")
    measured.hold(a, 12, 1_014_000, close)
    measured.release(FakeConsumer(ends={a: 13, b: 7}, positions={a: 13, b: 7}), [a, b])  # asked at 1015.000 s
    measured.read(b, 7, 1_014_995)
    assert measured.grace() == 100  # asking again after a quiet window: the setting at first
    clock.now = 1_015.2
    assert measured.grace() == 5
    measured.read(b, 8, 1_015_010)  # a producer clock ahead of the worker's: never a negative grace
    assert measured.grace() == 5


def test_a_close_released_early_costs_an_extra_revision_never_a_charge(tmp_path):
    """An administration stamped before its close but read after the close was released (it
    reached the broker later than the grace allowed): the encounter is coded without it, then
    coded again with it -- the second revision bills what the first missed."""
    rooms = _rooms(tmp_path)
    _events(rooms, map_resource(r4(id="ma-1")))
    _events(rooms, map_resource({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}), offset=1)
    late = map_resource(r4(id="ma-2", effectivePeriod={"start": "2026-03-02T11:00:00-05:00", "end": "2026-03-02T11:20:00-05:00"}))
    _events(rooms, late, offset=2)
    revisions = [json.loads(kw["value"]) for t, kw in rooms.outbox.sent if t == rooms.settings.topics.charges]
    assert [r["meta"]["versionId"] for r in revisions] == ["1", "2"]
    first, second = ({e["resource"]["id"]: e["resource"] for e in r["entry"]} for r in revisions)
    services = lambda items: {s["reference"] for i in items.values() if i["status"] == "billable" for s in i["service"]}
    assert services(first) == {"MedicationAdministration/ma-1"}
    assert services(second) == {"MedicationAdministration/ma-1", "MedicationAdministration/ma-2"}
    assert set(first) <= set(second)  # every line of the first is updated or withdrawn in the second, none forgotten


def test_the_input_side_forwards_administrations_holds_closes_and_dead_letters_the_rest(tmp_path):
    rooms = _rooms(tmp_path)
    t = rooms.settings.topics
    rooms.intake.handle(record(t.fhir_administrations, json.dumps(r4(id="ma-1")).encode(), offset=0))
    rooms.intake.handle(record(t.fhir_encounters, json.dumps({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}).encode()))
    rooms.intake.handle(record(t.fhir_administrations, b"{not json", offset=1))
    assert len(rooms.hold) == 1  # the close waits
    rooms.intake.flush()
    topics = [topic for topic, _ in rooms.outbox.sent]
    assert topics == [t.dead_letter, t.events]
    events = json.loads(rooms.outbox.sent[1][1]["value"])
    assert [d["id"] for d in events[RECORDS]] == ["ma-1"] and rooms.outbox.sent[1][1]["key"] == b"e-1"


def _events(rooms, *docs, offset=0):
    value = json.dumps({RECORDS: [m.to_json() for m in docs]}).encode()
    rooms.processor.handle(record(rooms.settings.topics.events, value, offset=offset, key=b"e-1"))


def test_the_events_side_codes_a_closed_encounter_and_publishes_one_revision(tmp_path):
    rooms = _rooms(tmp_path)
    admin = map_resource(r4(id="ma-1"))
    close = map_resource({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}})
    _events(rooms, admin)
    assert [t for t, _ in rooms.outbox.sent] == []  # open: nothing to publish
    _events(rooms, close, offset=1)
    (charges,) = [kw for t, kw in rooms.outbox.sent if t == rooms.settings.topics.charges]
    assert dict(charges["headers"])["revision"] == b"1"
    rows = rooms.processor.changelog()
    assert [(p, row.key, row.standing) for p, row, _ in rows] == [(0, "e-1", "closed")]
    _events(rooms, close, offset=2)  # delivered again: a duplicate, no new revision
    assert len([t for t, _ in rooms.outbox.sent if t == rooms.settings.topics.charges]) == 1


def test_a_recode_dates_the_charges_it_changes_at_the_commands_record_time(tmp_path):
    from connectors.recode import command

    rooms = _rooms(tmp_path)
    _events(rooms, map_resource(r4(id="ma-1")))
    _events(rooms, map_resource({"resourceType": "Encounter", "id": "e-1", "status": "finished", "class": {"code": "AMB"}}), offset=1)

    def charges() -> list[dict]:
        return [json.loads(kw["value"]) for t, kw in rooms.outbox.sent if t == rooms.settings.topics.charges]

    (first,) = charges()
    entered = {e["resource"].get("enteredDate") for e in first["entry"]}
    recode = json.dumps(command("e-1")).encode()  # as infusion-charges recode writes it
    rooms.processor.handle(record(rooms.settings.topics.events, recode, offset=2, timestamp=1_700_000_000_000, key=b"e-1"))
    assert len(charges()) == 1  # nothing changed but the date: no revision
    rooms.processor.profile = Profile(revenue_codes={"96401-96549": "0336"})  # the site's fix
    rooms.processor.handle(record(rooms.settings.topics.events, recode, offset=3, timestamp=1_800_000_000_000, key=b"e-1"))
    second = charges()[-1]
    assert second["meta"]["versionId"] == "2" and entered != {"2027-01-15T08:00:00+00:00"}
    assert {e["resource"]["enteredDate"] for e in second["entry"]} == {"2027-01-15T08:00:00+00:00"}


def test_a_state_too_large_to_write_blocks_its_encounter_and_dead_letters_what_made_it_so(tmp_path):
    rooms = _rooms(tmp_path, max_state_bytes=4096)
    admins = [map_resource(r4_bulky(i)) for i in range(12)]
    _events(rooms, *admins)
    (_, row, headers), = rooms.processor.changelog()
    assert row.standing == "blocked" and dict(headers)["standing"] == b"blocked"
    lettered = [kw for t, kw in rooms.outbox.sent if t == rooms.settings.topics.dead_letter]
    assert len(lettered) == 12 and {dict(kw["headers"])["error.type"] for kw in lettered} == {b"StateTooLarge"}
    assert rooms.stats["blocked"] == 1
    _events(rooms, map_resource(r4(id="ma-late")), offset=1)
    assert dict(rooms.outbox.sent[-1][1]["headers"])["error.type"] == b"EncounterBlocked"


def test_the_checkpoint_acknowledges_results_then_the_changelog_then_commits(tmp_path):
    rooms = _rooms(tmp_path)
    rooms.stores.open(0)
    consumer = FakeConsumer()
    checkpoint = Checkpoint(rooms.settings, consumer, rooms.outbox, rooms.intake, rooms.hold, rooms.processor, rooms.stores)
    _events(rooms, map_resource(r4(id="ma-1")))
    tp = TopicPartition(rooms.settings.topics.events, 0)
    checkpoint.advance(tp, 1)
    rooms.outbox.log.clear()
    state = "send " + rooms.settings.topics.state
    rooms.outbox.pending = [True]  # results still in flight
    with pytest.raises(DeliveryPending):
        checkpoint.commit(1.0)
    assert consumer.commits == [] and rooms.outbox.log == ["settle"]  # no changelog written past unacknowledged results
    rooms.outbox.pending = [False, True]  # results acknowledged, the changelog still in flight
    with pytest.raises(DeliveryPending):
        checkpoint.commit(1.0)
    assert consumer.commits == [] and rooms.stores.get(0).changelog_offset == 0  # not in the local store either
    assert rooms.outbox.log == ["settle", "settle", state, "settle"]
    checkpoint.commit(1.0)
    assert consumer.commits == [{tp: 1}] and rooms.stores.get(0).changelog_offset > 0
    assert rooms.outbox.log[4:] == ["settle", "settle"]  # the changelog is not sent twice
    checkpoint.commit(1.0)
    assert consumer.commits == [{tp: 1}]  # unchanged offsets are not committed again


def test_a_state_blocked_after_a_checkpoint_that_did_not_finish_keeps_what_that_checkpoint_wrote(tmp_path):
    """Checkpoint N sends a state and does not see it acknowledged; more records then make the
    state too large at N+1.  The blocked state starts from what N wrote (saved first), and only
    the records after it are dead-lettered: every record is in one place or the other."""
    rooms = _rooms(tmp_path, max_state_bytes=6000)  # 4 administrations fit (~3 KB compressed), 12 do not (~7.8 KB)
    rooms.stores.open(0)
    checkpoint = Checkpoint(rooms.settings, FakeConsumer(), rooms.outbox, rooms.intake, rooms.hold, rooms.processor, rooms.stores)
    first = [map_resource(r4_bulky(i)) for i in range(4)]
    later = [map_resource(r4_bulky(i)) for i in range(4, 12)]
    _events(rooms, *first)
    rooms.outbox.pending = [False, True]  # the changelog in flight at the timeout
    with pytest.raises(DeliveryPending):
        checkpoint.commit(1.0)
    _events(rooms, *later, offset=1)
    checkpoint.commit(1.0)
    blocked = rooms.stores.get(0).get("e-1")
    assert blocked.blocked and {k.split(":", 1)[1] for k in blocked.records} == {m.id for m in first}
    lettered = [json.loads(kw["value"])["id"] for t, kw in rooms.outbox.sent if t == rooms.settings.topics.dead_letter]
    assert sorted(lettered) == sorted(m.id for m in later)


class _Producer:
    """A producer whose flush never completes, with futures the test settles by hand."""

    def __init__(self) -> None:
        from kafka.future import Future

        self.futures: list[Any] = []
        self.closed = False
        self._future = Future

    def send(self, topic: str, **kwargs: Any) -> Any:
        self.futures.append(self._future())
        return self.futures[-1]

    def flush(self, timeout: float | None = None) -> None:
        from kafka.errors import KafkaTimeoutError

        if any(not f.is_done for f in self.futures):
            raise KafkaTimeoutError("simulated")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def test_the_outbox_fails_fast_on_a_failed_record_and_notices_a_stuck_producer():
    import time as clock

    from kafka.errors import KafkaTimeoutError

    from connectors.clients import Outbox
    from connectors.errors import DeliveryFailed

    made: list[_Producer] = []

    def make() -> _Producer:
        made.append(_Producer())
        return made[-1]

    outbox = Outbox(make, Metrics(), transactional=False, stuck_after_s=60)
    outbox.send("t", key=None, value=b"1")
    outbox.send("t", key=None, value=b"2")
    with pytest.raises(DeliveryPending):
        outbox.settle(0.01)  # both in flight, not for long
    made[0].futures[0].failure(KafkaTimeoutError("expired"))
    with pytest.raises(DeliveryFailed):
        outbox.settle(0.01)  # one failed: no waiting for the other one
    outbox.send("t", key=None, value=b"3")
    outbox._waiting_since = clock.monotonic() - 61  # sent long ago, never completed
    with pytest.raises(DeliveryFailed) as e:
        outbox.settle(0.01)
    assert "neither acknowledged nor failed" in str(e.value.cause)
    outbox.renew()
    assert made[0].closed and outbox.producer is made[1]
    outbox.send("t", key=None, value=b"4")
    made[1].futures[0].success(None)
    outbox.settle(0.01)  # the new producer's record acknowledged: settled
