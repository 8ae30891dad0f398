"""The Kafka pipeline end to end against a real broker (see conftest.kafka_bootstrap)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline_helpers import (
    Running,
    all_results,
    dead_letters,
    billable,
    charge_backlog,
    charged_as,
    latest_revisions,
    offline_truth,
    produce,
    produce_from_another_process,
    sample_messages,
    settings_for,
    thread_errors,
    write_config,
)
from coding_core.engine import code_encounter
from coding_core.profile import Profile
from mapping.chargeitem_out import to_charge_items
from mapping.collector import Mapped
from mapping.reference_data import load_formulary
from tests.test_fhir_in import r4, r4_bulky


def test_end_to_end_equals_the_offline_code_result_and_poison_is_dead_lettered(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, max_message_bytes=64 * 1024)
    truth = offline_truth()
    worker = Running(settings)
    try:
        messages = sample_messages(settings)
        oversized = json.dumps(r4(id="big", note=[{"text": "x" * 70_000}])).encode()
        poison = [
            (settings.topics.fhir_administrations, b"p1", b"{not json"),
            (settings.topics.hl7_ras, None, b"MSH|^~\\&|X|Y|Z|W|20261109||RAS^O17|POISON1|P|2.5\rPV1|1|O\rRXA|0|1"),
            (settings.topics.fhir_administrations, b"big", oversized),
        ]
        produce(kafka_bootstrap, messages + poison)

        done = charged_as(truth)
        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, done)
        assert set(latest) == set(truth)
        for enc, items in truth.items():
            assert billable(latest[enc]) == items, enc
            assert latest[enc]["type"] == "transaction"

        got = dead_letters(kafka_bootstrap, settings.topics.dead_letter, at_least=3)
        assert sorted(r.value for r in got) == sorted(v for _, _, v in poison)  # the original bytes
        for r in got:
            headers = dict(r.headers)
            assert headers["source.topic"].decode() in (settings.topics.fhir_administrations, settings.topics.hl7_ras)
            assert headers["error.type"] in (b"MappingError", b"OversizedMessage") and headers["error.message"]
            assert b"DOE" not in headers["error.message"]
        assert any(b"POISON1" in dict(r.headers)["error.message"] for r in got)
        assert [dict(r.headers)["error.type"] for r in got if r.key == b"big"] == [b"OversizedMessage"]

        # every message delivered again (an interface engine replaying its queue): nothing changes
        before = all_results(kafka_bootstrap, settings.topics.charges)
        produce(kafka_bootstrap, messages)
        time.sleep(3)
        assert all_results(kafka_bootstrap, settings.topics.charges) == before
    finally:
        worker.close()


def _wait_for_truth(bootstrap, settings, truth, timeout_s=120):
    done = charged_as(truth)
    latest = latest_revisions(bootstrap, settings.topics.charges, done, timeout_s)
    assert done(latest), {e: len(billable(b)) for e, b in latest.items()}
    return latest


def test_kill_9_mid_stream_loses_nothing_and_repeats_nothing_different(kafka_bootstrap, tmp_path):
    settings = settings_for(kafka_bootstrap)
    config = write_config(settings, tmp_path / "worker.yaml")
    truth = offline_truth()
    messages = sample_messages(settings)
    cmd = [sys.executable, "-m", "connectors.cli", "run", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        produce(kafka_bootstrap, messages[: len(messages) // 2])
        latest_revisions(kafka_bootstrap, settings.topics.charges, lambda latest: len(latest) >= 1, 60)
        produce(kafka_bootstrap, messages[len(messages) // 2:])
        time.sleep(0.3)  # mid-stream: the second half is being processed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    log = tmp_path / "second.log"
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        try:
            _wait_for_truth(kafka_bootstrap, settings, truth)
        except AssertionError as e:
            raise AssertionError(f"{e}\nsecond worker log:\n{log.read_text()[-3000:]}") from None
        deadline = time.monotonic() + 60
        while "assigned" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)  # running: it has been given its partitions (and restored their state)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0  # SIGTERM: finish, commit, exit cleanly
    results = all_results(kafka_bootstrap, settings.topics.charges)
    divergent = {k: len(v) for k, v in results.items() if len(v) > 1}
    assert divergent == {}, "a repeated revision must be byte-identical"


def test_two_workers_share_partitions_through_a_rebalance_and_a_late_administration_corrects(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap)
    truth = offline_truth()
    messages = sample_messages(settings)
    one = Running(settings)
    two = None
    try:
        produce(kafka_bootstrap, messages[: len(messages) // 2])
        two = Running(settings)  # joins the group: partitions move, states follow through the changelog
        produce(kafka_bootstrap, messages[len(messages) // 2:])
        latest = _wait_for_truth(kafka_bootstrap, settings, truth)
        one.close()  # leaves: its partitions go to the other worker
        one = None

        # a late administration for a closed encounter: a new revision, old lines keep their ids
        before = latest["enc-onc-5001"]
        late = r4(id="ma-5001-late", context={"reference": "Encounter/enc-onc-5001"},
                  subject={"reference": "Patient/pat-1001"},
                  effectivePeriod={"start": "2026-11-02T14:05:00-05:00", "end": "2026-11-02T14:40:00-05:00"},
                  medicationCodeableConcept={"coding": [{"system": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "J3370"}]},
                  device=[{"reference": "Device/port-1001"}], dosage={"route": {"text": "IV"}, "dose": {"value": 1000, "code": "mg"}})
        produce(kafka_bootstrap, [(settings.topics.fhir_administrations, b"ma-5001-late", json.dumps(late).encode())])
        rev = int(before["meta"]["versionId"])
        latest = latest_revisions(kafka_bootstrap, settings.topics.charges,
                                  lambda lt: int(lt["enc-onc-5001"]["meta"]["versionId"]) > rev, 90)
        after = latest["enc-onc-5001"]
        assert int(after["meta"]["versionId"]) == rev + 1
        codes_after = {e["resource"]["code"]["coding"][0]["code"] for e in after["entry"] if e["resource"]["status"] == "billable"}
        assert "J3370" in codes_after
        ids_before = {e["resource"]["id"] for e in before["entry"] if e["resource"]["code"]["coding"][0]["code"] == "96413"}
        ids_after = {e["resource"]["id"] for e in after["entry"] if e["resource"]["code"]["coding"][0]["code"] == "96413"}
        assert ids_before == ids_after
    finally:
        for w in (one, two):
            if w is not None:
                w.close()
    divergent = {k for k, v in all_results(kafka_bootstrap, settings.topics.charges).items() if len(v) > 1}
    assert divergent == set()


def test_exactly_once_mode_runs_the_same_pipeline_in_transactions(kafka_bootstrap):
    """Kafka transactions for real clusters.  On tansu this checks the transactional path
    produces the right results (tansu does not hide aborted records, so isolation itself is
    only meaningful against Kafka: set KAFKA_BOOTSTRAP_SERVERS)."""
    settings = settings_for(kafka_bootstrap, delivery="exactly-once")
    truth = offline_truth()
    worker = Running(settings)
    try:
        produce(kafka_bootstrap, sample_messages(settings))
        _wait_for_truth(kafka_bootstrap, settings, truth)
    finally:
        worker.close()
    assert worker.worker.stats["revisions"] >= len(truth)


def test_outpatient_encounter_without_discharge_closes_after_the_idle_timeout(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, idle_close_minutes=60)
    skew = {"s": 0.0}
    worker = Running(settings, clock=lambda: time.time() + skew["s"])
    try:
        admin = r4(id="ma-idle-1", context={"reference": "Encounter/enc-idle"})
        produce(kafka_bootstrap, [(settings.topics.fhir_administrations, b"ma-idle-1", json.dumps(admin).encode())])
        quiet = latest_revisions(kafka_bootstrap, settings.topics.charges, lambda lt: "enc-idle" in lt, timeout_s=8)
        assert quiet == {}  # open: no discharge yet, not idle long enough
        skew["s"] = 61 * 60  # an hour of silence later
        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, lambda lt: "enc-idle" in lt, timeout_s=60)
        codes = {e["resource"]["code"]["coding"][0]["code"] for e in latest["enc-idle"]["entry"]}
        assert "96413" in codes
    finally:
        worker.close()


def test_health_readiness_and_metrics_endpoints(kafka_bootstrap):
    from urllib.error import HTTPError
    from urllib.request import urlopen

    settings = settings_for(kafka_bootstrap, metrics_port=0)
    truth = offline_truth()
    worker = Running(settings)
    try:
        deadline = time.monotonic() + 30
        while worker.worker.ops is None and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{worker.worker.ops.port}"
        assert urlopen(f"{base}/healthz").status == 200
        statuses = []
        while time.monotonic() < deadline:
            try:
                statuses.append(urlopen(f"{base}/readyz").status)
                break
            except HTTPError as e:
                statuses.append(e.code)  # 503 until partitions are assigned and restored
                time.sleep(0.2)
        assert statuses[-1] == 200
        produce(kafka_bootstrap, sample_messages(settings))
        _wait_for_truth(kafka_bootstrap, settings, truth)
        time.sleep(1)  # one more tick for the gauges
        text = urlopen(f"{base}/metrics").read().decode()
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")}
        consumed = sum(v for k, v in values.items() if k.startswith("infusion_charges_messages_consumed_total"))
        assert consumed >= len(sample_messages(settings))
        assert values["infusion_charges_revisions_published_total"] >= len(truth)
        assert values["infusion_charges_coding_seconds_count"] >= len(truth)
        assert values["infusion_charges_encounters_held"] == len(truth)
        assert "infusion_charges_close_to_charge_seconds_bucket" in text and "infusion_charges_consumer_lag" in text
        assert "enc-onc-5001" not in text and "pat-1001" not in text  # labels are topics, never ids
        try:
            urlopen(f"{base}/nope")
            raise AssertionError("expected 404")
        except HTTPError as e:
            assert e.code == 404
    finally:
        worker.close()


def test_an_encounter_whose_coding_fails_is_dead_lettered_and_the_worker_goes_on(kafka_bootstrap, monkeypatch):
    import connectors.state

    settings = settings_for(kafka_bootstrap)
    truth = offline_truth()
    broken = sorted(truth)[0]
    real = connectors.state.code_encounter

    def code_encounter(encounter, *args, **kwargs):
        if encounter.id == broken:
            raise ZeroDivisionError("a defect in the rules")
        return real(encounter, *args, **kwargs)

    monkeypatch.setattr(connectors.state, "code_encounter", code_encounter)
    worker = Running(settings)
    try:
        produce(kafka_bootstrap, sample_messages(settings))
        others = {e: items for e, items in truth.items() if e != broken}

        def done(latest):
            return all(e in latest and billable(latest[e]) == items for e, items in others.items())

        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, done)
        assert done(latest) and broken not in latest
        got = dead_letters(kafka_bootstrap, settings.topics.dead_letter)
        headers = [dict(r.headers) for r in got]
        assert headers and all(h["error.type"] == b"CodingError" for h in headers)
        from connectors.ops import safe_id

        assert all(safe_id(broken).encode() in h["error.message"] and broken.encode() not in h["error.message"]
                   and b"ZeroDivisionError" in h["error.message"] for h in headers)  # named by digest, never its visit number
        assert all(h["source.topic"].decode() == settings.topics.events for h in headers)
        assert worker.thread.is_alive() and worker.worker.stats["coding_failures"] == len(got)
    finally:
        worker.close()


def test_a_record_after_the_retention_window_is_dead_lettered_not_rebilled(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, retention_days=1)
    skew = {"s": 0.0}
    worker = Running(settings, clock=lambda: time.time() + skew["s"])
    try:
        admin = r4(id="ma-ret-1", context={"reference": "Encounter/enc-ret"})
        close = {"resourceType": "Encounter", "id": "enc-ret", "status": "finished", "class": {"code": "AMB"}}
        produce(kafka_bootstrap, [(settings.topics.fhir_administrations, b"ma-ret-1", json.dumps(admin).encode()),
                                  (settings.topics.fhir_encounters, b"enc-ret", json.dumps(close).encode())])
        first = latest_revisions(kafka_bootstrap, settings.topics.charges, lambda lt: "enc-ret" in lt, timeout_s=60)
        assert first["enc-ret"]["meta"]["versionId"] == "1"
        skew["s"] = 2 * 86_400  # two days later the encounter is past its one-day retention
        time.sleep(2.5)  # a tick retires it
        late = r4(id="ma-ret-2", context={"reference": "Encounter/enc-ret"})
        produce(kafka_bootstrap, [(settings.topics.fhir_administrations, b"ma-ret-2", json.dumps(late).encode())])
        got = dead_letters(kafka_bootstrap, settings.topics.dead_letter)
        assert [dict(r.headers)["error.type"] for r in got] == [b"ArrivedAfterRetention"]
        from connectors.ops import safe_id

        message = dict(got[0].headers)["error.message"]
        assert safe_id("enc-ret").encode() in message and b"enc-ret" not in message  # named by its digest, not its visit number
        revisions = all_results(kafka_bootstrap, settings.topics.charges)
        assert {rev for enc, rev in revisions if enc == "enc-ret"} == {"1"}  # no new revision 1 or 2
    finally:
        worker.close()


@pytest.mark.parametrize("measured", [True, False], ids=["measured-grace", "fixed-grace"])
def test_live_traffic_closes_do_not_overtake_their_administrations(kafka_bootstrap, measured):
    """Feeds arrive on separate topics: a close must not be coded before the administrations
    sent ahead of it, or billing receives a partial bill and then corrections.  The promise
    holds for records that reach the broker within the grace of being stamped: here the
    worker, the broker and the producer share two cores, and produce requests took longer
    than the 100 ms default (a close then rightly overtakes, and the encounter is corrected
    in a second revision), so the grace is at most 1 s: measured (the default), or fixed."""
    from connectors.synthetic import generate, offline_charges

    settings = settings_for(kafka_bootstrap, hold_grace_ms=1000, hold_grace_measured=measured)
    messages = generate(80, "fhir", settings.topics, seed=11)
    truth = offline_charges(messages, settings.topics)
    worker = Running(settings)
    try:
        deadline = time.monotonic() + 60
        while not worker.worker.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        produce_from_another_process(kafka_bootstrap, messages)  # while the worker is reading: live traffic

        done = charged_as(truth)
        assert done(latest_revisions(kafka_bootstrap, settings.topics.charges, done))
        revisions = all_results(kafka_bootstrap, settings.topics.charges)
        assert sorted(rev for _, rev in revisions) == ["1"] * len(truth), "an encounter was billed before all its administrations"
    finally:
        worker.close()


def test_events_carry_an_encounters_records_together_and_older_or_broken_events_are_handled(kafka_bootstrap):
    """The events topic carries one message per encounter per poll batch; a message of the
    format before batching (one record) is still applied, and an unreadable record inside a
    batch is dead-lettered on its own while the rest of the batch is applied."""
    from connectors.intake import RECORDS
    from mapping.collector import FeedCollector
    from mapping.fhir_in import map_resource

    settings = settings_for(kafka_bootstrap)
    worker, messages, events = charge_backlog(kafka_bootstrap, settings)
    try:
        batches = [json.loads(r.value) for r in events]
        records = [(r.key.decode(), doc) for r, b in zip(events, batches, strict=True) for doc in b.get(RECORDS, [])]
        assert len(records) == len(messages)  # every mapped record, once
        assert all(Mapped.from_json(doc).key() == key for key, doc in records)  # a message holds its key's records only
        assert len(events) < len(records) / 3, "records were not sent together"

        admin = map_resource(r4(id="ma-legacy", context={"reference": "Encounter/enc-legacy"}))
        close = map_resource({"resourceType": "Encounter", "id": "enc-legacy", "status": "finished", "class": {"code": "AMB"}})
        broken = {"kind": "administration", "id": "ma-broken", "mode": "versioned", "version": [None, None],
                  "administration": {"encounter_id": "enc-phantom"}, "encounter": None}
        produce(kafka_bootstrap, [
            (settings.topics.events, b"enc-legacy", json.dumps(admin.to_json()).encode()),  # before batching
            (settings.topics.events, b"enc-legacy", json.dumps({RECORDS: [broken, close.to_json()]}).encode()),
        ])
        offline = FeedCollector()
        offline.offer(admin)
        offline.offer(close)
        (info, evs), = offline.by_encounter().values()
        expected = to_charge_items(code_encounter(info, evs, load_formulary(), Profile()), info, Profile(), evs)
        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, lambda lt: "enc-legacy" in lt, timeout_s=60)
        assert billable(latest["enc-legacy"]) == expected
        got = dead_letters(kafka_bootstrap, settings.topics.dead_letter)
        assert [json.loads(r.value) for r in got] == [broken]
        assert dict(got[0].headers)["source.topic"].decode() == settings.topics.events
        assert not any(store.get("enc-phantom") for _, store in worker.worker.stores.items())  # no state from it
        assert worker.thread.is_alive()
    finally:
        worker.close()


def _failing_charges(worker, settings, error, times):
    """The first ``times`` charges sends of ``worker`` fail with ``error``, as a producer
    reports a record the broker never acknowledged."""
    from kafka.future import Future

    real_send = worker.producer.send
    left = {"n": times}

    def send(topic, **kwargs):
        if topic == settings.topics.charges and left["n"] > 0:
            left["n"] -= 1
            future = Future()
            future.failure(error)
            return future
        return real_send(topic, **kwargs)

    worker.producer.send = send


def test_a_result_the_broker_did_not_acknowledge_is_produced_again_and_nothing_is_lost(kafka_bootstrap):
    """At-least-once must not rest on flush() alone: it returns when sends have *finished*,
    failed ones included.  A retriable failure (the broker did not answer in time) makes the
    worker repeat everything since its last commit, in-process, and go on -- even when the
    repeat itself first fails (the broker still away while the state is recovered)."""
    from kafka.errors import KafkaTimeoutError

    settings = settings_for(kafka_bootstrap)
    truth = offline_truth()
    worker = Running(settings)
    starts = {"n": 0}
    real_start = worker.worker.recovery.start

    def start(partitions):
        starts["n"] += 1
        if starts["n"] == 2:  # the first rewind's recovery
            raise KafkaTimeoutError("simulated: no answer while recovering")
        return real_start(partitions)

    worker.worker.recovery.start = start
    try:
        _failing_charges(worker.worker, settings, KafkaTimeoutError("simulated: batch expired before the broker acknowledged it"), 3)
        produce(kafka_bootstrap, sample_messages(settings))
        _wait_for_truth(kafka_bootstrap, settings, truth)
        assert worker.thread.is_alive() and worker.worker.stats["rewinds"] >= 1 and starts["n"] >= 3
    finally:
        worker.close()
    divergent = {k for k, v in all_results(kafka_bootstrap, settings.topics.charges).items() if len(v) > 1}
    assert divergent == set()


def test_a_result_the_broker_refuses_stops_the_worker_and_its_input_is_read_again(kafka_bootstrap):
    """A non-retriable failure stops the worker (fatal) before any offset past it is
    committed; the next worker reads the same input again and publishes everything."""
    from kafka.errors import TopicAuthorizationFailedError

    from connectors.errors import DeliveryFailed, classify

    settings = settings_for(kafka_bootstrap)
    truth = offline_truth()
    with thread_errors() as errors:
        failing = Running(settings)
        _failing_charges(failing.worker, settings, TopicAuthorizationFailedError("simulated"), 10**6)
        produce(kafka_bootstrap, sample_messages(settings))
        failing.thread.join(60)
        assert not failing.thread.is_alive() and errors, errors
        assert isinstance(errors[0], DeliveryFailed) and classify(errors[0]) == "fatal"
    assert all_results(kafka_bootstrap, settings.topics.charges) == {}
    worker = Running(settings)  # the same group: reads from what was committed
    try:
        _wait_for_truth(kafka_bootstrap, settings, truth)
    finally:
        worker.close()


def test_a_revision_too_large_to_publish_is_dead_lettered_and_the_encounter_left_as_published(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, max_revision_bytes=4096)
    truth = offline_truth()
    worker = Running(settings)
    try:
        produce(kafka_bootstrap, sample_messages(settings))
        from connectors.codec import published_json as _json
        from mapping.chargeitem_out import revision_bundle

        small = {e for e, items in truth.items() if len(_json(revision_bundle(e, 1, items))) <= 4096}
        got = dead_letters(kafka_bootstrap, settings.topics.dead_letter, at_least=len(truth) - len(small))
        too_large = [dict(r.headers) for r in got if dict(r.headers)["error.type"] == b"RevisionTooLarge"]
        assert len(too_large) == len(truth) - len(small) > 0
        assert all(b"max_revision_bytes 4096" in h["error.message"] for h in too_large)
        published = all_results(kafka_bootstrap, settings.topics.charges)
        assert {enc for enc, _ in published} <= small  # nothing too large was published
        assert all(len(v) <= 4096 for values in published.values() for v in values)
        assert worker.thread.is_alive() and worker.worker.stats["revisions_too_large"] == len(too_large)
    finally:
        worker.close()


def test_a_dead_letter_too_large_for_its_topic_keeps_its_reason_not_its_bytes(kafka_bootstrap):
    """A message over max_dead_letter_bytes is dead-lettered without its bytes, which the
    dead-letter topic could refuse (the worker would then stop on it after every restart);
    the headers give its size and where it stays.  The worker goes on."""
    settings = settings_for(kafka_bootstrap, max_message_bytes=64 * 1024, max_dead_letter_bytes=16 * 1024)
    truth = offline_truth()
    worker = Running(settings)
    try:
        topic = settings.topics.fhir_administrations
        small = (topic, b"small", b"{not json")
        unreadable = (topic, b"unreadable", b"{not json" + b" " * 20_000)  # under max_message_bytes: parsed, fails
        oversized = (topic, b"oversized", json.dumps(r4(id="oversized", note=[{"text": "x" * 70_000}])).encode())
        produce(kafka_bootstrap, [small, unreadable, oversized, *sample_messages(settings)])
        _wait_for_truth(kafka_bootstrap, settings, truth)

        got = {r.key: r for r in dead_letters(kafka_bootstrap, settings.topics.dead_letter, at_least=3)}
        assert got[b"small"].value == small[2] and "value.omitted" not in dict(got[b"small"].headers)
        for key, message, error_type in ((b"unreadable", unreadable, b"MappingError"), (b"oversized", oversized, b"OversizedMessage")):
            headers = dict(got[key].headers)
            assert got[key].value is None and headers["error.type"] == error_type
            assert headers["value.omitted"].startswith(f"{len(message[2])} bytes, over max_dead_letter_bytes 16384".encode())
            assert headers["source.topic"] == topic.encode() and int(headers["source.offset"]) >= 0
    finally:
        worker.close()


def test_events_messages_stay_under_their_byte_limit(kafka_bootstrap, monkeypatch):
    """An events message holds at most EVENT_BYTES of records (one larger record goes alone):
    a batch over the topic's max.message.bytes would be refused and stop the worker on every
    restart.  Split batches still carry every record once, in order, to the same result."""
    import connectors.intake as intake_module
    from connectors.intake import RECORDS

    limit = 4096
    monkeypatch.setattr(intake_module, "EVENT_BYTES", limit)
    worker, messages, events = charge_backlog(kafka_bootstrap, settings_for(kafka_bootstrap))
    try:
        sizes = [(len(r.value), len(json.loads(r.value)[RECORDS])) for r in events]
        assert sum(n for _, n in sizes) == len(messages)  # every mapped record, once
        assert all(size <= limit or n == 1 for size, n in sizes), max(sizes)
        assert any(n > 1 for _, n in sizes) and any(size > limit / 2 for size, _ in sizes)  # still batched, near the limit
    finally:
        worker.close()


def test_an_encounter_too_large_to_write_is_blocked_alone_and_nothing_of_it_is_dropped(kafka_bootstrap, caplog):
    """One encounter whose state outgrows max_state_bytes is blocked: the records that made it
    so are dead-lettered (StateTooLarge), later records for it too (EncounterBlocked), an ERROR
    log names it by a safe id, and every other encounter is charged once -- no restart loop,
    no re-published revisions."""
    from connectors.codec import loads
    from connectors.ops import safe_id

    settings = settings_for(kafka_bootstrap, max_state_bytes=32 * 1024)
    truth = offline_truth()
    big = [r4_bulky(i, context={"reference": "Encounter/enc-big"}) for i in range(120)]
    sent_ids = {a["id"] for a in big}
    close = {"resourceType": "Encounter", "id": "enc-big", "status": "finished", "class": {"code": "AMB"}}
    worker = Running(settings)
    try:
        t = settings.topics
        produce(kafka_bootstrap, [(t.fhir_administrations, a["id"].encode(), json.dumps(a).encode()) for a in big]
                + sample_messages(settings) + [(t.fhir_encounters, b"enc-big", json.dumps(close).encode())])
        _wait_for_truth(kafka_bootstrap, settings, truth)
        deadline = time.monotonic() + 30
        while worker.worker.stats["blocked"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        late = r4(id="ma-big-late", context={"reference": "Encounter/enc-big"})
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-big-late", json.dumps(late).encode())])
        got = dead_letters(kafka_bootstrap, t.dead_letter, at_least=2)
        deadline = time.monotonic() + 30
        while not any(dict(r.headers)["error.type"] == b"EncounterBlocked" for r in got) and time.monotonic() < deadline:
            got = dead_letters(kafka_bootstrap, t.dead_letter, at_least=len(got) + 1, timeout_s=2)
        types = [dict(r.headers)["error.type"] for r in got]
        # the close may come in the same batch as the administrations: its revision is too large
        # to publish first, then the state too large to write
        assert b"StateTooLarge" in types and b"EncounterBlocked" in types, types
        assert set(types) <= {b"StateTooLarge", b"RevisionTooLarge", b"EncounterBlocked"}, types
        assert all(b"over max_state_bytes 32768" in dict(r.headers)["error.message"] for r in got if dict(r.headers)["error.type"] == b"StateTooLarge")
        assert len({r.value for r in got}) == len(got), "each record dead-lettered once"

        # nothing silently dropped: every record of the encounter is in its kept state or dead-lettered
        kept = None
        for _, store in worker.worker.stores.items():
            kept = kept or store.get("enc-big")
        assert kept is not None and kept.blocked and "over max_state_bytes" in kept.blocked
        held_ids = {k.split(":", 1)[1] for k in kept.records if k.startswith("administration:")}
        lettered = {loads(r.value)["id"] for r in got if r.value is not None}
        assert held_ids | lettered >= sent_ids | {"ma-big-late"} and "enc-big" in lettered
        assert "enc-big" not in {enc for enc, _ in all_results(kafka_bootstrap, t.charges)}

        errors = [r for r in caplog.records if r.levelname == "ERROR" and "blocked" in r.getMessage()]
        assert errors and all(safe_id("enc-big") in r.getMessage() and "enc-big" not in r.getMessage() for r in errors)
        assert worker.thread.is_alive()
        worker.worker.ticker.tick(worker.worker.consumer, worker.worker._recovered(), worker.worker.positions.positioned())
        text = worker.worker.metrics.render().decode()
        assert "infusion_charges_encounters_blocked 1.0" in text
    finally:
        worker.close()
    published = _messages_per_encounter(kafka_bootstrap, settings.topics.charges)
    assert published == {e: 1 for e in truth}, "every other encounter published once"


def _messages_per_encounter(bootstrap, topic):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=2000)
    counts: dict[str, int] = {}
    for r in consumer:
        counts[r.key.decode()] = counts.get(r.key.decode(), 0) + 1
    consumer.close()
    return counts
