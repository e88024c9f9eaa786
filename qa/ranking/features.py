"""Features of a candidate passage for a question: pure functions of their arguments.

SQuAD-style and news questions are usually a paraphrase of one sentence of the answering
passage, so the strongest signal beyond retrieval is how much of the question's rare
vocabulary one sentence holds (IDF-weighted, stemmed), and whether the question's word pairs
appear there in order. Title words count as covered for every sentence of their article: a
question names the subject ("… Super Bowl 50?") that the sentence leaves implicit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from index.storage.lexical import Analyzer

from . import places
from .candidate import Candidate
from .config import RankingConfig
from .kinds import CAPITALISED, NOT_NAMES
from .profile import Profile, Wanted, times

Idf = Callable[[str], float]


_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred hundreds thousand thousands million millions billion billions trillion dozen "
    "dozens".split()
)
_COUNT_TOKEN = re.compile(r"\d[\d,.]*|[\w'’-]+")
# A sentence that asks rather than states: a FAQ subhead ("Who won Super Bowl 57?").
_ASKS = re.compile(r"\?[\"'”’)\]]*\s*$")


def sentence_evidence(
    profile: Profile, idf: Idf, analyzer: Analyzer, candidate: Candidate, config: RankingConfig
) -> Candidate:
    """``candidate`` with its sentence evidence: per sentence, the share of the question's IDF
    mass it holds (title words always, words only the sentence before holds at
    ``config.context``); the best sentence by that share (then by in-order term pairs) with
    its share and pairs; and which sentences state the answer the question wants. A sentence
    that asks ("Who won Super Bowl 57?") holds ``config.asked`` of its share."""
    row = candidate.row
    weights = {t: idf(t) for t in profile.terms}
    total = sum(weights.values())
    if not total or not row.sentences:
        return replace(candidate, sentence=0.0, pairs=0.0, best=0,
                       shares=tuple(0.0 for _ in row.sentences), stating=frozenset())
    title = candidate.document.title
    title_terms = set(analyzer.terms(title)) if title else set()
    best = (-1.0, 0.0, 0)
    shares = []
    previous: set[str] = set()
    stating = set()
    for index in range(len(row.sentences)):
        sentence = candidate.sentence_text(index)
        tokens = analyzer.terms(sentence)
        present = set(tokens)
        covered = sum(w for t, w in weights.items() if t in present or t in title_terms)
        covered += config.context * sum(
            w for t, w in weights.items()
            if t in previous and t not in present and t not in title_terms
        )
        previous = present
        if _ASKS.search(sentence):
            covered *= config.asked
        found = 0.0
        if any(a in present and b in present for a, b in profile.pairs):
            adjacent = set(zip(tokens, tokens[1:], strict=False))
            found = len(profile.pairs & adjacent) / len(profile.pairs)
        share = covered / total
        shares.append(share)
        if (share, found) > best[:2]:
            best = (share, found, index)
        if profile.wanted is not None and states(sentence, profile.wanted, analyzer, config):
            stating.add(index)
    return replace(candidate, sentence=best[0], pairs=best[1], best=best[2],
                   shares=tuple(shares), stating=frozenset(stating))


def states(sentence: str, want: Wanted, analyzer: Analyzer, config: RankingConfig) -> bool:
    """Whether ``sentence`` states the kind of answer ``want`` asks for."""
    if want.kind == "count":
        return states_count(sentence, want.things, analyzer, config.count_window)
    return bool(times(sentence) - want.things)


def states_count(
    sentence: str, things: frozenset[str], analyzer: Analyzer, window: int = 2
) -> bool:
    """Whether ``sentence`` puts a number at most ``window`` words before one of ``things``
    (stems): "killed 25 people", "three Super Bowl titles", "hundreds of thousands of people"."""
    if not things:
        return False
    tokens = _COUNT_TOKEN.findall(sentence.lower())
    stems = analyzer.stem(tokens)
    for i, token in enumerate(tokens):
        if token[0].isdigit() or token in _NUMBER_WORDS:
            if any(stem in things for stem in stems[i + 1 : i + 1 + window]):
                return True
    return False


_NUMBER = r"(?:\d[\d,.]*|(?:" + "|".join(sorted(_NUMBER_WORDS)) + r"))"
_STATED = {
    "money": re.compile(
        r"[$£€¥]\s?\d|\b\d[\d,.]*\s*(?:dollars|euros|pounds|cents|yuan|yen|rupees|francs)\b"
        r"|\b(?:million|billion|trillion)\b|\b(?:USD|EUR|GBP)\b"
    ),
    "measure": re.compile(
        rf"(?i)\b{_NUMBER}(?:\s|-)*(?:feet|foot|ft|inch(?:es)?|yards?|miles?|meters?|metres?"
        r"|km|kilometers?|kilometres?|cm|centimeters?|mm|m|kg|kilograms?|pounds|lbs?|tons?"
        r"|tonnes?|stor(?:ey|ie|y)s?|floors?|acres?|hectares?|square|mph|knots|seconds?"
        r"|minutes?|hours?|days?|weeks?|months?|years?|decades?)\b"
    ),
    "age": re.compile(
        r"(?i)\b\d{1,3}(?:-| )years?(?:-| )old\b|\baged? \d{1,3}\b|\bage of \d{1,3}\b"
        r"|, \d{1,3},|\(\d{1,3}\)|\b(?:teens?|twenties|thirties|forties|fifties|sixties"
        r"|seventies|eighties|nineties)\b"
    ),
    "year": re.compile(r"\b(?:1[0-9]|20)\d\d\b"),
    "count": re.compile(rf"(?i)\b{_NUMBER}\b"),
}


def states_answer(profile: Profile, c: Candidate, analyzer: Analyzer) -> bool:
    """Whether some sentence of ``c`` states the kind of answer the question asks for
    (``profile.answer``): an amount of money, a measure, an age, a year the question does not
    give, a number in a sentence naming what it counts (any number when it names nothing),
    a time. True for a
    question that asks for no such kind."""
    kind = profile.answer
    if kind is None:
        return True
    text = c.row.text
    if kind == "year":
        return bool(set(_STATED["year"].findall(text)) - set(_STATED["year"].findall(profile.text)))
    if kind == "time":
        return bool(times(text) - times(profile.text))
    if kind == "count":
        things = profile.wanted.things if profile.wanted and profile.wanted.kind == "count" \
            else frozenset()
        if things:  # a number in a sentence naming what is counted: "from 3,000 to 2,500 troops"
            return any(
                _STATED["count"].search(s) and things & set(analyzer.stem(_COUNT_TOKEN.findall(
                    s.lower())))
                for s in c.sentence_texts()
            )
    return _STATED[kind].search(text) is not None


def missing_names(profile: Profile, idf: Idf, vocabulary: set[str]) -> float:
    """Share of the question's IDF mass held by names that ``vocabulary`` (an article's
    words) never uses: "What did Putin say about the attack?" asked of an archive whose best
    article never names Putin is not answered by it, however close the rest is."""
    total = sum(idf(t) for t in profile.terms)
    if not total:
        return 0.0
    missing = {t for t in profile.names if t in profile.terms and t not in vocabulary}
    return sum(idf(t) for t in sorted(missing)) / total


def unknown_names(profile: Profile, known: Callable[[str], bool]) -> list[str]:
    """The question's names (capitalised words after the first) with a term no indexed
    article uses anywhere (text, title, byline, outlet), as the question spells them;
    neighbours joined ("Angela Merkel")."""
    unknown: list[str] = []
    for word, terms in profile.name_words:
        if not terms or all(known(t) for t in terms):
            continue
        if unknown and f"{unknown[-1]} {word}" in profile.text:
            unknown[-1] = f"{unknown[-1]} {word}"
        else:
            unknown.append(word)
    return unknown


def wanted_weight(profile: Profile, config: RankingConfig) -> float:
    """What stating the wanted kind of answer is worth (``config.count`` or ``config.time``)."""
    if profile.wanted is None:
        return 0.0
    return config.count if profile.wanted.kind == "count" else config.time


# The features of the weighted relevance sum (see ``score``): each is 0 when it does not apply.

def fused(c: Candidate, profile: Profile) -> float:
    return c.fused


def sentence(c: Candidate, profile: Profile) -> float:
    return c.sentence


def pairs(c: Candidate, profile: Profile) -> float:
    return c.pairs


def states_wanted_count(c: Candidate, profile: Profile) -> float:
    wanted = profile.wanted
    return float(wanted is not None and wanted.kind == "count" and c.best in c.stating)


def states_wanted_time(c: Candidate, profile: Profile) -> float:
    wanted = profile.wanted
    return float(wanted is not None and wanted.kind == "time" and c.best in c.stating)


def is_caption(c: Candidate, profile: Profile) -> float:
    return float(c.kind == "caption")


def names_wanted_place(c: Candidate, profile: Profile) -> float:
    """1 when a "which country / which state" question meets a passage naming one that the
    question does not name itself."""
    if profile.place is None:
        return 0.0
    return float(bool(places.named(c.row.text, profile.place) - profile.places_given))


def is_lead(c: Candidate, profile: Profile) -> float:
    """1 for the first story passage of a dated news article that holds some of the
    question's words: news is written as an inverted pyramid, its lead paragraph stating who,
    what, where and when. A prior among passages with evidence, it never lifts a lead that
    holds none of the question above one that does."""
    return float(c.lead and c.sentence > 0)


def is_byline(c: Candidate, profile: Profile) -> float:
    return float(c.kind == "byline")


def names_outlet(c: Candidate, profile: Profile) -> float:
    return float(profile.names_outlet(c.document.publisher))


def recency(c: Candidate, profile: Profile) -> float:
    """How recent the article is as of the question's date: 1 on that day, halving every
    ``half_life`` days; 0 for undated articles (neither favoured nor dropped), without a date
    to answer as of, or when the question names another time ("in 2019")."""
    date = c.document.date
    if not date or not profile.as_of or profile.other_time:
        return 0.0
    age = days_before(profile.as_of, date)
    return 0.0 if age is None else 0.5 ** (max(age, 0) / profile.half_life)


def days_before(as_of: str, date: str) -> int | None:
    """Days from ``date`` to ``as_of`` (both YYYY-MM-DD); None when either is not a date."""
    import datetime as dt

    try:
        return (dt.date.fromisoformat(as_of) - dt.date.fromisoformat(date)).days
    except ValueError:
        return None


def recency_cued(c: Candidate, profile: Profile) -> float:
    """``recency`` again when the question asks about now ("this week", "recently", "new")."""
    return recency(c, profile) if profile.recent_cue else 0.0


def sentence_similarity(c: Candidate, profile: Profile) -> float:
    """Cosine of the best embedded sentence; past the embedded few, the passage's own cosine
    stands in (they correlate, r≈0.8 on squad-a: without it, being just below the cut costs a
    whole similarity term). A byline is not evidence about the story: 0."""
    if c.kind == "byline":
        return 0.0
    return max(c.similar.values(), default=0.0) if c.embedded else c.dense


def contenders(c: Candidate, config: RankingConfig) -> list[int]:
    """Sentences worth embedding: those whose lexical share is close to the best (at most
    ``config.highlight_embed``), so a long passage costs no more than a short one."""
    count = len(c.row.sentences)
    shares = list(c.shares) if len(c.shares) == count else [0.0] * count
    if not shares:
        return []
    top = max(shares)
    close = [i for i, share in enumerate(shares) if share >= top - config.highlight_margin]
    return sorted(close, key=lambda i: -shares[i])[: config.highlight_embed]


def best_sentence(c: Candidate, profile: Profile, config: RankingConfig) -> int:
    """The sentence that best answers: similarity to the question (of the contenders that
    were embedded) plus a share of its lexical evidence, plus what stating the wanted kind of
    answer is worth; the best lexical sentence when none was embedded."""
    count = len(c.row.sentences)
    shares = list(c.shares) if len(c.shares) == count else [0.0] * count
    if not c.similar:
        return c.best if 0 <= c.best < count else 0
    weight = wanted_weight(profile, config)
    naming = config.highlight_name if profile.asks_name else 0.0
    return max(
        c.similar,
        key=lambda i: c.similar[i] + config.highlight_lexical * shares[i]
        + weight * (i in c.stating)
        + (naming and naming * names_new(c.sentence_text(i), profile.words)),
    )


def names_new(sentence: str, given: frozenset[str]) -> bool:
    """Whether ``sentence`` names someone or something that the question (its casefolded
    words ``given``) does not: a capitalised word after the sentence's first, not a day, a
    month or a word that opens a clause."""
    for match in CAPITALISED.finditer(sentence):
        word = match.group().rstrip(".’'").casefold()
        if match.start() and word not in NOT_NAMES and word not in given:
            return True
    return False
