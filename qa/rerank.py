"""The final ordering: re-score the fused candidates with signals a passage-level score misses.

SQuAD-style and news questions are usually a paraphrase of one sentence of the answering
passage, so the strongest extra signal is how much of the question's rare vocabulary one
sentence of the passage holds (IDF-weighted, stemmed), and whether the question's word pairs
appear there in order. Title words count as covered for every sentence of their article: a
question names the subject ("… Super Bowl 50?") that the sentence leaves implicit; words of
the sentence before count at half weight, for the same reason ("… the strikes, which …").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from index import lexical
from index.store import PassageRow

# Weights of the final score (tuned on squad-a; see docs/EVALUATION.md).
W_FUSED = 1.0
W_SENTENCE = 0.6
W_PAIRS = 0.2
# A question term found only in the sentence before counts this much: "… US air raids against
# bases of Kataib Hezbollah. Washington said the air strikes, which killed 25 people, …" —
# the answer's sentence refers back to what the one before named.
W_CONTEXT = 0.5
# What kind of answer the question asks for (``wanted``): "How many people were killed …?"
# asks for a count of people, and a sentence that states one ("… which killed 25 people")
# answers it where one that only shares the question's words ("… a US contractor, prompting
# US air strikes") does not; "When …?" / "What year …?" asks for a time the question does not
# already give. Added when the best sentence states such an answer (chosen on squad-a).
W_COUNT = 0.2
W_TIME = 0.1
COUNT_WINDOW = 2  # the counted word may follow the number by this many words ("25 more people")
# Cosine of the best sentence, measured on the RERANK_DEPTH best passages only: embedding
# sentences is the costly part of a query (one model call for all of them, at most
# HIGHLIGHT_EMBED sentences per passage). Other passages use their passage cosine instead.
W_SENTENCE_DENSE = 0.6
RERANK_DEPTH = 5
# A question that names an outlet ("the VOA report") is about that outlet's articles.
W_OUTLET = 0.2
# A photo caption restates the story; it should not outrank the story itself (see also
# ``story_first``).
CAPTION_PENALTY = 0.1
BYLINE_PENALTY = 0.5
# Articles whose byline can answer a question about authorship.
AUTHOR_ARTICLES = 3
HIGHLIGHT_LEXICAL = 2.0  # the lexical share dominates; similarity breaks near-ties (qa eval)
HIGHLIGHT_MARGIN = 0.2  # sentences this close to the best lexical share are embedded
HIGHLIGHT_EMBED = 2  # at most this many of them

_AUTHORSHIP = re.compile(
    r"\b(?:who|which|what)\b[^?]{0,40}?\b(?:wrote|authored|penned|filed)\b|\bwritten by\b"
    r"|\b(?:author|byline|correspondent)s?\b",
    re.IGNORECASE,
)


def names_outlet(question: str, publisher: str | None) -> bool:
    """Whether the question names the article's outlet ("… the VOA report …", "… in Epoch
    Times …" for The Epoch Times)."""
    name = re.sub(r"(?i)^the\s+", "", publisher or "").strip()
    if not name:
        return False
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", question, re.IGNORECASE) is not None


def asks_for_author(question: str) -> bool:
    """Whether the question is about who wrote an article (bylines answer it)."""
    return bool(_AUTHORSHIP.search(question))


_WORD = re.compile(r"(?u)\b\w\w+\b")


# The stop words of the loaded BM25 index (saved beside it by every build, the same English
# list each time); set when an Idf is made so the query path never imports bm25s.
_index_stopwords: frozenset[str] | None = None


@lru_cache(maxsize=1)
def _analyzer() -> tuple[frozenset[str], Any]:
    if _index_stopwords is not None:
        return _index_stopwords, lexical._stemmer()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN), lexical._stemmer()


def analyze(text: str) -> tuple[str, ...]:
    """The BM25 index's terms for ``text`` (bm25s's English analysis: lowercase words of 2+
    characters, stop words out, Snowball stems), without bm25s's per-call overhead."""
    stopwords, stemmer = _analyzer()
    words = [w for w in _WORD.findall(text.lower()) if w not in stopwords]
    return tuple(stemmer.stemWords(words))


# Sentences and questions recur from query to query; whole articles go through ``analyze``.
_tokens = lru_cache(maxsize=65536)(analyze)


# Words that make a sentence a question but say nothing about its answer. bm25s's English
# stop list (33 words) keeps them, so "who" in a question would count as evidence in any
# sentence with a relative clause ("Biden, who has said …").
QUESTION_WORDS = frozenset(
    "who whom whose what which when where why how did does do many much".split()
)


def question_terms(question: str) -> list[str]:
    """The question's terms for the sentence evidence: its BM25 terms without the question
    words (all of them when it has nothing else)."""
    terms = _tokens(question)
    content = [t for t in terms if t not in _question_stems()]
    return content or list(terms)


@lru_cache(maxsize=1)
def _question_stems() -> frozenset[str]:
    return frozenset(lexical._stemmer().stemWords(sorted(QUESTION_WORDS)))


_NAME = re.compile(r"(?<!^)\b[A-Z][\w'’.-]*")


def name_terms(question: str) -> list[str]:
    """Terms of the capitalised words after the first (names: "Putin", "Germany", "VOA")."""
    terms: list[str] = []
    for match in _NAME.finditer(question.strip()):
        word = match.group()
        word = word[:-2] if word.endswith(("'s", "’s")) else word.rstrip(".")
        terms.extend(_tokens(word))
    return terms


def missing_names(question: str, terms: Sequence[str], idf: Idf, vocabulary: set[str]) -> float:
    """Share of the question's IDF mass (``terms``) held by names that ``vocabulary`` (an
    article's words) never uses: "What did Putin say about the attack?" asked of an archive
    whose best article never names Putin is not answered by it, however close the rest is."""
    total = sum(idf(t) for t in terms)
    if not total:
        return 0.0
    missing = {t for t in name_terms(question) if t in terms and t not in vocabulary}
    return sum(idf(t) for t in missing) / total


_HOW_MANY = re.compile(r"\bhow\s+(?:many|much)\s+((?:[\w'’-]+\s*){1,3})", re.IGNORECASE)
# Words that end the counted phrase: "how many people were killed" counts people.
_PHRASE_END = frozenset(
    "a an the of did does do is are was were be been has have had will would can could should "
    "may might must in on at to for by from with that which who there it its their his her "
    "this these those".split()
)
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred hundreds thousand thousands million millions billion billions trillion dozen "
    "dozens".split()
)
_COUNT_TOKEN = re.compile(r"\d[\d,.]*|[\w'’-]+")


@dataclass(frozen=True)
class Wanted:
    """The kind of answer a question asks for: ``"count"`` of ``things`` (stems) or
    ``"time"`` other than ``things`` (the time expressions the question gives itself)."""

    kind: str
    things: frozenset[str]
    weight: float


_WHEN = re.compile(
    r"\b(?:when|(?:what|which) (?:year|month|day|date|decade|century))\b", re.IGNORECASE
)
# Month and weekday names only capitalised: "may" and "march" are also a verb and a noun.
_TIME = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"
    r"|\b(?:1\d|20)\d\d(?:s\b|\b)|\b\d{1,2}(?:st|nd|rd|th) (?i:century)\b|\b\d0s\b"
)


@lru_cache(maxsize=1024)
def wanted(question: str) -> Wanted | None:
    """What the question asks for, when a sentence can be seen to state it: a count ("How
    many people …", see ``counted``) or a time ("When …", "What year …"); None otherwise."""
    things = counted(question)
    if things:
        return Wanted("count", things, W_COUNT)
    if _WHEN.search(question):
        return Wanted("time", times(question), W_TIME)
    return None


def times(text: str) -> frozenset[str]:
    """The time expressions of ``text``: month and weekday names, years, decades, centuries."""
    return frozenset(match.lower() for match in _TIME.findall(text))


def states(sentence: str, want: Wanted) -> bool:
    """Whether ``sentence`` states the kind of answer ``want`` asks for."""
    if want.kind == "count":
        return states_count(sentence, want.things)
    return bool(times(sentence) - want.things)


@lru_cache(maxsize=1024)
def counted(question: str) -> frozenset[str]:
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
    return frozenset(lexical._stemmer().stemWords(words))


def states_count(sentence: str, things: frozenset[str]) -> bool:
    """Whether ``sentence`` puts a number before one of ``things`` (stems, see ``counted``):
    "killed 25 people", "three Super Bowl titles", "hundreds of thousands of people"."""
    if not things:
        return False
    tokens = _COUNT_TOKEN.findall(sentence.lower())
    stems = lexical._stemmer().stemWords(tokens)
    for i, token in enumerate(tokens):
        if token[0].isdigit() or token in _NUMBER_WORDS:
            if any(stem in things for stem in stems[i + 1 : i + 1 + COUNT_WINDOW]):
                return True
    return False


class Idf:
    """Inverse document frequency of stemmed terms, read from the BM25 index (cached)."""

    def __init__(self, bm25: Any):
        global _index_stopwords
        self.bm25 = bm25
        stopwords = getattr(bm25, "stopwords", None)
        if stopwords is not None and stopwords != _index_stopwords:
            _index_stopwords = frozenset(stopwords)
            _analyzer.cache_clear()
            _tokens.cache_clear()
        self.n = self._count()
        self.cache: dict[str, float] = {}

    def _count(self) -> int:
        scores = getattr(self.bm25, "scores", None)
        if isinstance(scores, dict) and "num_docs" in scores:
            return int(scores["num_docs"])
        return len(lexical.scores(self.bm25, "the"))

    def __call__(self, term: str) -> float:
        value = self.cache.get(term)
        if value is None:
            df = 0
            if term in getattr(self.bm25, "vocab_dict", {}):
                df = int((self.bm25.get_scores([term]) > 0).sum())
            value = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
            self.cache[term] = value
        return value


@dataclass
class Signals:
    sentence: float  # best share of the question's IDF mass held by one sentence (+ title)
    pairs: float  # share of the question's adjacent term pairs found in order in that sentence
    best: int  # index of that sentence in the passage
    per_sentence: tuple[float, ...] = ()  # the IDF share of each sentence
    similar: dict[int, float] = field(default_factory=dict)  # cosine of embedded sentences
    # Sentences stating the kind of answer the question asks for (see ``wanted``), and what
    # that is worth.
    stating: frozenset[int] = frozenset()
    weight: float = 0.0

    @property
    def states_wanted(self) -> float:
        """``weight`` if the best sentence states the kind of answer the question wants."""
        return self.weight if self.best in self.stating else 0.0

    @property
    def sentence_similarity(self) -> float:
        return max(self.similar.values(), default=0.0)


def signals(
    question_terms: Sequence[str],
    idf: Idf | Callable[[str], float],
    row: PassageRow,
    title: str | None,
    want: Wanted | None = None,
) -> Signals:
    """Sentence-level lexical evidence that ``row`` answers the question: per sentence, the
    share of the question's IDF mass it holds (title words always, words only the sentence
    before holds at ``W_CONTEXT``), and which sentences state the kind of answer the
    question asks for (``want``, see ``wanted``)."""
    weights = {t: idf(t) for t in question_terms}
    total = sum(weights.values())
    if not total or not row.sentences:
        return Signals(0.0, 0.0, 0, tuple(0.0 for _ in row.sentences))
    title_terms = set(_tokens(title)) if title else set()
    pairs = {(a, b) for a, b in zip(question_terms, question_terms[1:], strict=False) if a != b}
    best = (-1.0, 0.0, 0)
    shares = []
    previous: set[str] = set()
    stating = set()
    for index, (start, end) in enumerate(row.sentences):
        sentence = row.text[start - row.start : end - row.start]
        tokens = _tokens(sentence)
        present = set(tokens)
        covered = sum(w for t, w in weights.items() if t in present or t in title_terms)
        covered += W_CONTEXT * sum(
            w for t, w in weights.items()
            if t in previous and t not in present and t not in title_terms
        )
        previous = present
        found = 0.0
        if pairs:
            adjacent = set(zip(tokens, tokens[1:], strict=False))
            found = len(pairs & adjacent) / len(pairs)
        score = covered / total
        shares.append(score)
        if (score, found) > best[:2]:
            best = (score, found, index)
        if want is not None and states(sentence, want):
            stating.add(index)
    return Signals(
        best[0], best[1], best[2], tuple(shares),
        stating=frozenset(stating), weight=want.weight if want else 0.0,
    )


def final_score(fused: float, s: Signals, kind: str) -> float:
    """The final ordering score. A byline passage is no evidence about the story's content
    (``qa.engine`` ranks it by its article for questions about authorship)."""
    score = W_FUSED * fused + W_SENTENCE * s.sentence + W_PAIRS * s.pairs + s.states_wanted
    if kind == "caption":
        score -= CAPTION_PENALTY
    elif kind == "byline":
        score -= BYLINE_PENALTY
    return score


T = TypeVar("T")


def story_first(
    ranked: Sequence[T], kind: Callable[[T], str], evidence: Callable[[T], float]
) -> list[T]:
    """``ranked`` with every photo caption moved below the story passages that hold at least
    as much of the question's evidence as the caption does.

    A caption describes a picture of what the story reports, so when a story sentence carries
    the question's words as fully as the caption, the story is the better answer and source;
    a caption keeps its place only above story passages with less evidence (it still answers
    when nothing in the stories does). The order is otherwise unchanged.
    """
    keys = []
    for i, item in enumerate(ranked):
        if kind(item) != "caption":
            keys.append((i, 0, i))
            continue
        level = evidence(item)
        below = [
            j for j in range(i + 1, len(ranked))
            if kind(ranked[j]) == "text" and evidence(ranked[j]) >= level
        ]
        keys.append((below[-1] if below else i, 1, i))
    return [ranked[i] for i in sorted(range(len(ranked)), key=keys.__getitem__)]


def contenders(s: Signals, count: int) -> list[int]:
    """Sentences of a passage worth embedding: those whose lexical share is close to its best
    (at most ``HIGHLIGHT_EMBED``), so a long passage costs no more than a short one."""
    shares = list(s.per_sentence) if len(s.per_sentence) == count else [0.0] * count
    if not shares:
        return []
    top = max(shares)
    close = [i for i, share in enumerate(shares) if share >= top - HIGHLIGHT_MARGIN]
    return sorted(close, key=lambda i: -shares[i])[:HIGHLIGHT_EMBED]


def best_sentence(s: Signals, count: int) -> int:
    """Index of the sentence that best answers: embedding similarity to the question (of the
    contenders that were embedded) plus a share of its lexical evidence, and the weight of
    the kind of answer the question asks for if it states one (see ``wanted``)."""
    shares = list(s.per_sentence) if len(s.per_sentence) == count else [0.0] * count
    if not s.similar:
        return s.best if 0 <= s.best < count else 0
    return max(
        s.similar,
        key=lambda i: s.similar[i] + HIGHLIGHT_LEXICAL * shares[i] + s.weight * (i in s.stating),
    )
