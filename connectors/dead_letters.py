"""The dead-letter topic: anything the worker could not take, with the reason in headers.

Headers: ``source.topic``, ``source.partition``, ``source.offset`` (where the message is),
``error.type`` and ``error.message`` (why).  The value is the original message's bytes, or for
one mapped record of an events message that failed, that record.  Bytes over
``max_dead_letter_bytes`` are left out: the dead-letter topic would refuse them and the worker
would stop on the same message after every restart; the header ``value.omitted`` then gives
their size and says where the message stays.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from connectors.clients import Outbox
from connectors.ops import Metrics

log = logging.getLogger("infusion_charges.worker")
_LETTER = re.compile(rb"[0-9]{1,10}:[0-9]{1,19}")  # a dead letter's name, <partition>:<offset> (connectors/redrive.py)


class DeadLetters:
    def __init__(self, topic: str, max_bytes: int, outbox: Outbox, metrics: Metrics, stats: dict[str, int]):
        self.topic, self.max_bytes, self.outbox, self.metrics, self.stats = topic, max_bytes, outbox, metrics, stats

    def send(self, record: Any, error_type: str, message: str, value: bytes | None = None) -> None:
        """``record`` (a consumed Kafka record) to the dead-letter topic, or ``value`` in its place."""
        self.stats["dead_letters"] += 1
        self.metrics.dead_lettered.labels(record.topic).inc()
        self.metrics.dead_letters.labels(error_type).inc()
        headers = [
            ("source.topic", record.topic.encode()), ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()), ("error.type", error_type.encode()),
            ("error.message", message[:4000].encode()),
        ]
        # a re-drive failing again: the letter it came from, when the header names one as replay does
        headers += [(k, v) for k, v in (getattr(record, "headers", None) or ())
                    if k == "redrive.of" and isinstance(v, bytes) and _LETTER.fullmatch(v)]
        if value is None:
            value = record.value
        if value is not None and len(value) > self.max_bytes:
            headers.append(("value.omitted", f"{len(value)} bytes, over max_dead_letter_bytes {self.max_bytes}: "
                                             "read the message at source.topic, source.partition, source.offset".encode()))
            value = None
        self.outbox.send(self.topic, key=record.key, value=value, headers=headers)
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, error_type,
                    extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "error_type": error_type})
