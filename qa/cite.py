"""Citations and highlights: where a passage comes from and which sentence answers."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from index.docs import read_regular
from index.errors import QAError
from index.storage.reader import Store
from index.storage.rows import DocumentRow, PassageRow

from .ranking import Candidate, Profile, RankingConfig
from .ranking.features import best_sentence
from .results import Citation, Highlight


def citation(document: DocumentRow, row: PassageRow) -> Citation:
    return Citation(
        source=document.source, path=document.path, url=document.url, title=document.title,
        date=document.date,
        author=document.author, publisher=document.publisher, start=row.start, end=row.end,
        date_inferred=document.date_inferred,
    )


def highlight(c: Candidate, profile: Profile, config: RankingConfig) -> Highlight | None:
    """The answering sentence: a byline's "By …" line; otherwise the best sentence (those of
    the best passages were embedded for the ordering, the others judged on lexical evidence)."""
    row = c.row
    if not row.sentences:
        return None
    if c.kind == "byline":
        best = 0  # the "By …" line (a date stamp may sit above it)
        for i in range(len(row.sentences)):
            if c.sentence_text(i).lower().startswith("by "):
                best = i
                break
    else:
        best = best_sentence(c, profile, config)
    start, end = row.sentences[best]
    return Highlight(c.sentence_text(best), start, end)


def citation_text(rank: int | None, c: Citation) -> str:
    """``[n] title — outlet, date``: unknown metadata said so, never guessed."""
    date = c.date or "undated"
    if c.date and c.date_inferred:
        date += " (inferred)"
    head = f"[{rank}] " if rank is not None else ""
    return f"{head}{c.title or c.source} — {c.publisher or 'unknown outlet'}, {date}"


class UnknownSource(QAError):
    """No article of the index has that source name."""


def article(store: Store, source: str) -> tuple[dict[str, Any], list[str]]:
    """The article ``source`` names in ``store``, as citations refer to it: its metadata and
    the text its offsets index (the stored article text for non-text formats, the file's
    text for .txt/.md). Returns it with warnings (a text file changed since it was
    indexed)."""
    doc = store.document_named(source)
    if doc is None:
        near = store.sources_like(source)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise UnknownSource(f"no article {source!r} in the index at {store.index_dir}{hint}: "
                            "use the source name a citation gives")
    text = store.stored_text(doc.id) if doc.stored else None
    warnings = []
    if text is None:
        try:
            data = read_regular(Path(doc.path))
        except OSError as error:
            raise QAError(f"cannot read {doc.path} ({error.strerror or error}): it may have "
                          "moved; run `qa index update`") from None
        if hashlib.sha256(data).hexdigest() != doc.sha256:
            warnings.append(f"{doc.path} changed since it was indexed: offsets may not match;"
                            " run `qa index update`")
        text = data.decode(doc.encoding, "replace")
    return {
        "source": doc.source, "url": doc.url, "path": doc.path, "title": doc.title,
        "date": doc.date, "author": doc.author, "publisher": doc.publisher,
        "language": doc.language, "text": text,
    }, warnings
