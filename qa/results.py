"""Small result types returned by the query layer; JSON is ``asdict`` of these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Citation:
    """Where a passage comes from: ``start``/``end`` are offsets into the article's text (the
    file's text for .txt/.md, the stored article text ``qa show`` prints for other formats);
    ``url`` is null where the archive gives none."""

    source: str
    path: str
    url: str | None
    title: str | None
    date: str | None
    author: str | None
    publisher: str | None
    start: int
    end: int
    date_inferred: bool = False


@dataclass(frozen=True)
class Highlight:
    """The sentence of a passage that best answers the question (file offsets)."""

    text: str
    start: int
    end: int


@dataclass
class Passage:
    rank: int
    score: float
    text: str
    highlight: Highlight | None
    citation: Citation
    also: list[Citation] = field(default_factory=list)


@dataclass
class Answer:
    question: str
    answered: bool
    passages: list[Passage]
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None  # why a refused answer was refused
    # The index version that gave it (set by the Service that answered; not in the JSON).
    version: str | None = field(default=None, compare=False)

    def to_dict(self, show_weak: bool = False) -> dict[str, Any]:
        """The JSON contract object of every front end. A refused answer holds no passages
        unless ``show_weak``: a script reading ``passages`` never takes weak evidence for an
        answer by accident."""
        data = asdict(self)
        data.pop("warnings")
        data.pop("version")
        if not self.answered and not show_weak:
            data["passages"] = []
        return data
