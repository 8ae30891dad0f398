"""The local state store: each events partition's encounter states on local disk, the open
ones also in memory.

The changelog topic is the source of truth; the store is its copy on the worker's volume.
Each partition's file holds the states and the changelog offset they reflect, written in one
transaction, so a worker restarted with its volume reads only the changelog's tail
(``connectors.recovery``) and a new volume reads the whole changelog.

Memory holds the open encounters (the idle-close tick and their next records need them) and
the states changed since the last checkpoint; closed, discarded, retired and blocked
encounters live on disk only and are read back when a record arrives for them.  Memory is
bounded by open work, not by the retention window.

SQLite (the standard library's ``sqlite3``): no native package to build or ship, transactional
(states and their changelog offset commit together: a crash never leaves the store claiming an
offset its states do not reflect), point reads by key and the range scan the retention tick
needs on one index.  quixstreams keeps the same role in RocksDB; at the tens of thousands of
encounters a partition holds, the store's cost per checkpoint is not what bounds the worker.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.state import EncounterState

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    standing TEXT NOT NULL,
    last_record_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_by_standing ON state (standing, last_record_ms);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS waiting (medication TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (medication, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS waiting_by_key ON waiting (key);
"""
# How many states the retention tick looks at per turn (the rest wait for the next turn).
SCAN_LIMIT = 1000


@dataclass(frozen=True)
class Row:
    """One changelog record as the store keeps it (``value`` None: a tombstone)."""

    key: str
    value: bytes | None
    standing: str = "open"
    last_record_ms: int = 0
    waiting: tuple[str, ...] = ()  # Medications its last coding could not read (EncounterState.waiting)


class PartitionStore:
    def __init__(self, path: Path, partition: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.partition = path, partition
        # The revocation checkpoint runs on the Kafka client's thread while the main thread
        # waits in poll(): one thread at a time, never two.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._memory: dict[str, EncounterState] = {}
        self._dirty: dict[str, EncounterState | None] = {}
        # Keys whose state came into memory or changed since the last eviction: the only ones
        # that can have left "open" (a state changes standing only through put or keep), so
        # eviction looks at these, not at every open encounter held.
        self._touched: set[str] = set()
        # States by standing (the gauges, every second): counted once, then kept up to date by
        # each write (a GROUP BY over the whole table took ~6 ms per 100,000 states per tick).
        self._counts: dict[str, int] | None = None

    # --- the checkpointed changelog position ------------------------------------------

    def meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))

    @property
    def changelog_offset(self) -> int:
        """The next changelog offset: every record before it is reflected here."""
        return int(self.meta("changelog_offset") or 0)

    # --- states -----------------------------------------------------------------------

    def get(self, key: str) -> EncounterState | None:
        state = self._memory.get(key)
        if state is None:
            state = self.last_written(key)
            if state is not None:
                self._memory[key] = state  # until the next checkpoint, unless it stays open
                self._touched.add(key)
        return state

    def last_written(self, key: str) -> EncounterState | None:
        """The state as last written to the changelog (and acknowledged), from disk."""
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else EncounterState.from_bytes(row[0])

    def put(self, key: str, state: EncounterState) -> None:
        """``state`` changed: written to the changelog at the next checkpoint."""
        self._memory[key] = state
        self._dirty[key] = state
        self._touched.add(key)

    def keep(self, key: str, state: EncounterState) -> None:
        """``state`` in memory in place of the one held, without marking it changed."""
        self._memory[key] = state
        self._touched.add(key)

    def delete(self, key: str) -> None:
        self._memory.pop(key, None)
        self._dirty[key] = None

    def take_dirty(self) -> dict[str, EncounterState | None]:
        dirty, self._dirty = self._dirty, {}
        return dirty

    def in_memory(self) -> Iterator[tuple[str, EncounterState]]:
        return iter(list(self._memory.items()))

    def stale(self, older_than_ms: int, standings: tuple[str, ...]) -> list[str]:
        """Keys of states in these standings whose last record is older than the time (at most
        SCAN_LIMIT of them)."""
        marks = ",".join("?" * len(standings))
        rows = self._db.execute(f"SELECT key FROM state WHERE standing IN ({marks}) AND last_record_ms < ? LIMIT ?",
                                (*standings, older_than_ms, SCAN_LIMIT)).fetchall()
        return [r[0] for r in rows]

    def waiting(self, medications: Iterable[str] | None = None) -> list[str]:
        """Keys of states waiting for any of these Medications (for any, when None)."""
        if medications is None:
            return [r[0] for r in self._db.execute("SELECT DISTINCT key FROM waiting")]
        ids = list(medications)
        keys: dict[str, None] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            keys.update((r[0], None) for r in self._db.execute(f"SELECT key FROM waiting WHERE medication IN ({marks})", chunk))
        return list(keys)

    def waiting_medications(self) -> list[str]:
        """The Medications some state of this partition waits for."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT medication FROM waiting")]

    def counts(self) -> dict[str, int]:
        """States held, by standing."""
        if self._counts is None:
            self._counts = self._counted()
        return dict(self._counts)

    def _counted(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT standing, COUNT(*) FROM state GROUP BY standing").fetchall())

    def _standings(self, keys: list[str]) -> dict[str, str]:
        """The standing each of ``keys`` has on disk (a key not held is left out)."""
        out: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self._db.execute(f"SELECT key, standing FROM state WHERE key IN ({marks})", chunk).fetchall())
        return out

    # --- writing ----------------------------------------------------------------------

    def save(self, rows: Iterable[Row], next_offset: int) -> None:
        """Changelog records the broker acknowledged, and the offset after them: one transaction.
        Then memory lets go of what is neither open nor changed since."""
        self._write(list(rows), next_offset)
        self.evict()

    def restore(self, rows: Iterable[Row], next_offset: int) -> None:
        """Changelog records read back (recovery)."""
        rows = list(rows)
        self._write(rows, next_offset)
        for row in rows:
            self._memory.pop(row.key, None)

    def _write(self, rows: list[Row], next_offset: int) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            last = {r.key: r for r in rows}  # a restore batch may hold several versions of a key: the last counts
            before = self._standings(list(last)) if self._counts is not None else {}
            # Only each key's last row is written: all upserts first and then all deletes would
            # lose a state put again after its tombstone in the same batch.
            upserts = [(r.key, r.value, r.standing, r.last_record_ms) for r in last.values() if r.value is not None]
            deletes = [(r.key,) for r in last.values() if r.value is None]
            if upserts:
                db.executemany("INSERT INTO state VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                               "standing = excluded.standing, last_record_ms = excluded.last_record_ms", upserts)
            if deletes:
                db.executemany("DELETE FROM state WHERE key = ?", deletes)
            db.executemany("DELETE FROM waiting WHERE key = ?", [(k,) for k in last])
            db.executemany("INSERT OR IGNORE INTO waiting VALUES (?, ?)",
                           [(m, r.key) for r in last.values() if r.value is not None for m in r.waiting])
            if next_offset > self.changelog_offset:
                self.set_meta("changelog_offset", str(next_offset))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if self._counts is not None:
            self._recount(before, last)

    def _recount(self, before: dict[str, str], written: dict[str, Row]) -> None:
        counts = self._counts
        assert counts is not None
        for key, row in written.items():
            old = before.get(key)
            if old is not None:
                counts[old] -= 1
                if not counts[old]:
                    del counts[old]
            if row.value is not None:
                counts[row.standing] = counts.get(row.standing, 0) + 1

    def evict(self) -> None:
        """Memory lets go of the states neither open nor changed since the last checkpoint."""
        still_dirty = set()
        for key in self._touched:
            state = self._memory.get(key)
            if state is None:
                continue
            if key in self._dirty:
                still_dirty.add(key)  # looked at again once written
            elif state.standing != "open":
                del self._memory[key]
        self._touched = still_dirty

    def load_open(self) -> int:
        """After recovery: every open encounter into memory.  Returns how many."""
        self._memory.clear()
        self._touched.clear()
        for key, value in self._db.execute("SELECT key, value FROM state WHERE standing = 'open'"):
            self._memory[key] = EncounterState.from_bytes(value)
        return len(self._memory)

    def forget_memory(self) -> None:
        """A rewind: what memory holds past the last checkpoint is dropped."""
        self._memory.clear()
        self._dirty.clear()
        self._touched.clear()

    def close(self) -> None:
        self._db.close()


class StateStores:
    """The stores of the events partitions this worker owns, one SQLite file each under
    ``<state_dir>/<state topic>/``."""

    def __init__(self, root: Path, state_topic: str):
        self.root = root / state_topic
        self._open: dict[int, PartitionStore] = {}

    def open(self, partition: int) -> PartitionStore:
        store = self._open.get(partition)
        if store is None:
            store = self._open[partition] = PartitionStore(self.root / f"{partition}.sqlite3", partition)
        return store

    def close(self, partition: int) -> None:
        store = self._open.pop(partition, None)
        if store is not None:
            store.close()

    def close_all(self) -> None:
        for partition in list(self._open):
            self.close(partition)

    def get(self, partition: int) -> PartitionStore | None:
        return self._open.get(partition)

    def items(self) -> list[tuple[int, PartitionStore]]:
        return list(self._open.items())
