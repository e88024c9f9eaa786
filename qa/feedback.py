"""Feedback on answers, kept as evaluation data.

Every answer a front end shows with 👍/👎 buttons is recorded (question, the findings shown,
who asked, where, when, which index version answered); a verdict on it is recorded against
that answer. ``export`` turns the judged answers into ``qa eval``'s JSON Lines, so real use
becomes a regression set: a finding marked right gives its article as a gold source and its
highlighted sentence as the answer; "none of them was right" gives a question the archive
should refuse.

The database is a SQLite file beside the index folder (``<index>.feedback.sqlite``), never
inside it: rebuilding or replacing the index keeps the feedback.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index.errors import QAError

from .results import Answer

VERDICTS = ("up", "down")
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
    index_dir = Path(index_dir).resolve()
    return index_dir.with_name(f"{index_dir.name}.feedback.sqlite")


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


def findings_of(answer: Answer) -> list[dict[str, Any]]:
    """What a reader was shown of ``answer``: rank, source, URL and highlighted sentence."""
    return [
        {"rank": p.rank, "source": p.citation.source, "url": p.citation.url,
         "title": p.citation.title,
         "highlight": p.highlight.text if p.highlight else None}
        for p in answer.passages
    ]


class Feedback:
    """The feedback database of one index (thread-safe; servers record from several
    threads)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise QAError(f"cannot open the feedback database {self.path} ({error}): check "
                          "that its folder is writable") from None

    @classmethod
    def of_index(cls, index_dir: Path) -> Feedback:
        return cls(feedback_path(index_dir))

    def shown(self, answer: Answer, *, as_of: str | None = None, user: str | None = None,
              channel: str | None = None, via: str | None = None,
              version: str | None = None) -> int:
        """Record an answer as shown; returns its id (the buttons carry it)."""
        with self._lock, self.db:
            cursor = self.db.execute(
                "INSERT INTO answers (time, question, as_of, findings, user, channel, via,"
                " version) VALUES (?,?,?,?,?,?,?,?)",
                (_now(), answer.question, as_of, json.dumps(findings_of(answer)), user,
                 channel, via, version))
        return int(cursor.lastrowid or 0)

    def judge(self, answer: int, verdict: str, *, rank: int | None = None,
              source: str | None = None, user: str | None = None) -> int:
        """Record a verdict ("up" or "down") on a shown answer, on one of its findings
        (``rank``, or ``source``) or on the whole answer; returns the verdict's id."""
        if verdict not in VERDICTS:
            raise FeedbackError(f"verdict must be one of {', '.join(VERDICTS)}, not "
                                f"{verdict!r}")
        findings = self._findings(answer)
        if findings is None:
            raise FeedbackError(f"no answer {answer} to judge")
        if rank is not None or source is not None:
            match = [f for f in findings
                     if (rank is None or f["rank"] == rank)
                     and (source is None or f["source"] == source)]
            if not match:
                raise FeedbackError("no finding with that rank/source in the answer judged")
            rank, source = match[0]["rank"], match[0]["source"]
        with self._lock, self.db:
            cursor = self.db.execute(
                "INSERT INTO verdicts (answer, time, verdict, rank, source, user)"
                " VALUES (?,?,?,?,?,?)", (answer, _now(), verdict, rank, source, user))
        return int(cursor.lastrowid or 0)

    def findings(self, answer: int) -> list[dict[str, Any]]:
        """The findings shown with a recorded answer (empty for an unknown one)."""
        return self._findings(answer) or []

    def _findings(self, answer: int) -> list[dict[str, Any]] | None:
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


def to_eval(judged: list[Judged]) -> list[dict[str, Any]]:
    """``qa eval`` questions from verdicts, one per judged answer. Findings marked right (👍
    on a finding; a 👍 on the whole answer means its first finding) give gold sources and
    their highlighted sentences as answers; 👎 on a finding takes it back. A 👎 on the whole
    answer with no finding marked right (the reader chose "none of them") gives a question
    the archive should refuse. Later verdicts win."""
    by_answer: dict[int, list[Judged]] = {}
    for item in judged:
        by_answer.setdefault(item.answer, []).append(item)
    questions = []
    for answer, items in by_answer.items():
        first = items[0]
        right: dict[str, str | None] = {}
        wrong_all = False
        for item in items:
            finding = _finding(item)
            if item.verdict == "up" and finding is not None:
                right[finding["source"]] = finding.get("highlight")
            elif item.verdict == "down" and item.rank is None and item.source is None:
                wrong_all = True
            elif item.verdict == "down" and finding is not None:
                right.pop(finding["source"], None)
        if not right and not wrong_all:
            continue
        entry: dict[str, Any] = {
            "id": f"feedback-{answer}", "question": first.question,
            "answers": sorted({h for h in right.values() if h}) if right else [],
            "sources": sorted(right) if right else [],
        }
        if first.as_of:
            entry["date"] = first.as_of
        questions.append(entry)
    return questions


def _finding(item: Judged) -> dict[str, Any] | None:
    if item.rank is None and item.source is None:
        return item.findings[0] if item.verdict == "up" and item.findings else None
    for finding in item.findings:
        if finding["rank"] == item.rank and finding["source"] == item.source:
            return finding
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
