"""Feedback on answers, kept as evaluation data.

Every answer a front end shows with 👍/👎 buttons is recorded (question, the findings shown,
who asked, where, when, which index version answered); a verdict on it is recorded against
that answer. ``export`` turns the judged answers into ``qa eval``'s JSON Lines, so real use
becomes a regression set: a finding marked right gives its article as a gold source and its
highlighted sentence as the answer; "none of them was right" gives a question the archive
should refuse.

The database is a SQLite file beside the index folder (``<index>.feedback.sqlite``), never
inside it: rebuilding or replacing the index keeps the feedback. Its SQL is
``index.storage.feedback_store``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index.storage.feedback_store import FeedbackError, FeedbackStore, Judged, Shown, feedback_path

from .results import Answer

VERDICTS = ("up", "down")


def findings_of(answer: Answer) -> list[dict[str, Any]]:
    """What a reader was shown of ``answer``: rank, source, URL and highlighted sentence."""
    return [
        {"rank": p.rank, "source": p.citation.source, "url": p.citation.url,
         "title": p.citation.title,
         "highlight": p.highlight.text if p.highlight else None}
        for p in answer.passages
    ]


class Feedback:
    """The feedback of one index: answers shown and verdicts on them (thread-safe; servers
    record from several threads). Its rows live in ``index.storage.feedback_store``."""

    def __init__(self, path: Path):
        self.rows = FeedbackStore(path)
        self.path = self.rows.path

    @classmethod
    def of_index(cls, index_dir: Path) -> Feedback:
        return cls(feedback_path(index_dir))

    def shown(self, answer: Answer, *, as_of: str | None = None, user: str | None = None,
              channel: str | None = None, via: str | None = None,
              version: str | None = None) -> int:
        """Record an answer as shown; returns its id (the buttons carry it). ``version``:
        the index version that gave it (default: the one ``answer`` says)."""
        where = Shown(as_of, user, channel, via, version or answer.version)
        return self.rows.add_answer(answer.question, findings_of(answer), where)

    def judge(self, answer: int, verdict: str, *, rank: int | None = None,
              source: str | None = None, user: str | None = None) -> int:
        """Record a verdict ("up" or "down") on a shown answer, on one of its findings
        (``rank``, or ``source``) or on the whole answer; returns the verdict's id."""
        if verdict not in VERDICTS:
            raise FeedbackError(f"verdict must be one of {', '.join(VERDICTS)}, not "
                                f"{verdict!r}")
        findings = self.rows.findings(answer)
        if findings is None:
            raise FeedbackError(f"no answer {answer} to judge")
        if rank is not None or source is not None:
            match = [f for f in findings
                     if (rank is None or f["rank"] == rank)
                     and (source is None or f["source"] == source)]
            if not match:
                raise FeedbackError("no finding with that rank/source in the answer judged")
            rank, source = match[0]["rank"], match[0]["source"]
        return self.rows.add_verdict(answer, verdict, rank, source, user)

    def findings(self, answer: int) -> list[dict[str, Any]]:
        """The findings shown with a recorded answer (empty for an unknown one)."""
        return self.rows.findings(answer) or []

    def judged(self, since: str | None = None) -> Iterator[Judged]:
        """Every verdict with its answer, oldest first (``since``: on or after that date)."""
        return self.rows.judged(since)

    def close(self) -> None:
        self.rows.close()


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

