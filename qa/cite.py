"""Citations and highlights: where a passage comes from and which sentence answers."""

from __future__ import annotations

from index.store import DocumentRow, PassageRow

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
