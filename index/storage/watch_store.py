"""The watch store: standing questions, their findings and deliveries, in a SQLite file
beside the index folder (``<index>.watches.sqlite``; rebuilding or replacing the index keeps
it). Only SQL lives here; what to check, when and how to tell is ``qa.watch``.

Several processes may share one file (a ``qa serve``, a ``qa slack``, a ``qa index update``):
who checks a version is settled by a claim taken in an immediate transaction, and each
delivery is claimed the same way before it is sent, so two processes never send one twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import QAError
from .layout import beside, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, question TEXT NOT NULL, slack TEXT, webhook TEXT,
    source TEXT, since TEXT, created TEXT, user TEXT, via TEXT);
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY, watch INTEGER NOT NULL, kind TEXT NOT NULL, time TEXT,
    version TEXT, source TEXT, highlight TEXT, sentences TEXT, answer TEXT);
CREATE INDEX IF NOT EXISTS findings_watch ON findings (watch);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, finding TEXT NOT NULL, watch INTEGER NOT NULL, kind TEXT NOT NULL,
    target TEXT, status TEXT NOT NULL, owner TEXT, time TEXT, attempts INTEGER DEFAULT 0,
    error TEXT, UNIQUE (finding, kind));
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB);
"""
_WATCH_COLUMNS = "id, question, slack, webhook, source, since, created, user, via"
_FINDING_COLUMNS = "id, watch, kind, time, version, source, highlight, sentences, answer"
_DELIVERY_COLUMNS = "id, finding, watch, kind, target, status, owner, time, attempts, error"


def watches_path(index_dir: Path) -> Path:
    """Where the standing questions on ``index_dir`` are kept: beside it, not inside."""
    return beside(index_dir, "watches")


@dataclass(frozen=True)
class WatchRow:
    id: int
    question: str
    slack: str | None
    webhook: str | None
    source: str | None
    since: str | None
    created: str
    user: str | None
    via: str | None


@dataclass(frozen=True)
class FindingRow:
    """A finding recorded for a watch: ``kind`` "baseline" (what the archive answered when
    the watch was added: never sent, only compared with) or "found" (reported)."""

    id: str
    watch: int
    kind: str
    time: str
    version: str | None
    source: str | None
    highlight: str | None
    sentences: list[str]
    answer: dict[str, Any] | None


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    finding: str
    watch: int
    kind: str  # "slack" or "webhook"
    target: str | None
    status: str  # "pending", "sending", "sent" or "failed"
    owner: str | None
    time: str | None
    attempts: int
    error: str | None


@dataclass(frozen=True)
class NewFinding:
    """What ``WatchStore.record`` writes for one finding: the row and where it goes."""

    row: FindingRow
    targets: Sequence[tuple[str, str]]  # (kind, target)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _older_than(stamp: str | None, seconds: float) -> bool:
    if not stamp:
        return True
    try:
        return datetime.fromisoformat(stamp) < datetime.now(UTC) - timedelta(seconds=seconds)
    except ValueError:
        return True


class WatchStore:
    """The watch database of one index (thread-safe; processes coordinate through it)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self.db = open_database(self.path, SCHEMA, "the watch database", timeout=30, wal=True,
                                isolation_level=None)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: no other process writes until it ends."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise QAError(f"the watch database {self.path} is busy or unwritable "
                              f"({error})") from None
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    # --- watches ---------------------------------------------------------------------

    def add_watch(self, question: str, *, slack: str | None = None, webhook: str | None = None,
                  source: str | None = None, since: str | None = None,
                  user: str | None = None, via: str | None = None) -> WatchRow:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO watches (question, slack, webhook, source, since, created, user,"
                " via) VALUES (?,?,?,?,?,?,?,?)",
                (question, slack, webhook, source, since, now(), user, via))
        watch = self.watch(int(cursor.lastrowid or 0))
        assert watch is not None
        return watch

    def watch(self, watch: int) -> WatchRow | None:
        rows = self._read(f"SELECT {_WATCH_COLUMNS} FROM watches WHERE id = ?", (watch,))
        return WatchRow(*rows[0]) if rows else None

    def watches(self, slack: str | None = None) -> list[WatchRow]:
        """Every standing question, oldest first (``slack``: only those telling that
        channel)."""
        if slack is None:
            rows = self._read(f"SELECT {_WATCH_COLUMNS} FROM watches ORDER BY id")
        else:
            rows = self._read(f"SELECT {_WATCH_COLUMNS} FROM watches WHERE slack = ? "
                              "ORDER BY id", (slack,))
        return [WatchRow(*r) for r in rows]

    def remove_watch(self, watch: int) -> bool:
        """Delete a watch with its findings and deliveries; False when there is none."""
        with self._write() as db:
            gone = db.execute("DELETE FROM watches WHERE id = ?", (watch,)).rowcount
            db.execute("DELETE FROM findings WHERE watch = ?", (watch,))
            db.execute("DELETE FROM deliveries WHERE watch = ?", (watch,))
        return bool(gone)

    # --- findings --------------------------------------------------------------------

    def findings(self, watch: int, kind: str | None = None) -> list[FindingRow]:
        sql = f"SELECT {_FINDING_COLUMNS} FROM findings WHERE watch = ?"
        args: list[Any] = [watch]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return [_finding(r) for r in self._read(sql + " ORDER BY time, id", args)]

    def finding(self, finding: str) -> FindingRow | None:
        rows = self._read(f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id = ?", (finding,))
        return _finding(rows[0]) if rows else None

    def counts(self) -> dict[int, int]:
        """Findings reported per watch."""
        rows = self._read("SELECT watch, count(*) FROM findings WHERE kind = 'found' "
                          "GROUP BY watch")
        return {int(w): int(n) for w, n in rows}

    def add_baseline(self, rows: Sequence[FindingRow]) -> None:
        """Record what the archive answers now for a new watch (compared with, never sent)."""
        with self._write() as db:
            db.executemany(f"INSERT OR IGNORE INTO findings ({_FINDING_COLUMNS}) VALUES "
                           "(?,?,?,?,?,?,?,?,?)", [_finding_values(r) for r in rows])

    # --- checking versions -----------------------------------------------------------

    def get(self, key: str) -> Any:
        rows = self._read("SELECT value FROM state WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_state(self, **values: Any) -> None:
        with self._write() as db:
            for key, value in values.items():
                db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                           (key, value))

    def claim(self, version: str, owner: str, alive: Callable[[str, str], bool]) -> bool:
        """Take the check of ``version`` for ``owner``: False when it is checked already or
        another owner holds a live claim on it (``alive(owner, heartbeat)``)."""
        with self._write() as db:
            state = dict(db.execute("SELECT key, value FROM state WHERE key IN "
                                    "('checked', 'claim')").fetchall())
            if state.get("checked") == version:
                return False
            held = json.loads(state["claim"]) if state.get("claim") else None
            if held and held["owner"] != owner and alive(held["owner"], held["time"]):
                return False
            db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('claim', ?)",
                       (json.dumps({"owner": owner, "version": version, "time": now()}),))
        return True

    def heartbeat(self, owner: str) -> None:
        """Say the claim ``owner`` holds is still being worked on."""
        with self._write() as db:
            row = db.execute("SELECT value FROM state WHERE key = 'claim'").fetchone()
            held = json.loads(row[0]) if row and row[0] else None
            if held and held["owner"] == owner:
                held["time"] = now()
                db.execute("UPDATE state SET value = ? WHERE key = 'claim'", (json.dumps(held),))

    def release(self, owner: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT value FROM state WHERE key = 'claim'").fetchone()
            if row and row[0] and json.loads(row[0])["owner"] == owner:
                db.execute("DELETE FROM state WHERE key = 'claim'")

    def record(self, version: str, owner: str, seen: bytes,
               found: Sequence[NewFinding]) -> list[str]:
        """In one transaction: the findings of a check (those already recorded are left as
        they are) with a pending delivery per target, ``version`` as checked with the
        articles ``seen`` then, and ``owner``'s claim released. Returns the ids written."""
        written = []
        with self._write() as db:
            for item in found:
                cursor = db.execute(f"INSERT OR IGNORE INTO findings ({_FINDING_COLUMNS}) "
                                    "VALUES (?,?,?,?,?,?,?,?,?)", _finding_values(item.row))
                if not cursor.rowcount:
                    continue
                written.append(item.row.id)
                db.executemany(
                    "INSERT OR IGNORE INTO deliveries (finding, watch, kind, target, status)"
                    " VALUES (?,?,?,?, 'pending')",
                    [(item.row.id, item.row.watch, kind, target) for kind, target in
                     item.targets])
            for key, value in (("checked", version), ("seen", seen)):
                db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                           (key, value))
            row = db.execute("SELECT value FROM state WHERE key = 'claim'").fetchone()
            if row and row[0] and json.loads(row[0])["owner"] == owner:
                db.execute("DELETE FROM state WHERE key = 'claim'")
        return written

    # --- deliveries ------------------------------------------------------------------

    def take_delivery(self, owner: str, kinds: Sequence[str],
                      alive: Callable[[str, str], bool]) -> DeliveryRow | None:
        """Claim the oldest pending delivery of one of ``kinds`` (or one a dead owner left
        being sent) for ``owner``; None when there is none."""
        if not kinds:
            return None
        marks = ",".join("?" * len(kinds))
        with self._write() as db:
            rows = db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE kind IN ({marks}) AND "
                "status IN ('pending', 'sending') ORDER BY id", list(kinds)).fetchall()
            for r in rows:
                row = DeliveryRow(*r)
                if row.status == "sending" and row.owner and alive(row.owner, row.time or ""):
                    continue
                db.execute("UPDATE deliveries SET status = 'sending', owner = ?, time = ?,"
                           " attempts = attempts + 1 WHERE id = ?", (owner, now(), row.id))
                return DeliveryRow(row.id, row.finding, row.watch, row.kind, row.target,
                                   "sending", owner, now(), row.attempts + 1, row.error)
        return None

    def delivered(self, delivery: int, status: str, error: str | None = None) -> None:
        """Mark a delivery "sent", "failed" (given up) or "pending" (to try again later)."""
        with self._write() as db:
            db.execute("UPDATE deliveries SET status = ?, error = ?, time = ?,"
                       " owner = CASE WHEN ? = 'pending' THEN NULL ELSE owner END"
                       " WHERE id = ?", (status, error, now(), status, delivery))

    def deliveries(self, status: str | None = None) -> list[DeliveryRow]:
        if status is None:
            rows = self._read(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries ORDER BY id")
        else:
            rows = self._read(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status = ?"
                              " ORDER BY id", (status,))
        return [DeliveryRow(*r) for r in rows]

    def waiting(self, kinds: Sequence[str]) -> int:
        """Deliveries of ``kinds`` not sent yet (pending, or being sent)."""
        if not kinds:
            return 0
        marks = ",".join("?" * len(kinds))
        (n,) = self._read(f"SELECT count(*) FROM deliveries WHERE kind IN ({marks}) AND "
                          "status IN ('pending', 'sending')", list(kinds))[0]
        return int(n)

    def close(self) -> None:
        with self._lock:
            self.db.close()


def _finding(r: Sequence[Any]) -> FindingRow:
    return FindingRow(r[0], int(r[1]), r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "[]"),
                      json.loads(r[8]) if r[8] else None)


def _finding_values(row: FindingRow) -> tuple[Any, ...]:
    return (row.id, row.watch, row.kind, row.time, row.version, row.source, row.highlight,
            json.dumps(row.sentences, ensure_ascii=False),
            json.dumps(row.answer, ensure_ascii=False) if row.answer is not None else None)
