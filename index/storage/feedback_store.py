"""The feedback store: answers shown with 👍/👎 buttons and readers' verdicts on them, in a
SQLite file beside the index folder (``<index>.feedback.sqlite``), never inside it, so
rebuilding or replacing the index keeps the feedback. Only SQL lives here; what an answer
shown and a verdict on it are is ``qa.feedback``'s.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import QAError
from .layout import beside, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY, time TEXT, question TEXT, as_of TEXT, findings TEXT,
    user TEXT, channel TEXT, via TEXT, version TEXT);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY, answer INTEGER REFERENCES answers(id), time TEXT, verdict TEXT,
    rank INTEGER, source TEXT, user TEXT);
"""


class FeedbackError(QAError):
    """A verdict that cannot be recorded (unknown answer, rank or verdict)."""


def feedback_path(index_dir: Path) -> Path:
    """Where the feedback on ``index_dir``'s answers is kept: beside it, not inside."""
    return beside(index_dir, "feedback")


@dataclass(frozen=True)
class Shown:
    """Who was shown an answer, where, and which index version gave it."""

    as_of: str | None = None
    user: str | None = None
    channel: str | None = None
    via: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Judged:
    """One verdict with the answer it judges."""

    answer: int
    time: str
    question: str
    as_of: str | None
    verdict: str
    rank: int | None
    source: str | None
    findings: list[dict[str, Any]]
    user: str | None
    channel: str | None
    via: str | None
    version: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class FeedbackStore:
    """The rows of one feedback file (thread-safe: servers record from several threads)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.db = open_database(self.path, SCHEMA, "the feedback database", timeout=10)

    def add_answer(self, question: str, findings: list[dict[str, Any]], shown: Shown) -> int:
        """Record an answer as shown; returns its id."""
        with self._lock, self.db:
            cursor = self.db.execute(
                "INSERT INTO answers (time, question, as_of, findings, user, channel, via,"
                " version) VALUES (?,?,?,?,?,?,?,?)",
                (_now(), question, shown.as_of, json.dumps(findings), shown.user,
                 shown.channel, shown.via, shown.version))
        return int(cursor.lastrowid or 0)

    def add_verdict(self, answer: int, verdict: str, rank: int | None, source: str | None,
                    user: str | None) -> int:
        """Record a verdict on a shown answer; returns its id."""
        with self._lock, self.db:
            cursor = self.db.execute(
                "INSERT INTO verdicts (answer, time, verdict, rank, source, user)"
                " VALUES (?,?,?,?,?,?)", (answer, _now(), verdict, rank, source, user))
        return int(cursor.lastrowid or 0)

    def findings(self, answer: int) -> list[dict[str, Any]] | None:
        """The findings shown with a recorded answer; None for an unknown one."""
        with self._lock:
            row = self.db.execute("SELECT findings FROM answers WHERE id = ?",
                                  (answer,)).fetchone()
        return json.loads(row[0]) if row else None

    def judged(self, since: str | None = None) -> Iterator[Judged]:
        """Every verdict with its answer, oldest first (``since``: on or after that date)."""
        sql = ("SELECT a.id, v.time, a.question, a.as_of, v.verdict, v.rank, v.source,"
               " a.findings, coalesce(v.user, a.user), a.channel, a.via, a.version"
               " FROM verdicts v JOIN answers a ON a.id = v.answer")
        args: tuple[Any, ...] = ()
        if since:
            sql += " WHERE v.time >= ?"
            args = (since,)
        with self._lock:
            rows = self.db.execute(sql + " ORDER BY v.id", args).fetchall()
        for r in rows:
            yield Judged(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8],
                         r[9], r[10], r[11])

    def close(self) -> None:
        self.db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
