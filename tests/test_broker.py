"""The broker fixture gives a working Kafka-protocol broker: topics, keyed produce, group consume."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic


def test_broker_round_trip(kafka_bootstrap):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    sent = {f"enc-{i % 3}".encode(): [] for i in range(9)}
    for i in range(9):
        key = f"enc-{i % 3}".encode()
        sent[key].append(f"v{i}".encode())
        producer.send(topic, key=key, value=f"v{i}".encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                             max_poll_interval_ms=6000)
    got: dict[bytes, list[bytes]] = {}
    deadline = time.monotonic() + 60
    while sum(map(len, got.values())) < 9 and time.monotonic() < deadline:
        for records in consumer.poll(500).values():
            for r in records:
                got.setdefault(r.key, []).append(r.value)
    consumer.close()
    assert got == sent  # per key, in order: one encounter's history stays in one partition
