"""Ordered passes over the ranked list: bylines, recency, captions, then grouping."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from index.storage.lexical import Analyzer

from .candidate import Candidate
from .config import RankingConfig
from .features import best_sentence, days_before
from .profile import Profile

# Placing rather than scoring: a byline goes just above its article's best passage, and the
# articles of an outlet the question names go above every other article.
_JUST_ABOVE = 1e-3
_ABOVE_ALL = 1.0


def bylines(
    profile: Profile,
    ranked: list[Candidate],
    fetch: Callable[[list[int]], list[Candidate]],
    config: RankingConfig,
) -> list[Candidate]:
    """For "who wrote …" questions, the byline of each of the best-matching articles goes
    just above that article's best passage: the question names the story, the byline answers
    it. Articles of an outlet the question names ("… the VOA article?") come first.
    ``fetch`` gives the byline candidates of some articles."""
    best: dict[int, float] = {}
    for c in ranked:
        if c.kind != "byline":
            doc = c.document.id
            best[doc] = max(best.get(doc, c.score), c.score)
    if not best:
        return ranked
    lift = max(best.values()) - min(best.values()) + _ABOVE_ALL
    named = {c.document.id for c in ranked if profile.names_outlet(c.document.publisher)}
    for doc in best:
        if doc in named:
            best[doc] += lift
    docs = sorted(best, key=lambda d: -best[d])[: config.author_articles]
    known = {c.id: c for c in ranked}
    for byline in fetch(docs):
        if byline.id in known:
            byline = known[byline.id]
        else:
            ranked.append(byline)
        byline.score = best[byline.document.id] + _JUST_ABOVE
    return ranked


def recency(profile: Profile, ranked: list[Candidate], config: RankingConfig) -> list[Candidate]:
    """For "latest …" questions, newest first among the results tied on relevance (within
    ``recency_margin`` of the best); undated ones after dated ones."""
    if not profile.asks_latest or not ranked:
        return ranked
    top = ranked[0].score
    close = [c for c in ranked if c.score >= top - config.recency_margin]
    rest = ranked[len(close):]
    close.sort(key=lambda c: (c.document.date or "", c.score), reverse=True)
    return close + rest


def stale(profile: Profile, shown: Sequence[Candidate], config: RankingConfig) -> str | None:
    """A note for a question about now ("this week", "recently") whose passages all come
    from articles published more than ``stale_days`` before the date it is asked as of: the
    archive answers about an older time, and the reader should know. None otherwise (no
    cue, another time named, no date to compare, or a recent enough article shown)."""
    if not profile.recent_cue or profile.other_time or not profile.as_of or not shown:
        return None
    dates = [c.document.date for c in shown if c.document.date]
    if not dates:
        return None
    newest = max(dates)
    age = days_before(profile.as_of, newest)
    if age is None or age <= config.stale_days:
        return None
    return (f"the question asks about recent events, but the newest article shown is from "
            f"{newest}, {age:,} days before {profile.as_of}: the archive may not cover them")


def captions(ranked: Sequence[Candidate]) -> list[Candidate]:
    """Every photo caption moved below the story passages that hold at least as much of the
    question's evidence as it does.

    A caption describes a picture of what the story reports, so when a story sentence carries
    the question's words as fully as the caption, the story is the better answer and source;
    a caption keeps its place only above story passages with less evidence (it still answers
    when nothing in the stories does). The order is otherwise unchanged.
    """
    keys = []
    for i, c in enumerate(ranked):
        if c.kind != "caption":
            keys.append((i, 0, i))
            continue
        below = [
            j for j in range(i + 1, len(ranked))
            if ranked[j].kind == "text" and ranked[j].sentence >= c.sentence
        ]
        keys.append((below[-1] if below else i, 1, i))
    return [ranked[i] for i in sorted(range(len(ranked)), key=keys.__getitem__)]


def ordering_scores(ranked: list[Candidate]) -> list[Candidate]:
    """Each score capped at the one above it, so scores read in rank order: the passes that
    move a result (recency, captions) decide the order, and the score shown is the order's."""
    for above, c in zip(ranked, ranked[1:], strict=False):
        c.score = min(c.score, above.score)
    return ranked


def group(
    ranked: Sequence[Candidate], k: int, profile: Profile, analyzer: Analyzer,
    config: RankingConfig,
) -> list[list[Candidate]]:
    """Up to ``k`` findings: passages of other articles that report the same finding as an
    earlier one are folded into it. Only the first ``group_depth``·(k+1) candidates are
    compared: a repeated finding scores close to the one it repeats."""
    groups: list[list[Candidate]] = []
    heads_best: list[int] = []  # each group's head's answering sentence
    depth = config.group_depth * (k + 1)
    for position, c in enumerate(ranked):
        if len(groups) >= k and position >= depth:
            break
        best = best_sentence(c, profile, config)
        for found, head_best in zip(groups if position < depth else (), heads_best,
                                    strict=False):
            if all(other.document.id != c.document.id for other in found) and same_finding(
                found[0], head_best, c, best, analyzer, config
            ):
                found.append(c)
                break
        else:
            if len(groups) < k:
                groups.append([c])
                heads_best.append(best)
    return groups


def same_finding(
    head: Candidate, head_best: int, other: Candidate, other_best: int, analyzer: Analyzer,
    config: RankingConfig,
) -> bool:
    """Whether ``other``'s answering sentence repeats a sentence of ``head`` (or the reverse)."""
    head_sentences, other_sentences = head.sentence_texts(), other.sentence_texts()
    mine = head_sentences[min(head_best, len(head_sentences) - 1)]
    theirs = other_sentences[min(other_best, len(other_sentences) - 1)]
    return any(near_duplicate(theirs, s, analyzer, config) for s in head_sentences) or any(
        near_duplicate(mine, s, analyzer, config) for s in other_sentences
    )


def near_duplicate(a: str, b: str, analyzer: Analyzer, config: RankingConfig) -> bool:
    """Whether two sentences say the same thing in (nearly) the same words: quotes and wire
    copy survive re-editing with punctuation and a word or two changed."""
    ta, tb = analyzer.term_set(a), analyzer.term_set(b)
    small = min(len(ta), len(tb))
    if small < config.group_min_terms:
        return False
    return len(ta & tb) / small >= config.group_min_shared
