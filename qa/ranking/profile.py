"""The question, analysed once: its terms, the names it uses, what kind of answer it wants."""

from __future__ import annotations

import re
from dataclasses import dataclass

from index.storage.lexical import Analyzer

from . import kinds, places

# Words that make a sentence a question but say nothing about its answer. bm25s's English
# stop list (33 words) keeps them, so "who" in a question would count as evidence in any
# sentence with a relative clause ("Biden, who has said …").
QUESTION_WORDS = ("who whom whose what which when where why how did does do many much").split()

_AUTHORSHIP = re.compile(
    r"(?i)\b(?:who|which|what)\b[^?]{0,40}?\b(?:wrote|authored|penned|filed)\b"
    r"|\bwritten by\b|\b(?:author|byline|correspondent)s?\b"
)
_NAME = re.compile(r"(?<!^)\b[A-Z][\w'’.-]*")
_LATEST = re.compile(
    r"\b(?:latest|most recent(?:ly)?|newest|current(?:ly)?|now|recent(?:ly)?|so far|to date"
    r"|still|as of)\b",
    re.IGNORECASE,
)
# Words that ask about now: the newest articles near the question's date answer them.
_RECENT = re.compile(
    r"(?i)\b(?:this (?:week|weekend|month|year|season)|recent(?:ly)?|new(?:ly)?|latest|just"
    r"|last (?:week|weekend|month|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
    r"|today|yesterday|upcoming|currently|now)\b"
)
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d\b")
# Questions whose answer is a name: "Who …", "Which automaker …", "What is the name of …".
_ASKS_NAME = re.compile(r"(?i)^(?:who|whom|whose)\b|\bwhich\b|\bwhat(?:'s|’s| is| was) the name\b")
_WORD = re.compile(r"[\w’'.&-]+")
_HOW_MANY = re.compile(r"\bhow\s+(?:many|much)\s+((?:[\w'’-]+\s*){1,3})", re.IGNORECASE)
# Words that end the counted phrase: "how many people were killed" counts people.
_PHRASE_END = frozenset(
    "a an the of did does do is are was were be been has have had will would can could should "
    "may might must in on at to for by from with that which who there it its their his her "
    "this these those".split()
)
_WHEN = re.compile(
    r"\b(?:when|(?:what|which) (?:year|month|day|date|decade|century))\b", re.IGNORECASE
)
# Month and weekday names only capitalised: "may" and "march" are also a verb and a noun.
_TIME = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"
    r"|\b(?:1\d|20)\d\d(?:s\b|\b)|\b\d{1,2}(?:st|nd|rd|th) (?i:century)\b|\b\d0s\b"
)


# The kind of answer a question asks for, as the refusal checks that the closest passages
# state one ("How tall is the wall?" of an archive that never gives its height): amounts of
# money, measures, ages, years and counts are visible in text without a tagger.
_ASKS_MONEY = re.compile(
    r"(?i)\bhow much\b(?:[^?]{0,60}?\b(?:cost|costs|spen[dt]|pa(?:y|id)|worth|price|fine[ds]?"
    r"|charge[ds]?|earn(?:ed|s)?|owe[ds]?|s[oe]ld?|raised?|money|budget|funding|salary)\b)"
)
_ASKS_MEASURE = re.compile(r"(?i)\bhow (?:tall|high|long|far|deep|wide|heavy|big|large|fast)\b")
_ASKS_AGE = re.compile(r"(?i)\bhow old\b")
_ASKS_COUNT = re.compile(r"(?i)\bhow many\b")
_ASKS_YEAR = re.compile(
    r"(?i)\b(?:(?:what|which) year\b|when (?:was|were|is|did)\b[^?]{0,60}?\b(?:founded|found"
    r"|built|build|born|established|establish|constructed|construct|created|create|formed"
    r"|form|invented|invent|discovered|discover)\b)"
)


def answer_kind(question: str) -> str | None:
    """What a question asks for, when a passage can be seen to state one: "money" ("How much
    did it cost?"), "measure" ("How tall …", "How long …"), "age" ("How old …"), "year" ("What
    year …", "When was it founded?"), "count" ("How many …") or "time" ("When …"); else None."""
    asks = (("money", _ASKS_MONEY), ("measure", _ASKS_MEASURE), ("age", _ASKS_AGE),
            ("year", _ASKS_YEAR), ("count", _ASKS_COUNT), ("time", _WHEN))
    return next((kind for kind, pattern in asks if pattern.search(question)), None)


@dataclass(frozen=True)
class Wanted:
    """The kind of answer a question asks for: ``"count"`` of ``things`` (stems) or
    ``"time"`` other than ``things`` (the time expressions the question gives itself)."""

    kind: str
    things: frozenset[str]


@dataclass(frozen=True)
class Profile:
    """What the ranking needs to know about a question, computed once per question."""

    text: str
    terms: tuple[str, ...]  # its terms for sentence evidence (see ``question_terms``)
    pairs: frozenset[tuple[str, str]]  # adjacent distinct term pairs
    names: tuple[str, ...]  # terms of its capitalised words after the first
    name_words: tuple[tuple[str, tuple[str, ...]], ...]  # each such word and its terms
    wanted: Wanted | None
    asks_author: bool
    asks_latest: bool
    # Time: the date answers are as of, whether the question asks about now ("this week",
    # "recently"), and whether it names another time ("in 2019": no recency then).
    as_of: str | None = None
    recent_cue: bool = False
    other_time: bool = False
    half_life: float = 30.0  # days over which an article's recency prior halves
    # "Which country / which state …": the kind of place wanted, and those the question names.
    place: str | None = None
    places_given: frozenset[str] = frozenset()
    answer: str | None = None  # ``answer_kind``: what the refusal checks a passage states
    asks_name: bool = False  # "who / which …": the answering sentence names someone new
    words: frozenset[str] = frozenset()  # the question's words, casefolded
    kind: str | None = None  # ``kinds.asked``: a person, place, organisation, number, date, money

    def names_outlet(self, publisher: str | None) -> bool:
        return names_outlet(self.text, publisher)


def analyse(
    question: str, analyzer: Analyzer, as_of: str | None = None, half_life: float = 30.0
) -> Profile:
    terms = question_terms(question, analyzer)
    words = name_words(question, analyzer)
    years = set(_YEAR.findall(question))
    place = asks_for_place(question)
    return Profile(
        as_of=as_of,
        recent_cue=bool(_RECENT.search(question)),
        other_time=bool(years - ({as_of[:4]} if as_of else set())),
        half_life=half_life,
        text=question,
        terms=tuple(terms),
        pairs=frozenset((a, b) for a, b in zip(terms, terms[1:], strict=False) if a != b),
        names=tuple(t for _, terms in words for t in terms),
        name_words=tuple(words),
        wanted=wanted(question, analyzer),
        asks_author=asks_for_author(question),
        asks_latest=asks_for_latest(question),
        place=place,
        places_given=places.named(question, place) if place else frozenset(),
        answer=answer_kind(question),
        asks_name=bool(_ASKS_NAME.search(question)),
        words=frozenset(word.casefold() for word in _WORD.findall(question)),
        kind=kinds.asked(question),
    )


_PLACE = re.compile(r"(?i)\b(?:which|what)\s+(?:[\w.’'-]+\s+)?(country|nation|state)(?![\w-])")


def asks_for_place(question: str) -> str | None:
    """"country" or "state" when the question asks which one ("Which US state …", "What
    African country …"); None otherwise."""
    match = _PLACE.search(question)
    if not match:
        return None
    return "state" if match.group(1).lower() == "state" else "country"


def question_terms(question: str, analyzer: Analyzer) -> list[str]:
    """The question's BM25 terms without the question words (all of them when it has
    nothing else)."""
    terms = analyzer.terms(question)
    skip = set(analyzer.stem(QUESTION_WORDS))
    return [t for t in terms if t not in skip] or list(terms)


def name_words(question: str, analyzer: Analyzer) -> list[tuple[str, tuple[str, ...]]]:
    """The capitalised words after the first (names: "Putin", "Germany", "VOA"), each with
    its terms (none for a stop word such as "The")."""
    words = []
    for match in _NAME.finditer(question.strip()):
        word = match.group()
        word = word[:-2] if word.endswith(("'s", "’s")) else word.rstrip(".")
        words.append((word, tuple(analyzer.terms(word))))
    return words


def name_terms(question: str, analyzer: Analyzer) -> list[str]:
    """Terms of the capitalised words after the first."""
    return [t for _, terms in name_words(question, analyzer) for t in terms]


def names_outlet(question: str, publisher: str | None) -> bool:
    """Whether the question names the outlet ("… the VOA report …", "… in Epoch Times …" for
    The Epoch Times)."""
    name = re.sub(r"(?i)^the\s+", "", publisher or "").strip()
    if not name:
        return False
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", question, re.IGNORECASE) is not None


def asks_for_author(question: str) -> bool:
    """Whether the question is about who wrote an article (bylines answer it)."""
    return bool(_AUTHORSHIP.search(question))


def asks_for_latest(question: str) -> bool:
    """Whether the question asks for the latest state of things ("most recent", "now", …)."""
    return bool(_LATEST.search(question))


def wanted(question: str, analyzer: Analyzer) -> Wanted | None:
    """What the question asks for, when a sentence can be seen to state it: a count ("How
    many people …", see ``counted``) or a time ("When …", "What year …"); None otherwise."""
    things = counted(question, analyzer)
    if things:
        return Wanted("count", things)
    if _WHEN.search(question):
        return Wanted("time", times(question))
    return None


def counted(question: str, analyzer: Analyzer) -> frozenset[str]:
    """Stems of what a "how many …" / "how much …" question counts (empty for others):
    "How many Super Bowl titles …" → {super, bowl, titl}."""
    match = _HOW_MANY.search(question)
    if not match:
        return frozenset()
    words = []
    for word in match.group(1).lower().split():
        if word in _PHRASE_END:
            break
        words.append(word)
    return frozenset(analyzer.stem(words))


def times(text: str) -> frozenset[str]:
    """The time expressions of ``text``: month and weekday names, years, decades, centuries."""
    return frozenset(match.lower() for match in _TIME.findall(text))
