"""The Kafka pipeline end to end against a real broker (see conftest.kafka_bootstrap)."""

from __future__ import annotations

import time

from kafka import KafkaConsumer

from tests.pipeline_helpers import Running, billable, latest_revisions, offline_truth, produce, sample_messages, settings_for


def test_end_to_end_equals_the_offline_code_result_and_poison_is_dead_lettered(kafka_bootstrap):
    settings = settings_for(kafka_bootstrap)
    truth = offline_truth()
    worker = Running(settings)
    try:
        messages = sample_messages(settings)
        poison = [
            (settings.topics.fhir_administrations, b"p1", b"{not json"),
            (settings.topics.hl7_ras, None, b"MSH|^~\\&|X|Y|Z|W|20261109||RAS^O17|POISON1|P|2.5\rPV1|1|O\rRXA|0|1"),
        ]
        produce(kafka_bootstrap, messages + poison)

        def done(latest):
            return set(latest) == set(truth) and all(billable(latest[e]) == truth[e] for e in truth)

        latest = latest_revisions(kafka_bootstrap, settings.topics.charges, done)
        assert set(latest) == set(truth)
        for enc, items in truth.items():
            assert billable(latest[enc]) == items, enc
            assert latest[enc]["type"] == "transaction"

        dlq = KafkaConsumer(settings.topics.dead_letter, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                            group_id=None, enable_auto_commit=False)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            for records in dlq.poll(500).values():
                got.extend(records)
        dlq.close()
        assert sorted(r.value for r in got) == sorted(v for _, _, v in poison)  # the original bytes
        for r in got:
            headers = dict(r.headers)
            assert headers["source.topic"].decode() in (settings.topics.fhir_administrations, settings.topics.hl7_ras)
            assert headers["error.type"] == b"MappingError" and headers["error.message"]
            assert b"DOE" not in headers["error.message"]
        assert any(b"POISON1" in dict(r.headers)["error.message"] for r in got)
    finally:
        worker.close()
