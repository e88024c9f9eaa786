"""The final ordering of retrieved passages, and whether they answer the question.

``rank`` runs the steps in order: sentence evidence per candidate → the lexical score →
sentence embeddings for the best few → the semantic score → bylines → the answer/refuse
decision → recency → captions → scores capped to read in rank order. ``passes.group`` then
folds repeated findings. Every weight and threshold is a field of ``RankingConfig``; features
are pure functions (``features``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from index.storage.lexical import Analyzer

from . import features, learned, passes, score
from .candidate import Candidate
from .config import RankingConfig, RankingConfigError
from .profile import Profile, analyse

__all__ = [
    "Archive", "Candidate", "Profile", "RankingConfig", "RankingConfigError", "analyse",
    "hand_order", "learned_order", "prepare", "rank",
]


@dataclass(frozen=True)
class Archive:
    """What the ranking reads from the open index, and the model that embeds sentences."""

    analyzer: Analyzer
    idf: Callable[[str], float]
    vocabulary: Callable[[int], set[str]]  # an article's terms (passages, title, names)
    known: Callable[[str], bool]  # whether any article uses a term
    bylines: Callable[[list[int]], list[Candidate]]  # byline candidates of some articles
    embed: Callable[[list[str]], np.ndarray]  # normalised sentence vectors


def rank(
    profile: Profile,
    candidates: list[Candidate],
    archive: Archive,
    query: np.ndarray,
    config: RankingConfig,
) -> tuple[bool, str | None, list[Candidate]]:
    """(whether the archive answers, why not when it does not, the candidates best first)."""
    ranked = prepare(profile, candidates, archive, query, config)
    if config.model:
        return learned_order(profile, ranked, archive, config)
    return hand_order(profile, ranked, archive, config)


def prepare(
    profile: Profile,
    candidates: list[Candidate],
    archive: Archive,
    query: np.ndarray,
    config: RankingConfig,
) -> list[Candidate]:
    """The candidates with their sentence evidence, sentence embeddings for the best few by
    the lexical score, and the hand-weighted score (``score.LEXICAL`` + ``SEMANTIC``)."""
    candidates = [
        features.sentence_evidence(profile, archive.idf, archive.analyzer, c, config)
        for c in candidates
    ]
    for c in candidates:
        c.score = score.weighted(c, profile, config, score.LEXICAL)
    ranked = sorted(candidates, key=lambda c: (-c.score, c.id))
    top = [c for c in ranked if c.kind != "byline"][: config.rerank_depth]
    embed_sentences(top, query, archive.embed, config)
    for c in ranked:
        c.score = score.weighted(c, profile, config, score.SEMANTIC, start=c.score)
    return ranked


def hand_order(
    profile: Profile, ranked: list[Candidate], archive: Archive, config: RankingConfig,
) -> tuple[bool, str | None, list[Candidate]]:
    """The hand-weighted ordering: bylines, the confidence rule, recency, captions."""
    if profile.asks_author:
        ranked = passes.bylines(profile, ranked, archive.bylines, config)
    answered, reason = score.answers(profile, ranked, archive.vocabulary, archive.idf,
                                     archive.known, archive.analyzer, config)
    ranked = sorted(ranked, key=lambda c: (-c.score, c.id))
    ranked = passes.recency(profile, ranked, config)
    return answered, reason, passes.ordering_scores(passes.captions(ranked))


def learned_order(
    profile: Profile, ranked: list[Candidate], archive: Archive, config: RankingConfig,
) -> tuple[bool, str | None, list[Candidate]]:
    """The learned ordering (``config.model``, see ``learned``): the model's score orders the
    candidates. The archive answers when the hand score's confidence rule says so (as
    ``hand_order``) and the model's best story passage reaches ``config.min_learned``."""
    answered, reason = score.answers(profile, ranked, archive.vocabulary, archive.idf,
                                     archive.known, archive.analyzer, config)
    head, tail = ranked[: config.learned_depth], ranked[config.learned_depth :]
    values = learned.scores(learned.load(config.model), profile, head, archive.idf,
                            archive.analyzer, config)
    for c, value in zip(head, values.tolist(), strict=True):
        c.score = value
    floor = min(values.tolist(), default=0.0) - 1.0
    for i, c in enumerate(tail):  # below every re-ordered one, in the hand order
        c.score = floor - i * 1e-3
    ranked = head + tail
    if profile.asks_author:
        ranked = passes.bylines(profile, ranked, archive.bylines, config)
    ranked = sorted(ranked, key=lambda c: (-c.score, c.id))
    if answered:
        answered, reason = score.answers_learned(profile, ranked, config)
    return answered, reason, passes.ordering_scores(passes.captions(ranked))


def embed_sentences(
    top: list[Candidate], query: np.ndarray, embed: Callable[[list[str]], np.ndarray],
    config: RankingConfig,
) -> None:
    """Cosine to the question of each passage's contending sentences, in one model call."""
    wanted = []
    for c in top:
        c.embedded = True
        for i in features.contenders(c, config):
            wanted.append((c, i, c.sentence_text(i)))
    if not wanted:
        return
    similarity = embed([text for _, _, text in wanted]) @ query
    for (c, i, _), value in zip(wanted, similarity.tolist(), strict=True):
        c.similar[i] = value
