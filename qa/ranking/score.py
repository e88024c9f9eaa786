"""The relevance score (a weighted sum of features), confidence, and the refusal decision.

Each term of the score is a feature function and the ``RankingConfig`` field holding its
weight. ``LEXICAL`` terms are cheap and decide which passages get their sentences embedded;
``SEMANTIC`` terms need those embeddings. Adding a signal: a function in ``features``, a
field in ``RankingConfig``, a row here, and a test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from index.storage.lexical import Analyzer

from . import features
from .candidate import Candidate
from .config import RankingConfig
from .profile import Profile

Feature = Callable[[Candidate, Profile], float]

LEXICAL: tuple[tuple[str, Feature], ...] = (
    ("fused", features.fused),
    ("sentence", features.sentence),
    ("pairs", features.pairs),
    ("count", features.states_wanted_count),
    ("time", features.states_wanted_time),
    ("place", features.names_wanted_place),
    ("caption", features.is_caption),
    ("lead", features.is_lead),
    ("byline", features.is_byline),
    ("outlet", features.names_outlet),
    ("recency", features.recency),
    ("recency_cue", features.recency_cued),
)
SEMANTIC: tuple[tuple[str, Feature], ...] = (
    ("sentence_dense", features.sentence_similarity),
)


def weighted(
    c: Candidate, profile: Profile, config: RankingConfig,
    terms: Sequence[tuple[str, Feature]], start: float = 0.0,
) -> float:
    """``start`` plus the weighted sum of ``terms`` (in order, so sums are reproducible)."""
    score = start
    for name, feature in terms:
        score += getattr(config, name) * feature(c, profile)
    return score


def confidence(c: Candidate, missing: float, config: RankingConfig) -> float:
    """Evidence that ``c`` answers: its cosine, the share of the question's rare words one
    of its sentences holds, less the share held by names its article never uses."""
    value = config.confidence_dense * c.dense + config.confidence_sentence * c.sentence
    return value - config.missing_names * missing


NOT_CLOSE = "no passage in the archive answers it closely enough"
# Why, when the closest passages never state the kind of answer asked for (``Profile.answer``).
UNSTATED = {
    "money": "none of the closest passages states an amount of money",
    "measure": "none of the closest passages states a measure",
    "age": "none of the closest passages states an age",
    "year": "none of the closest passages states a year",
    "count": "none of the closest passages states how many",
    "time": "none of the closest passages states when",
}


def answers(
    profile: Profile,
    ranked: Sequence[Candidate],
    vocabulary: Callable[[int], set[str]],
    idf: features.Idf,
    known: Callable[[str], bool],
    analyzer: Analyzer,
    config: RankingConfig,
) -> tuple[bool, str | None]:
    """(whether the archive answers, and if not why). It does not when the question names
    someone or something no article mentions ("What did Merkel say …?" of an archive that
    never says "Merkel"); else when the best passage's evidence is strong enough, or, for
    "who wrote the VOA story?", when the named outlet's byline is among the results. When
    none of the best few passages states the kind of answer asked for ("How tall is the
    wall?" and not one measure), the evidence counts ``config.unstated`` less."""
    unknown = features.unknown_names(profile, known)
    if unknown:
        return False, "the archive never mentions " + " or ".join(unknown)
    # A byline says who wrote a story, not that the archive covers the question.
    evidence = [c for c in ranked if c.kind != "byline"] or list(ranked)
    ordered = sorted(evidence, key=lambda c: -c.score)  # stable: the first best stays first
    best = ordered[0]
    missing = features.missing_names(profile, idf, vocabulary(best.document.id))
    value = confidence(best, missing, config)
    unstated = not any(features.states_answer(profile, c, analyzer)
                       for c in ordered[: config.unstated_depth])
    if value - config.unstated * unstated >= config.min_confidence:
        return True, None
    if profile.asks_author and any(
        c.kind == "byline" and profile.names_outlet(c.document.publisher) for c in ranked
    ):
        return True, None
    if unstated and profile.answer is not None and value >= config.min_confidence:
        return False, UNSTATED[profile.answer]
    return False, NOT_CLOSE


def answers_learned(
    profile: Profile, ranked: Sequence[Candidate], config: RankingConfig,
) -> tuple[bool, str | None]:
    """The learned ordering's own threshold, asked once ``answers`` says yes: the best story
    passage's learned score reaches ``min_learned`` (fitted with the model so that few
    answerable questions fall below it), or a byline of the outlet a "who wrote the VOA
    story?" question names is among the results."""
    evidence = [c for c in ranked if c.kind != "byline"] or list(ranked)
    if evidence and evidence[0].score >= config.min_learned:
        return True, None
    if profile.asks_author and any(
        c.kind == "byline" and profile.names_outlet(c.document.publisher) for c in ranked
    ):
        return True, None
    return False, NOT_CLOSE
