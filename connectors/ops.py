"""Operations surface of a worker: Prometheus metrics, health endpoints, JSON logs.

``/healthz`` (liveness): 200 while the worker's loop keeps turning, 503 once it has not
advanced for ``liveness_timeout_s``.  ``/readyz``: 200 only once the worker has its partitions
and their state is recovered (503 before, while a rebalance moves partitions, and while state is
recovered).
``/metrics``: Prometheus text format.  Labels are bounded words — topic names, outcomes, error
types, warning codes, code systems, actions, stages — never encounter, patient or record ids
and never a drug's code or name (no PHI, bounded cardinality).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


_ID_KEY: bytes | None = None  # settings.log_id_key, set once at start (set_id_key)


def set_id_key(key: str | None) -> None:
    """Key the digests that name encounters in logs, metrics and dead letters (HMAC-SHA-256).
    Without a key a plain SHA-256 is used, which anyone can reverse for guessable visit numbers
    by trying them; with one, only holders of the key can compute an encounter's name."""
    global _ID_KEY
    _ID_KEY = key.encode() if key else None


def safe_id(encounter_id: str) -> str:
    """How logs name an encounter: a (keyed) digest of its id, not the id (a visit number).  An
    operator holding the id and the key finds its lines by computing the same digest."""
    if _ID_KEY is not None:
        return "enc:" + hmac.new(_ID_KEY, encounter_id.encode(), hashlib.sha256).hexdigest()[:16]
    return "enc:" + hashlib.sha256(encounter_id.encode()).hexdigest()[:16]


class Metrics:
    """One registry per worker (tests run several workers in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("infusion_charges_messages_consumed", "Messages consumed", ["topic"], registry=r)
        self.produced = Counter("infusion_charges_messages_produced", "Messages produced", ["topic"], registry=r)
        self.dead_lettered = Counter("infusion_charges_messages_dead_lettered", "Messages sent to the dead-letter topic",
                                     ["topic"], registry=r)
        self.revisions = Counter("infusion_charges_revisions_published", "Charge revisions published", registry=r)
        self.warnings = Counter("infusion_charges_warnings", "Warnings of the published revisions, by code (unknown-drug, "
                                "matched-by-name, missing-route, ...)", ["code"], registry=r)
        self.records = Counter("infusion_charges_records", "Events records applied to encounter state, by outcome (added, "
                               "replaced, merged, duplicate, outdated: an older version arriving late, retired, blocked)",
                               ["outcome"], registry=r)
        self.dead_letters = Counter("infusion_charges_dead_letters", "Messages sent to the dead-letter topic, by error type",
                                    ["error_type"], registry=r)
        self.redriven = Counter("infusion_charges_redriven", "Messages re-driven from the dead-letter topic "
                                "(infusion-charges dead-letters replay), by input topic", ["topic"], registry=r)
        self.unknown_drugs = Counter("infusion_charges_unknown_drugs", "Administrations added whose drug the formulary does not "
                                     "identify by a code (unknown, or matched by its name alone), by the code system sent "
                                     "(ndc, rxnorm, hcpcs, other, text: a name and no code)", ["system"], registry=r)
        self.medications = Counter("infusion_charges_medications", "Records of the Medication reference topic, by outcome "
                                   "(added, updated, deleted, rejected: dead-lettered)", ["outcome"], registry=r)
        self.medications_held = Gauge("infusion_charges_medications_held", "Medications in the reference table", registry=r)
        self.coding_failures = Counter("infusion_charges_coding_failures", "Encounters whose coding raised an error",
                                       registry=r)
        self.rebalances = Counter("infusion_charges_rebalances", "Partition assignments received", registry=r)
        self.encounters_open = Gauge("infusion_charges_encounters_open", "Encounters held open in local state", registry=r)
        self.encounters_held = Gauge("infusion_charges_encounters_held", "Encounters in local state (open and closed)", registry=r)
        self.consumer_lag = Gauge("infusion_charges_consumer_lag", "Records behind the end of each assigned topic", ["topic"], registry=r)
        self.coding_seconds = Histogram("infusion_charges_coding_seconds", "Time to code one encounter", registry=r,
                                        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0))
        self.close_to_charge_seconds = Histogram(
            "infusion_charges_close_to_charge_seconds",
            "From the events-topic timestamp of a closed encounter's last record to its published revision",
            registry=r, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        # The input side of the same path, per encounter update (close, cancel): "queued", from
        # the input record's timestamp to the worker mapping it (how far behind the feed the
        # worker reads); "held", from then until it is released to the events topic (the wait
        # for the other input partitions, hold_grace_ms included).  With close_to_charge they
        # say where the time from a feed's close to its charges goes.
        self.close_stage_seconds = Histogram(
            "infusion_charges_close_stage_seconds",
            "Encounter updates: from the input record's timestamp to mapping (queued), then to release to the events topic (held)",
            ["stage"], registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.hold_grace_seconds = Gauge("infusion_charges_hold_grace_seconds", "The close hold's grace in use "
                                        "(hold_grace_ms, or measured: see hold_grace_measured)", registry=r)
        self.close_queued_seconds = self.close_stage_seconds.labels("queued")
        self.close_held_seconds = self.close_stage_seconds.labels("held")
        self.encounters_blocked = Gauge("infusion_charges_encounters_blocked",
                                        "Encounters blocked because their state or revision could not be written", registry=r)
        self.encounters_blocked_total = Counter("infusion_charges_encounters_blocked_events",
                                                "Encounters that became blocked", registry=r)
        self.kafka_errors = Counter("infusion_charges_kafka_errors", "Kafka errors ridden out, by what the worker did "
                                    "(retry: backed off and went on; rewind: repeated the work since the last commit)",
                                    ["action", "error_type"], registry=r)
        self.restored = Counter("infusion_charges_state_records_restored", "Changelog records read back into the local state store",
                                registry=r)
        self.recovering = Gauge("infusion_charges_partitions_recovering", "Events partitions whose state is being recovered",
                                registry=r)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


READ_TIMEOUT_S = 5.0  # the ops endpoints answer in milliseconds; a request slower to arrive is dropped
MAX_CONNECTIONS = 32  # probes and a scraper need a handful; more at once are refused, not given threads


class _CappedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most MAX_CONNECTIONS connections served at once: a flood of
    (half-open) connections cannot take one thread each."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of connections is accepted (and refused) quickly

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: closed at once
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class OpsServer:
    """HTTP endpoints in a daemon thread; ``ready`` and ``alive`` are callables the worker answers."""

    def __init__(self, port: int, metrics: Metrics, ready: Any, host: str = "0.0.0.0", alive: Any = None):
        ops = self

        class Handler(BaseHTTPRequestHandler):
            timeout = READ_TIMEOUT_S  # a client that sends nothing (half-open) is dropped, not waited for

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path == "/healthz":
                    ok = ops.alive is None or bool(ops.alive())
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n", "text/plain")
                elif self.path == "/readyz":
                    ok = bool(ops.ready())
                    self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
                elif self.path == "/metrics":
                    self._reply(200, ops.metrics.render(), CONTENT_TYPE_LATEST)
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
                pass

        self.metrics, self.ready, self.alive = metrics, ready, alive
        self.server = _CappedServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="ops-http", daemon=True)

    def start(self) -> OpsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() would wait for a serve_forever that never ran
            self.server.shutdown()
        self.server.server_close()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` ids/counts."""

    _standard = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
            "logger": record.name, "message": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in self._standard})
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(doc, default=str)


def configure_logging(level: int | str = logging.INFO, kafka_level: int | str = logging.WARNING) -> None:
    """JSON lines on stderr at ``level`` (settings ``log_level``); kafka-python's own lines at
    ``kafka_level`` (``kafka_log_level``: its INFO lines are most of a start-up's)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(kafka_level)
