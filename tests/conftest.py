"""Shared fixtures.  ``kafka_bootstrap``: a real Kafka-protocol broker, chosen in order:
``KAFKA_BOOTSTRAP_SERVERS`` (a real cluster), a testcontainers Kafka when a Docker engine
answers, else the embedded tansu broker (see connectors/broker.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # no client library, no socket, no engine: all mean "no Docker"
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from connectors.broker import embedded_broker

    with embedded_broker() as bootstrap:
        yield bootstrap
