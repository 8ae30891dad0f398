"""``infusion-charges repartition``: the internal topics moved to a new partition count.

An encounter's events partition is its id's hash modulo the events topic's partition count,
and its state lives in the changelog partition of the same number: adding partitions to the
events and state topics in place would detach encounters from their states (the worker
refuses to start on such topics).  This command copies, with the workers stopped:

* the whole changelog, every record in order, into a new state topic with the new count --
  each encounter's records land, still in order, in the partition its id now hashes to, so the
  compacted topic ends with every encounter's latest state;
* the events the group has not applied yet (from its committed offsets to the end) into a new
  events topic, keyed as before, so each encounter's pending history stays in order.

Input topics and their committed offsets are untouched.  A state written ahead of the
committed events (a worker stopped between the two) meets those events again after the move
and takes them as duplicates, as after a crash.  Then the configuration names the new topics
and count, and the workers start (each reads the new changelog into a new local store).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from connectors.clients import LogEnds, make_reader, records_between
from connectors.errors import WorkerFailed
from connectors.settings import Settings
from connectors.topics import SIZE_MARGIN, describe

log = logging.getLogger("infusion_charges.repartition")


@dataclass
class Moved:
    state_records: int = 0
    events_records: int = 0


def group_members(settings: Settings) -> int | None:
    """Members of the worker group, or None when the broker cannot say."""
    admin = KafkaAdminClient(**settings.kafka_config())
    try:
        (group,) = admin.describe_groups([settings.group_id])
        members = group.get("members") if isinstance(group, dict) else getattr(group, "members", None)
        return None if members is None else len(members)
    except Exception:  # e.g. the embedded broker's answer kafka-python cannot read
        return None
    finally:
        admin.close()


def repartition(settings: Settings, partitions: int, events_topic: str, state_topic: str, assume_stopped: bool = False) -> Moved:
    old = settings.topics
    if {events_topic, state_topic} & {old.events, old.state, *old.inputs(), old.charges, old.dead_letter}:
        raise WorkerFailed("the new events and state topics must be new names, not topics the worker already uses")
    members = group_members(settings)
    if members:
        raise WorkerFailed(f"group {settings.group_id} has {members} members: stop every worker first")
    if members is None and not assume_stopped:
        raise WorkerFailed(f"the broker cannot say whether group {settings.group_id} has members: stop every worker, "
                           "then run again with --assume-stopped")
    admin = KafkaAdminClient(**settings.kafka_config())
    try:
        if {events_topic, state_topic} & set(admin.list_topics()):
            raise WorkerFailed(f"{events_topic} or {state_topic} exists already: the migration writes into new topics only")
        info = describe(admin, [old.events, old.state])
        admin.create_topics([
            NewTopic(events_topic, partitions, settings.replication_factor),
            NewTopic(state_topic, partitions, settings.replication_factor,
                     topic_configs={"cleanup.policy": "compact", "max.message.bytes": str(settings.max_state_bytes + SIZE_MARGIN)}),
        ])
    finally:
        admin.close()
    moved = Moved()
    producer = KafkaProducer(**settings.kafka_config(), acks="all", enable_idempotence=True, linger_ms=20,
                             max_request_size=max(1_048_576, settings.max_state_bytes) + SIZE_MARGIN)
    committed_reader = KafkaConsumer(**settings.kafka_config(), group_id=settings.group_id, enable_auto_commit=False)
    log_ends, reader = LogEnds(settings), make_reader(settings)
    try:
        state_tps = [TopicPartition(old.state, p) for p in range(info[old.state].partitions)]
        moved.state_records = _copy(reader, producer, {tp: 0 for tp in state_tps}, log_ends(state_tps), state_topic)
        events_tps = [TopicPartition(old.events, p) for p in range(info[old.events].partitions)]
        start = {tp: committed_reader.committed(tp) or 0 for tp in events_tps}
        moved.events_records = _copy(reader, producer, start, log_ends(events_tps), events_topic)
        producer.flush()
    finally:
        producer.close()
        committed_reader.close()
        reader.close()
        log_ends.close()
    return moved


def _copy(reader: KafkaConsumer, producer: KafkaProducer, start: dict[TopicPartition, int], ends: dict[TopicPartition, int],
          to_topic: str) -> int:
    """Every record of each partition from ``start`` to its end, in order, keyed as it was."""
    copied = 0
    futures = []
    for r in records_between(reader, start, ends):
        futures.append(producer.send(to_topic, key=r.key, value=r.value, headers=list(r.headers or [])))
        copied += 1
    producer.flush()
    failed = [f for f in futures if f.failed()]
    if failed:
        raise WorkerFailed(f"{len(failed)} records not acknowledged while copying into {to_topic} ({type(failed[0].exception).__name__}): "
                           "delete the new topics and run again")
    return copied
