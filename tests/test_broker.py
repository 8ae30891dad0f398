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


def test_the_group_consumer_fetches_as_the_settings_say(kafka_bootstrap):
    """fetch_min_bytes and fetch_max_wait_ms reach the consumer (docs/performance.md: they set
    the worker's CPU under a light feed, and its latency)."""
    from connectors.clients import make_consumer
    from connectors.settings import Settings

    consumer = make_consumer(Settings(bootstrap_servers=kafka_bootstrap, fetch_min_bytes=16384, fetch_max_wait_ms=40,
                                      metrics_port=None))
    try:
        assert (consumer.config["fetch_min_bytes"], consumer.config["fetch_max_wait_ms"]) == (16384, 40)
    finally:
        consumer.close()
