"""What a real deployment does to the worker: deploys and autoscaling while traffic flows,
a broker that pauses or loses its data, topics that contradict the settings, a stop under a
deadline.  Worker processes as pods run them (each its own state directory and metrics
port); the broker is the session's, or one of the test's own when the test pauses or
restarts it."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.admin import NewTopic

from connectors.broker import EmbeddedBroker
from connectors.synthetic import generate, offline_charges
from tests.pipeline_helpers import (
    WorkerProcess,
    all_results,
    billable,
    charged_as,
    latest_revisions,
    offline_truth,
    produce,
    produce_paced,
    sample_messages,
    settings_for,
)


def _assert_charged_once(bootstrap, settings, truth, timeout_s=180):
    done = charged_as(truth)
    latest = latest_revisions(bootstrap, settings.topics.charges, done, timeout_s)
    lost = sorted(e for e in truth if e not in latest or billable(latest[e]) != truth[e])
    assert lost == [], f"{len(lost)} of {len(truth)} encounters differ from the offline result"
    divergent = [k for k, v in all_results(bootstrap, settings.topics.charges).items() if len(v) > 1]
    assert divergent == [], "a repeated revision must be byte-identical"


@pytest.fixture
def own_broker():
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


def test_workers_joining_and_leaving_while_traffic_flows_charge_every_encounter_as_offline(kafka_bootstrap, tmp_path):
    """A deploy and an autoscale under traffic: a second and a third worker join, the first
    leaves (SIGTERM), while a feed produces.  Revocation checkpoints and hands partitions over;
    every encounter equals the offline truth, no repeated revision differs, and every worker
    ends cleanly."""
    settings = settings_for(kafka_bootstrap, partitions=6, hold_grace_ms=1000, session_timeout_ms=6000, max_poll_interval_ms=8000)
    messages = generate(30, "fhir", settings.topics, seed=13) + generate(30, "hl7", settings.topics, seed=13)
    truth = offline_charges(messages, settings.topics)
    workers = [WorkerProcess(settings, tmp_path, "a")]
    feed = None
    try:
        workers[0].wait_ready()
        feed = produce_paced(kafka_bootstrap, messages, 50)
        time.sleep(4)
        workers.append(WorkerProcess(settings, tmp_path, "b"))  # joins: partitions move under traffic
        time.sleep(6)
        workers.append(WorkerProcess(settings, tmp_path, "c"))
        for w in workers:  # tansu wedges a group when a member leaves while another's join is in progress
            w.wait_ready(120)
        assert feed.poll() is None, "the feed ended before the first worker left: lengthen it"
        code, took = workers[0].terminate()  # leaves under traffic: its partitions go to the others
        assert code == 0 and took < settings.shutdown_timeout_s + 5, (code, took, workers[0].tail())
        assert feed.wait(timeout=120) == 0
        _assert_charged_once(kafka_bootstrap, settings, truth)
        for w in workers[1:]:
            assert w.proc.poll() is None, f"{w.name} stopped:\n{w.tail()}"
            w.wait_ready(60)
            assert w.alive()
    finally:
        if feed is not None and feed.poll() is None:
            feed.kill()
        results = [w.terminate() if w.proc.poll() is None else (w.proc.returncode, 0.0) for w in workers]
    assert [code for code, _ in results] == [0, 0, 0], [w.tail() for w in workers]
    failures = [r for w in workers for r in w.records() if r["level"] in ("ERROR", "RAW")]
    assert failures == []


def test_a_broker_pause_mid_stream_is_ridden_out(own_broker, tmp_path):
    """The broker stops answering (SIGSTOP) for longer than the session timeout and the
    delivery timeout while records flow: the worker backs off, repeats what was not
    acknowledged, rejoins the group and charges everything -- it never exits."""
    bootstrap = own_broker.bootstrap
    # A fixed grace of 4 s: the first half's closes (stamped before the 1 s sleep) are still held
    # when the broker stops, however long the produce took under load, so the hold asks a broker
    # that does not answer: work is in flight.
    settings = settings_for(bootstrap, request_timeout_ms=3000, delivery_timeout_ms=6000, hold_grace_ms=4000,
                            hold_grace_measured=False)
    messages = generate(30, "fhir", settings.topics, seed=17)
    truth = offline_charges(messages, settings.topics)
    worker = WorkerProcess(settings, tmp_path, "w")
    try:
        worker.wait_ready()
        produce(bootstrap, messages[: len(messages) // 2])
        time.sleep(1.0)  # mid-stream
        own_broker.pause()
        time.sleep(15)
        assert worker.proc.poll() is None, worker.tail()
        own_broker.resume()
        produce(bootstrap, messages[len(messages) // 2:])
        _assert_charged_once(bootstrap, settings, truth)
        assert worker.proc.poll() is None, worker.tail()
        worker.wait_ready(60)
    finally:
        own_broker.resume()
        code, _ = worker.terminate()
    assert code == 0
    records = worker.records()
    assert [r for r in records if r["level"] in ("ERROR", "RAW")] == []
    ridden = [r for r in records if r.get("action") in ("retry", "rewind")]
    assert ridden, "the pause was not noticed"
    assert all(isinstance(r.get("error_type"), str) for r in ridden)


def test_sigterm_completes_within_the_bound_even_with_the_broker_paused(own_broker, tmp_path):
    """A stop while the broker does not answer: the worker gives up on what it cannot
    commit and exits within shutdown_timeout_s; the next worker repeats the uncommitted work."""
    bootstrap = own_broker.bootstrap
    settings = settings_for(bootstrap, shutdown_timeout_s=8)
    truth = offline_truth()
    first = WorkerProcess(settings, tmp_path, "first")
    try:
        first.wait_ready()
        produce(bootstrap, sample_messages(settings))
        time.sleep(0.5)
        own_broker.pause()
        code, took = first.terminate(timeout_s=60)
    finally:
        own_broker.resume()
        first.kill()
    assert took < 8 + 3, f"stop took {took:.1f} s:\n{first.tail()}"
    assert code in (0, 2)
    second = WorkerProcess(settings, tmp_path, "second", state_dir=tmp_path / "first-state")
    try:
        _assert_charged_once(bootstrap, settings, truth)
    finally:
        second.terminate()


def test_an_unreachable_broker_is_one_json_error_line_and_exit_2(tmp_path):
    from connectors.broker import free_port

    settings = settings_for(f"127.0.0.1:{free_port()}", bootstrap_timeout_ms=2000, request_timeout_ms=2000)
    worker = WorkerProcess(settings, tmp_path, "w")
    assert worker.proc.wait(timeout=60) == 2
    text = worker.log.read_text()
    assert "Traceback" not in text
    assert all(json.loads(line) for line in text.splitlines())  # every line JSON
    errors = [r for r in worker.records() if r["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["error_type"] == "KafkaTimeoutError", text[-2000:]


def test_topics_that_contradict_the_settings_stop_the_worker_before_it_consumes(kafka_bootstrap, tmp_path):
    settings = settings_for(kafka_bootstrap, partitions=3)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(settings.topics.events, 4, 1)])  # created by hand with another count
    admin.close()
    worker = WorkerProcess(settings, tmp_path, "w")
    assert worker.proc.wait(timeout=60) == 2
    (error,) = [r for r in worker.records() if r["level"] == "ERROR"]
    assert error["error_type"] == "TopicMismatch"
    assert settings.topics.events in error["message"] and "4 partitions" in error["message"] and "partitions is 3" in error["message"]


def test_with_create_topics_off_missing_topics_stop_the_worker_and_none_is_created(kafka_bootstrap, tmp_path):
    settings = settings_for(kafka_bootstrap, create_topics=False)
    t = settings.topics
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, 3, 1) for name in t.inputs()])  # the feeds exist; nothing of the worker's own
    worker = WorkerProcess(settings, tmp_path, "w")
    assert worker.proc.wait(timeout=60) == 2
    (error,) = [r for r in worker.records() if r["level"] == "ERROR"]
    assert error["error_type"] == "TopicMismatch" and "created by the cluster's operators" in error["message"]
    missing = (t.events, t.state, t.charges, t.dead_letter, t.fhir_medications)
    assert all(name in error["message"] for name in missing)
    assert not set(missing) & set(admin.list_topics())  # it created none of them
    admin.close()


def test_a_committed_offset_past_the_log_end_is_data_loss_not_a_fresh_start(kafka_bootstrap, tmp_path):
    """The broker lost records this group had committed past: the worker refuses to start the
    partition again from its beginning (which would bill encounters again at revision 1)."""
    settings = settings_for(kafka_bootstrap)
    from connectors.topics import prepare_topics

    prepare_topics(settings)
    tp = TopicPartition(settings.topics.fhir_administrations, 1)
    committer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=settings.group_id, enable_auto_commit=False)
    committer.assign([tp])
    committer.commit({tp: OffsetAndMetadata(500, None, -1)})
    committer.close()
    worker = WorkerProcess(settings, tmp_path, "w")
    assert worker.proc.wait(timeout=90) == 2
    (error,) = [r for r in worker.records() if r["level"] == "ERROR"]
    assert error["error_type"] == "DataLoss" and f"{tp.topic}[1]" in error["message"] and "500" in error["message"]


def test_a_broker_that_lost_its_data_is_detected_from_the_local_state_store(own_broker, tmp_path):
    """The broker comes back empty and the topics are created again with the same partition
    counts: the worker's volume still holds the states it wrote, so it knows the changelog it
    reads now is not the one it filled -- it stops instead of starting encounters again."""
    bootstrap = own_broker.bootstrap
    settings = settings_for(bootstrap)
    truth = offline_truth()
    first = WorkerProcess(settings, tmp_path, "first")
    try:
        first.wait_ready()
        produce(bootstrap, sample_messages(settings))
        _assert_charged_once(bootstrap, settings, truth)
    finally:
        assert first.terminate()[0] == 0
    own_broker.restart()
    again = WorkerProcess(settings, tmp_path, "again", state_dir=tmp_path / "first-state")
    assert again.proc.wait(timeout=90) == 2
    (error,) = [r for r in again.records() if r["level"] == "ERROR"]
    assert error["error_type"] == "DataLoss" and "broker lost data" in error["message"], error
    assert all_results(bootstrap, settings.topics.charges) == {}, "nothing was billed again"


def _memory(worker):
    return sum(len(list(store.in_memory())) for _, store in worker.worker.stores.items())


def _restored(worker):
    return worker.worker.metrics.restored._value.get()


def _wait(predicate, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_closed_encounters_live_on_disk_and_a_restart_with_its_volume_reads_only_the_changelog_tail(kafka_bootstrap, tmp_path,
                                                                                                    monkeypatch):
    import threading

    from connectors.recovery import Recovery
    from tests.pipeline_helpers import Running
    from tests.test_fhir_in import r4

    threads: set[str] = set()
    start, step = Recovery.start, Recovery.step
    monkeypatch.setattr(Recovery, "start", lambda self, p: (threads.add(threading.current_thread().name), start(self, p))[1])
    monkeypatch.setattr(Recovery, "step", lambda self, b: (threads.add(threading.current_thread().name), step(self, b))[1])

    settings = settings_for(kafka_bootstrap)
    truth = offline_truth()
    volume = tmp_path / "volume"
    first = Running(settings, state_dir=volume)
    try:
        produce(kafka_bootstrap, sample_messages(settings))
        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, charged_as(truth))
        _wait(lambda: _memory(first) == 0)  # every encounter closed: none held in memory
        on_disk = {}
        for _, store in first.worker.stores.items():
            for standing, n in store.counts().items():
                on_disk[standing] = on_disk.get(standing, 0) + n
        assert on_disk == {"closed": len(truth)}
    finally:
        first.close()
    assert threads and not any(name.startswith("kafka") for name in threads), threads  # never in a rebalance callback

    again = Running(settings, state_dir=volume)  # the same volume: nothing after its checkpoint to read
    try:
        _wait(lambda: again.worker.ready)
        assert _restored(again) == 0
    finally:
        again.close()

    fresh = Running(settings)  # a new volume: the whole changelog
    try:
        _wait(lambda: fresh.worker.ready)
        assert _restored(fresh) >= len(truth)
        before = latest["enc-onc-5001"]
        late = r4(id="ma-5001-late-2", context={"reference": "Encounter/enc-onc-5001"}, subject={"reference": "Patient/pat-1001"})
        produce(kafka_bootstrap, [(settings.topics.fhir_administrations, b"ma-5001-late-2", json.dumps(late).encode())])
        rev = int(before["meta"]["versionId"])
        after = latest_revisions(kafka_bootstrap, settings.topics.charges, lambda lt: int(lt["enc-onc-5001"]["meta"]["versionId"]) > rev, 60)
        assert int(after["enc-onc-5001"]["meta"]["versionId"]) == rev + 1  # the state read back from disk continues
        _wait(lambda: _memory(fresh) == 0, 10)  # written, then out of memory again
    finally:
        fresh.close()


def test_the_worker_is_not_ready_until_its_state_is_recovered(kafka_bootstrap, monkeypatch):
    from connectors.recovery import Recovery
    from tests.pipeline_helpers import Running

    step = Recovery.step
    gate = {"open": False}
    monkeypatch.setattr(Recovery, "step", lambda self, budget: step(self, budget) if gate["open"] else [])
    worker = Running(settings_for(kafka_bootstrap))
    try:
        _wait(lambda: worker.worker.assignments.settled)
        time.sleep(1.0)
        assert worker.worker.recovery.pending and not worker.worker.ready and worker.worker.alive()
        gate["open"] = True
        _wait(lambda: worker.worker.ready, 30)
    finally:
        worker.close()


def test_repartition_moves_the_internal_topics_to_a_new_count_and_encounters_continue(kafka_bootstrap, tmp_path):
    """Growing partitions is a migration: with the workers stopped, the changelog and the
    events not yet applied are copied into new topics with the new count; a worker on the new
    topics continues every encounter (a closed one takes a late administration as its next
    revision, an open one closes with the administrations it had)."""
    from connectors.cli import main
    from connectors.intake import RECORDS
    from mapping.fhir_in import map_resource
    from tests.pipeline_helpers import Running, write_config
    from tests.test_fhir_in import r4

    settings = settings_for(kafka_bootstrap, partitions=2)
    truth = offline_truth()
    first = Running(settings)
    try:
        produce(kafka_bootstrap, sample_messages(settings))
        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, charged_as(truth))
    finally:
        first.close()
    # an open encounter's administration left in the events topic, not applied before the stop
    pending = map_resource(r4(id="ma-open-1", context={"reference": "Encounter/enc-open"}))
    produce(kafka_bootstrap, [(settings.topics.events, b"enc-open", json.dumps({RECORDS: [pending.to_json()]}).encode())])

    config = write_config(settings, tmp_path / "worker.yaml")
    new_events, new_state = settings.topics.events + ".p5", settings.topics.state + ".p5"
    argv = ["repartition", "--config", str(config), "--partitions", "5", "--events-topic", new_events, "--state-topic", new_state]
    assert main([*argv, "--assume-stopped"]) == 0
    assert main([*argv, "--assume-stopped"]) == 2  # the new topics exist now: never written into twice

    moved = settings.model_copy(update={"partitions": 5, "topics": settings.topics.model_copy(update={"events": new_events,
                                                                                                      "state": new_state})})
    worker = Running(moved)
    try:
        _wait(lambda: worker.worker.ready)
        t = settings.topics
        late = r4(id="ma-5001-late-3", context={"reference": "Encounter/enc-onc-5001"}, subject={"reference": "Patient/pat-1001"})
        close = {"resourceType": "Encounter", "id": "enc-open", "status": "finished", "class": {"code": "AMB"}}
        produce(kafka_bootstrap, [(t.fhir_administrations, b"ma-5001-late-3", json.dumps(late).encode()),
                                  (t.fhir_encounters, b"enc-open", json.dumps(close).encode())])
        rev = int(latest["enc-onc-5001"]["meta"]["versionId"])
        after = latest_revisions(kafka_bootstrap, t.charges, lambda lt: "enc-open" in lt and int(lt["enc-onc-5001"]["meta"]["versionId"]) > rev, 60)
        assert int(after["enc-onc-5001"]["meta"]["versionId"]) == rev + 1
        assert {e["resource"]["code"]["coding"][0]["code"] for e in after["enc-open"]["entry"]} >= {"96413"}
    finally:
        worker.close()
