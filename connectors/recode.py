"""``infusion-charges recode``: closed encounters coded again, through the events topic.

After a formulary or profile fix, the encounters already charged are coded again from the state
the workers hold.  This command does not code anything itself: it picks the encounters -- by
id, by when their last record arrived, those whose published lines carry another formulary
version, or all -- from the changelog (the state topic's ``standing`` and ``last-record-ms``
headers), and writes one ``recode`` command per encounter to the events topic, keyed by the
encounter.  Each command takes its place in its encounter's history and is crash-safe like
every other update: the worker owning the encounter marks it changed and codes it with the
formulary and profile it runs with; a revision is published only when the lines changed
(changed lines updated, vanished lines ``entered-in-error``).  ``--reopen`` also re-admits a
blocked encounter (its dead-lettered records can then be replayed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaProducer

from coding_core.model import AdministrationEvent
from connectors.clients import read_topic
from connectors.intake import RECORDS
from connectors.recovery import LAST_RECORD_MS, STANDING
from connectors.settings import Settings
from mapping.chargeitem_out import EXT_FORMULARY

RECODE, REOPEN = "recode", "reopen"  # the command record's kind, and its mode with --reopen


def command(encounter_id: str, reopen: bool = False) -> dict:
    """The events-topic record asking for ``encounter_id`` to be coded again."""
    return {"kind": RECODE, "id": encounter_id, "mode": REOPEN if reopen else RECODE, "version": [None, None],
            "administration": None, "encounter": None}


@dataclass(frozen=True)
class Held:
    encounter_id: str
    standing: str
    last_record_ms: int
    formulary_versions: frozenset[str]


def held(settings: Settings, with_formulary: bool = False, timeout_s: float = 60.0) -> dict[str, Held]:
    """The latest changelog record of every encounter (to the end the topic had at the start)."""
    out: dict[str, Held] = {}
    for r in read_topic(settings, settings.topics.state, timeout_s):
        if r.key is None:
            continue
        key = r.key.decode()
        if r.value is None:
            out.pop(key, None)
            continue
        headers = dict(r.headers or ())
        versions: frozenset[str] = frozenset()
        if with_formulary:
            from connectors.state import EncounterState

            state = EncounterState.from_bytes(r.value)
            versions = frozenset(ext["valueString"] for item in state.published.values() if item.get("status") != "entered-in-error"
                                 for ext in item.get("extension", []) if ext.get("url") == EXT_FORMULARY)
        out[key] = Held(key, headers.get(STANDING, b"").decode(), int(headers.get(LAST_RECORD_MS, b"0") or 0), versions)
    return out


def administrations_held(settings: Settings, timeout_s: float = 60.0) -> list[AdministrationEvent]:
    """Every administration the workers hold (the changelog's latest state per encounter, each
    record once), for ``infusion-charges formulary missing --config``."""
    from connectors.state import EncounterState

    latest: dict[str, bytes] = {}
    for r in read_topic(settings, settings.topics.state, timeout_s):
        if r.key is not None:
            if r.value is None:
                latest.pop(r.key.decode(), None)
            else:
                latest[r.key.decode()] = r.value
    return [e for value in latest.values() for e in EncounterState.from_bytes(value).administrations()]


def select(encounters: dict[str, Held], since_ms: int | None = None, until_ms: int | None = None,
           not_formulary: str | None = None, blocked: bool = False) -> list[str]:
    """Closed encounters (and, with ``blocked``, blocked ones) last touched in [since, until),
    optionally only those with lines published under another formulary version."""
    standings = {"closed", "blocked"} if blocked else {"closed"}
    return sorted(h.encounter_id for h in encounters.values() if h.standing in standings
                  and (since_ms is None or h.last_record_ms >= since_ms) and (until_ms is None or h.last_record_ms < until_ms)
                  and (not_formulary is None or (h.formulary_versions - {not_formulary})))


def request(settings: Settings, encounter_ids: Iterable[str], reopen: bool = False) -> int:
    """One recode command per encounter onto the events topic; the number written."""
    producer = KafkaProducer(**settings.kafka_config(), acks="all", enable_idempotence=True)
    n = 0
    try:
        for encounter_id in encounter_ids:
            value = json.dumps({RECORDS: [command(encounter_id, reopen)]}).encode()
            producer.send(settings.topics.events, key=encounter_id.encode(), value=value)
            n += 1
        producer.flush(timeout=settings.request_timeout_ms / 1000)
    finally:
        producer.close()
    return n
