"""Cross-outlet grouping: the same fact reported by several articles reads as one finding."""

from __future__ import annotations

from functools import lru_cache

from index.store import PassageRow

from .rerank import _tokens

# Two sentences report the same thing when the shorter one's terms are (almost) all in the
# longer one: quotes and wire copy survive re-editing with punctuation and a word or two
# changed.
MIN_TERMS = 6
MIN_SHARED = 0.8


@lru_cache(maxsize=65536)
def _terms(sentence: str) -> frozenset[str]:
    return frozenset(_tokens(sentence))


def _sentences(row: PassageRow) -> list[str]:
    return [row.text[s - row.start : e - row.start] for s, e in row.sentences] or [row.text]


def near_duplicate(a: str, b: str) -> bool:
    """Whether two sentences say the same thing in (nearly) the same words."""
    ta, tb = _terms(a), _terms(b)
    small = min(len(ta), len(tb))
    if small < MIN_TERMS:
        return False
    return len(ta & tb) / small >= MIN_SHARED


def same_finding(head: PassageRow, head_best: int, other: PassageRow, other_best: int) -> bool:
    """Whether ``other``'s answering sentence repeats a sentence of ``head`` (or the reverse):
    then both passages carry the same finding."""
    head_sentences, other_sentences = _sentences(head), _sentences(other)
    mine = head_sentences[min(head_best, len(head_sentences) - 1)]
    theirs = other_sentences[min(other_best, len(other_sentences) - 1)]
    return any(near_duplicate(theirs, s) for s in head_sentences) or any(
        near_duplicate(mine, s) for s in other_sentences
    )
