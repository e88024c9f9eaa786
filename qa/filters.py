"""Restrict answers to some articles: by source or outlet, and by article date."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from index.docs import printable
from index.errors import QuestionError
from index.storage.rows import DocumentRow

_ENDS = ("until", "as-of")  # a year or month given for these means its last day


def parse_date(value: str | None, option: str) -> str | None:
    """An ISO date (yyyy-mm-dd, yyyy-mm or yyyy) as yyyy-mm-dd; QuestionError otherwise."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}", text):
            return dt.date(int(text), 1, 1).isoformat() if option not in _ENDS else f"{text}-12-31"
        if re.fullmatch(r"\d{4}-\d{1,2}", text):
            year, month = map(int, text.split("-"))
            first = dt.date(year, month, 1)
            if option not in _ENDS:
                return first.isoformat()
            following = dt.date(year + month // 12, month % 12 + 1, 1)
            return (following - dt.timedelta(days=1)).isoformat()
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise QuestionError(
            f"--{option} {value!r} is not a date: use YYYY-MM-DD, YYYY-MM or YYYY"
        ) from None


@dataclass(frozen=True)
class Filters:
    """Which articles may answer. ``source`` matches the file name or the outlet
    (case-insensitive, part of the name is enough); ``since``/``until`` are inclusive ISO dates
    compared with the article's date (stated or inferred); undated articles are left out when
    either is set."""

    source: str | None = None
    since: str | None = None
    until: str | None = None
    # Answer as of this date: articles published after it are not used (undated ones are).
    as_of: str | None = None
    # Only these articles (source names): a standing question asked over an update's new
    # and changed articles (``qa.watch``).
    articles: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.source or self.since or self.until or self.as_of
                    or self.articles is not None)

    def restricts(self, latest: str | None) -> bool:
        """Whether these filters leave out any article of an archive whose newest article is
        dated ``latest``: answering as of today leaves out nothing, and then costs nothing
        (no id list, the vector index searched as it is)."""
        if self.source or self.since or self.until or self.articles is not None:
            return True
        return bool(self.as_of and latest and latest > self.as_of)

    def matches(self, doc: DocumentRow) -> bool:
        if self.as_of and doc.date and doc.date > self.as_of:
            return False
        if self.articles is not None and doc.source not in self.articles:
            return False
        if self.source:
            needle = self.source.casefold()
            names = [doc.source, doc.publisher or ""]
            if not any(needle in name.casefold() for name in names):
                return False
        if self.since or self.until:
            if not doc.date:
                return False
            if self.since and doc.date < self.since:
                return False
            if self.until and doc.date > self.until:
                return False
        return True


def today() -> str:
    """The default date answers are as of."""
    return dt.date.today().isoformat()


def make_filters(
    source: str | None = None, since: str | None = None, until: str | None = None,
    as_of: str | None = None,
) -> Filters:
    """Validated filters from user input (QuestionError for a bad date or an empty range).
    ``as_of`` (a date, default none) hides articles published after it."""
    start, stop = parse_date(since, "since"), parse_date(until, "until")
    if start and stop and start > stop:
        raise QuestionError(f"--since {since} is after --until {until}: nothing can match")
    source = _storable(source.strip()) if source and source.strip() else None
    return Filters(source, start, stop, parse_date(as_of, "as-of"))


def _storable(text: str) -> str:
    """``text`` as UTF-8 can hold it, so SQLite can compare it: a file name's undecodable
    bytes (surrogate escapes, from a command line) as the backslash escapes stored source
    names have (``index.docs.printable``), any other lone surrogate (JSON's ``"\\ud800"``)
    as its escape; it then matches nothing."""
    try:
        return printable(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
