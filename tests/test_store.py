"""The local state store and the rules around it: memory bounded by open work, the checkpointed
changelog offset, restore rows, blocked encounters, topic checks and what each error means."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.errors import (
    CommitFailedError,
    KafkaTimeoutError,
    NoOffsetForPartitionError,
    NotCoordinatorError,
    TopicAuthorizationFailedError,
)

from connectors.errors import DataLoss, DeliveryFailed, DeliveryPending, Interrupted, TopicMismatch, classify
from connectors.recovery import changelog_headers, row_from_record
from connectors.settings import Settings
from connectors.state import EncounterState
from connectors.store import PartitionStore, Row
from connectors.topics import TopicInfo, topics_to_create, verify
from tests.test_state import FORMULARY, PROFILE, MIN, chemo, encounter, fhir


def _closed() -> EncounterState:
    s = EncounterState(encounter_id="e-1")
    s.apply(chemo(), 1 * MIN)
    s.apply(encounter("finished"), 2 * MIN)
    s.code(FORMULARY, PROFILE)
    return s


def _open(key: str = "e-2") -> EncounterState:
    s = EncounterState(encounter_id=key)
    s.apply(chemo(id=f"ma-{key}"), 1 * MIN)
    return s


def _row(key: str, s: EncounterState) -> Row:
    return Row(key, s.to_bytes(), s.standing, s.last_record_ms)


def test_closed_encounters_leave_memory_once_written_and_read_back_equal(tmp_path):
    store = PartitionStore(tmp_path / "0.sqlite3", 0)
    closed, open_ = _closed(), _open()
    store.put("e-1", closed)
    store.put("e-2", open_)
    dirty = store.take_dirty()
    assert set(dirty) == {"e-1", "e-2"}
    store.save([_row(k, s) for k, s in dirty.items()], next_offset=2)
    assert [k for k, _ in store.in_memory()] == ["e-2"]  # open work only
    assert store.get("e-1") == closed  # from disk
    assert store.counts() == {"closed": 1, "open": 1}
    store.close()

    again = PartitionStore(tmp_path / "0.sqlite3", 0)  # a restart with its volume
    assert again.changelog_offset == 2
    assert again.load_open() == 1 and [k for k, _ in again.in_memory()] == ["e-2"]
    assert again.get("e-2") == open_ and again.get("e-1") == closed


def test_a_changed_state_stays_in_memory_until_written(tmp_path):
    store = PartitionStore(tmp_path / "0.sqlite3", 0)
    store.put("e-1", _closed())
    store.evict()
    assert [k for k, _ in store.in_memory()] == ["e-1"]  # dirty: not written yet


def test_eviction_looks_at_what_came_into_memory_or_changed_since_the_last_checkpoint(tmp_path):
    """A closed state read back for a late record, a state closed after it was written once, and
    one still changing at a checkpoint: each leaves memory at the first checkpoint after it is
    written and unchanged; open ones stay."""
    store = PartitionStore(tmp_path / "0.sqlite3", 0)
    store.put("e-1", _closed())
    store.put("e-2", _open())
    store.put("e-3", _open("e-3"))
    store.save([_row(k, s) for k, s in store.take_dirty().items()], next_offset=3)
    assert sorted(k for k, _ in store.in_memory()) == ["e-2", "e-3"]

    assert store.get("e-1") is not None  # read back from disk (a late record, a recode)
    closing = store.get("e-3")
    closing.apply(fhir({"resourceType": "Encounter", "id": "e-3", "status": "finished", "class": {"code": "AMB"}}), 3 * MIN)
    assert closing.standing == "closed"
    store.put("e-3", closing)
    dirty = store.take_dirty()
    store.put("e-3", closing)  # changed again while the checkpoint is under way
    store.save([_row(k, s) for k, s in dirty.items()], next_offset=4)
    assert sorted(k for k, _ in store.in_memory()) == ["e-2", "e-3"]  # e-1 gone; e-3 not written since its last change

    store.save([_row(k, s) for k, s in store.take_dirty().items()], next_offset=5)
    assert [k for k, _ in store.in_memory()] == ["e-2"]


def test_restored_rows_and_tombstones_and_the_offset_commit_together(tmp_path):
    store = PartitionStore(tmp_path / "0.sqlite3", 0)
    closed = _closed()
    value = closed.to_bytes()
    old = row_from_record("e-1", value, None)  # a record written before the headers: parsed
    new = row_from_record("e-1", value, changelog_headers(closed))
    assert old == new == Row("e-1", value, "closed", closed.last_record_ms)
    store.restore([new, row_from_record("e-9", _open("e-9").to_bytes(), None)], next_offset=10)
    store.restore([row_from_record("e-9", None, None)], next_offset=11)
    assert store.changelog_offset == 11 and store.counts() == {"closed": 1}
    store.restore([], next_offset=5)
    assert store.changelog_offset == 11  # never moves back


def test_a_state_put_again_after_its_tombstone_in_one_restore_batch_is_kept(tmp_path):
    store = PartitionStore(tmp_path / "0.sqlite3", 0)
    first, again = _open("e-1"), _closed()
    store.restore([_row("e-1", first), Row("e-1", None), _row("e-1", again)], next_offset=3)
    assert store.get("e-1") == again and store.counts() == {"closed": 1}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["e-1", "e-2", "e-3", "e-4"]),
                                   st.sampled_from(["open", "closed", "retired", None])), max_size=6), max_size=8),
       st.booleans())
def test_the_counts_by_standing_follow_every_write(batches, restore):
    """Kept up to date by each write (puts, tombstones, a key several times in a batch), the
    counts are what a count of the table gives."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        store = PartitionStore(Path(d) / "0.sqlite3", 0)
        for n, batch in enumerate(batches, start=1):
            rows = [Row(key, None) if standing is None else Row(key, b"{}", standing, n) for key, standing in batch]
            (store.restore if restore else store.save)(rows, next_offset=n)
            assert store.counts() == store._counted()
        store.close()


def test_the_retention_scan_finds_states_by_standing_and_age(tmp_path):
    store = PartitionStore(tmp_path / "0.sqlite3", 0)
    closed, open_ = _closed(), _open()
    store.save([_row("e-1", closed), _row("e-2", open_)], 2)
    assert store.stale(closed.last_record_ms + 1, ("closed", "discarded", "blocked")) == ["e-1"]
    assert store.stale(closed.last_record_ms, ("closed",)) == []
    assert store.stale(10**15, ("retired",)) == []


def test_a_blocked_encounter_keeps_its_last_written_state_and_its_latest_revision():
    written = _closed()
    grown = written.model_copy(deep=True)
    grown.apply(chemo(id="ma-2"), 3 * MIN)
    grown.code(FORMULARY, PROFILE)
    assert grown.revision == written.revision + 1
    blocked = grown.blocked_copy("too large", written)
    assert blocked.blocked == "too large" and blocked.standing == "blocked"
    assert blocked.records == written.records  # the records known to be written
    assert (blocked.revision, blocked.published) == (grown.revision, grown.published)  # no revision number twice
    assert blocked.apply(chemo(id="ma-3"), 4 * MIN) == "blocked" and not blocked.due()
    assert blocked.expired(4 * MIN + 2, 1) and not blocked.idle_close_due(10**12, 1)


def _info(partitions=3, **configs):
    return TopicInfo(partitions, None, {k.replace("_", "."): str(v) for k, v in configs.items()})


def _topics(settings, **over):
    t = settings.topics
    info = {name: _info() for name in (t.events, t.state, t.charges, t.dead_letter, t.fhir_medications, *t.inputs())}
    info.update(over)
    return info


def test_topics_agreeing_with_the_settings_pass_and_a_broker_reporting_no_configs_is_checked_on_counts():
    settings = Settings(partitions=3)
    verify(settings, _topics(settings))
    t = settings.topics
    verify(settings, _topics(settings, **{t.state: _info(cleanup_policy="compact", max_message_bytes=5_000_000),
                                          t.events: _info(cleanup_policy="delete", retention_ms=604_800_000)}))


@pytest.mark.parametrize("topic, info, words", [
    ("events", _info(6), ["6 partitions", "partitions is 3"]),
    ("state", _info(2), ["2 partitions"]),
    ("state", _info(cleanup_policy="delete"), ["must be compacted"]),
    ("state", _info(cleanup_policy="compact,delete"), ["only compacted"]),
    ("events", _info(cleanup_policy="compact"), ["compaction would delete events"]),
    ("events", _info(cleanup_policy="delete", retention_ms=3_600_000), ["retention.ms 3600000"]),
    ("state", _info(cleanup_policy="compact", max_message_bytes=1_000_000), ["max_state_bytes 4000000"]),
    ("charges", _info(max_message_bytes=900_000), ["max_revision_bytes"]),
    ("fhir_medications", _info(cleanup_policy="delete"), ["reference topic must be compacted"]),
])
def test_a_topic_contradicting_the_settings_is_named_with_the_setting(topic, info, words):
    settings = Settings(partitions=3)
    name = getattr(settings.topics, topic)
    with pytest.raises(TopicMismatch) as e:
        verify(settings, _topics(settings, **{name: info}))
    assert name in str(e.value) and all(w in str(e.value) for w in words)


def test_missing_topics_are_created_unless_create_topics_is_off():
    settings = Settings(partitions=3)
    t = settings.topics
    everything = set(_topics(settings))
    assert topics_to_create(settings, everything) == []
    new = {n.name: n for n in topics_to_create(settings, everything - {t.state, t.hl7_adt})}
    assert set(new) == {t.state, t.hl7_adt} and new[t.state].num_partitions == 3
    assert new[t.state].topic_configs["cleanup.policy"] == "compact"

    off = Settings(partitions=3, create_topics=False)
    assert topics_to_create(off, everything) == []  # all there: nothing to create, nothing to refuse
    with pytest.raises(TopicMismatch) as e:
        topics_to_create(off, everything - {t.state, t.hl7_adt, t.fhir_medications})
    message = str(e.value)
    assert all(name in message for name in (t.state, t.hl7_adt, t.fhir_medications))  # every missing topic, in one error
    assert t.events not in message and "created by the cluster's operators" in message
    assert "3 partitions, cleanup.policy=compact" in message  # what the operators must create it with
    assert classify(e.value) == "fatal"  # exit 2


def test_create_topics_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("INFUSION_CHARGES_CREATE_TOPICS", "false")
    assert Settings().create_topics is False
    monkeypatch.delenv("INFUSION_CHARGES_CREATE_TOPICS")
    assert Settings().create_topics is True


@pytest.mark.parametrize("error, action", [
    (DeliveryPending("in flight"), "retry"),
    (KafkaTimeoutError(), "retry"),
    (NotCoordinatorError(), "retry"),
    (NoOffsetForPartitionError(), "retry"),
    (DeliveryFailed(1, KafkaTimeoutError()), "rewind"),
    (CommitFailedError(), "rewind"),
    (Interrupted(KafkaTimeoutError()), "rewind"),
    (DeliveryFailed(1, TopicAuthorizationFailedError()), "fatal"),
    (TopicAuthorizationFailedError(), "fatal"),
    (Interrupted(DataLoss("x")), "fatal"),
    (TopicMismatch("x"), "fatal"),
    (ZeroDivisionError(), "fatal"),
])
def test_what_the_worker_does_about_each_error(error, action):
    assert classify(error) == action


def test_a_quiet_encounter_lets_go_of_its_parsed_records_and_codes_the_same():
    a, b = _open("e-1"), _open("e-1")
    for s in (a, b):
        s.apply(chemo(id="ma-9", end="2026-03-02T11:45:00-05:00"), 2 * MIN)
        s.administrations()
    assert b.release_parsed() and not b.release_parsed()  # once; nothing more to let go
    assert all(not k.startswith("administration:") for k in b._parsed)
    for s in (a, b):
        s.apply(encounter("finished"), 3 * MIN)
    assert a.code(FORMULARY, PROFILE) == b.code(FORMULARY, PROFILE)
