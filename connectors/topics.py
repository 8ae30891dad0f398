"""The worker's topics: created when missing, checked against the settings when present.

With ``create_topics`` off the worker creates nothing: the cluster's operators create the
topics, and a missing one is a :class:`TopicMismatch` naming every topic that is missing.

Checked before the worker consumes anything; a contradiction is a :class:`TopicMismatch`
(``run`` exits 2 naming the topic and the setting):

* the events and state topics have ``partitions`` partitions each: an encounter's state is
  looked up by its events partition, so a different count -- a topic created again after the
  broker lost it, or partitions added -- would detach every encounter from its state
  (growing partitions is a migration: see docs/operations.md);
* the state topic is compacted (it is the changelog) and the events topic is not (compaction
  by encounter id would delete all but an encounter's last events message); the Medication
  reference topic is compacted (a table: the latest Medication per id);
* the events topic keeps records at least ``MIN_EVENTS_RETENTION_MS`` (or forever): a worker
  that was down longer than that would find the events it had not applied gone;
* each produced topic's ``max.message.bytes`` admits the worker's own size limit for it.

Config checks need the broker to report topic configs (Kafka does; the embedded tansu broker
reports none, and then only the partition counts are checked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from connectors.errors import TopicMismatch
from connectors.settings import Settings

log = logging.getLogger("infusion_charges.worker")
MIN_EVENTS_RETENTION_MS = 86_400_000  # one day
SIZE_MARGIN = 65_536  # what the worker adds to a size limit when it creates a topic
CHECK_MARGIN = 8_192  # what it needs over a value's size on an existing topic (record, headers, batch)


@dataclass(frozen=True)
class TopicInfo:
    partitions: int
    topic_id: str | None = None
    configs: dict[str, str] = field(default_factory=dict)  # empty: the broker reports none


def wanted_configs(settings: Settings) -> dict[str, dict[str, str]]:
    t = settings.topics
    return {t.events: {}, t.charges: {}, t.dead_letter: {},
            t.state: {"cleanup.policy": "compact", "max.message.bytes": str(settings.max_state_bytes + SIZE_MARGIN)},
            t.fhir_medications: {"cleanup.policy": "compact"},  # a table: the latest Medication per id, kept
            **{name: {} for name in t.inputs()}}


def topics_to_create(settings: Settings, existing: set[str]) -> list[NewTopic]:
    """The topics the worker must create: those of :func:`wanted_configs` not in ``existing``.

    With ``create_topics`` off there are none to create, and any missing topic is a
    :class:`TopicMismatch` naming each one (with the settings it needs)."""
    wanted = wanted_configs(settings)
    missing = [name for name in wanted if name not in existing]
    if missing and not settings.create_topics:
        t = settings.topics
        needs = []
        for name in missing:
            parts = [f"{k}={v}" for k, v in wanted[name].items()]
            if name in (t.events, t.state):
                parts.insert(0, f"{settings.partitions} partitions")
            if name == t.events:
                parts.append(f"retention.ms >= {MIN_EVENTS_RETENTION_MS} or -1, not compacted")
            needs.append(f"{name} ({', '.join(parts)})" if parts else name)
        raise TopicMismatch(f"missing {'topic' if len(missing) == 1 else f'{len(missing)} topics'}: {'; '.join(needs)}. "
                            "create_topics is off, so the worker creates no topic: they must be created by the cluster's "
                            "operators (the chart README lists each topic and its settings)")
    return [NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=wanted[name]) for name in missing]


def prepare_topics(settings: Settings) -> dict[str, TopicInfo]:
    """Create missing topics (unless ``create_topics`` is off), then describe and check all of them."""
    admin = KafkaAdminClient(**settings.kafka_config(), request_timeout_ms=settings.request_timeout_ms)
    try:
        wanted = wanted_configs(settings)
        new = topics_to_create(settings, set(admin.list_topics()))
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
            log.info("created %d topics", len(new), extra={"topics": [n.name for n in new]})
        info = describe(admin, list(wanted))
    finally:
        admin.close()
    verify(settings, info)
    return info


def describe(admin: KafkaAdminClient, names: list[str]) -> dict[str, TopicInfo]:
    described = {d["name"]: d for d in admin.describe_topics(names)}
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names], config_filter="all")
    by_topic = configs.get("topic", {}) if isinstance(configs, dict) else {}
    out = {}
    for name in names:
        d = described.get(name)
        if d is None or d.get("error_code"):
            raise TopicMismatch(f"topic {name}: not found after creating it")
        raw = by_topic.get(name) or {}
        values = {k: str(v.get("value") if isinstance(v, dict) else v) for k, v in raw.items()}
        out[name] = TopicInfo(len(d["partitions"]), d.get("topic_id") and str(d["topic_id"]), values)
    return out


def verify(settings: Settings, info: dict[str, TopicInfo]) -> None:
    """Every contradiction between the topics and the settings, in one error."""
    t = settings.topics
    problems: list[str] = []
    for name in (t.events, t.state):
        n = info[name].partitions
        if n != settings.partitions:
            problems.append(f"topic {name} has {n} partitions but the setting partitions is {settings.partitions}: the events "
                            "and state topics must both have exactly that many (see growing partitions in docs/operations.md)")
    state, events = info[t.state].configs, info[t.events].configs
    if state and (state.get("cleanup.policy", "").replace(" ", "") != "compact"):
        problems.append(f"topic {t.state} has cleanup.policy '{state.get('cleanup.policy')}': the changelog must be compacted "
                        "(and only compacted: deletion would lose the states of quiet encounters)")
    medications = info[t.fhir_medications].configs
    if medications and medications.get("cleanup.policy", "").replace(" ", "") != "compact":
        problems.append(f"topic {t.fhir_medications} has cleanup.policy '{medications.get('cleanup.policy')}': the Medication "
                        "reference topic must be compacted (deletion would forget Medications that did not change within retention)")
    if events:
        if "compact" in events.get("cleanup.policy", ""):
            problems.append(f"topic {t.events} has cleanup.policy '{events['cleanup.policy']}': compaction would delete events")
        retention = int(events.get("retention.ms", "-1") or "-1")
        if 0 <= retention < MIN_EVENTS_RETENTION_MS:
            problems.append(f"topic {t.events} has retention.ms {retention}: at least {MIN_EVENTS_RETENTION_MS} (one day) is needed")
    for name, limit, setting in ((t.state, settings.max_state_bytes, "max_state_bytes"),
                                 (t.charges, settings.max_revision_bytes, "max_revision_bytes"),
                                 (t.dead_letter, settings.max_dead_letter_bytes, "max_dead_letter_bytes")):
        allowed = info[name].configs.get("max.message.bytes")
        if allowed is not None and int(allowed) < limit + CHECK_MARGIN:
            problems.append(f"topic {name} has max.message.bytes {allowed}: {setting} {limit} needs at least {limit + CHECK_MARGIN}")
    if problems:
        raise TopicMismatch("; ".join(problems))
