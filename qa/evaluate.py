"""Measure answer quality: ask every question of a JSONL file and score what came back.

A question counts as answered at k when one of the top k results comes from a listed source and
contains one of the listed answers (case-insensitive, whitespace folded). A question with no
answers is off-topic: the engine should refuse it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import QAError

from .cite import citation
from .engine import Engine
from .filters import Filters
from .ranking.features import days_before
from .results import Answer, Passage
from .search import STAGES, order


class QuestionsError(QAError):
    """The questions file is missing or malformed."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    sources: tuple[str, ...]
    date: str | None = None  # the day it was asked: answers are as of then

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class Outcome:
    """What happened to one question."""

    id: str
    question: str
    answerable: bool
    answered: bool
    rank: int | None  # first rank holding an answer from a listed source
    source_rank: int | None  # first rank from a listed source
    seconds: float
    first: str | None  # source and opening words of what came first
    # Whether the answering passage's highlighted sentence holds the answer (None: no
    # answering passage, or a stage without highlights).
    highlighted: bool | None = None
    # Days from the newest listed source holding an answer to the question's date (None: the
    # question has no date, or no source dated by then holds one): ``source_age``.
    source_age: int | None = None
    # First rank holding an answer from any article, listed or not (``any_source_rank``).
    any_rank: int | None = None

    @property
    def refused_wrongly(self) -> bool:
        return self.answerable and not self.answered


@dataclass
class Report:
    stage: str
    ks: list[int]
    questions: int
    answerable: int
    hit: dict[int, float]
    source_hit: dict[int, float]
    mrr: float
    offtopic: int
    # None for a single retrieval stage, which does not decide refusals.
    refused_correctly: int | None
    refused_wrongly: int | None
    answered_offtopic: int | None
    # Of the questions answered in the top k, the share whose answering passage highlights
    # a sentence holding the answer (None for stages without highlights).
    highlight_hit: float | None
    latency_p50_ms: float
    latency_p95_ms: float
    missed: list[Outcome] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    ranking: dict[str, Any] = field(default_factory=dict)  # the RankingConfig it ran with
    # Dated questions grouped by how old the newest article holding their answer is
    # (``by_age``): whether misses come from the ranking or from an archive that holds the
    # answer string only in older, unrelated articles. Empty without dated questions.
    by_source_age: dict[str, dict[str, Any]] = field(default_factory=dict)
    # hit@k counting a passage from any article that holds an answer: how much of the gap to
    # ``hit`` is sources the question file does not list (news-a lists only the question's
    # own search results, and other articles of the archive report the same event).
    any_source_hit: dict[int, float] = field(default_factory=dict)

    def to_dict(self, details: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["hit"] = {str(k): v for k, v in self.hit.items()}
        data["source_hit"] = {str(k): v for k, v in self.source_hit.items()}
        data["any_source_hit"] = {str(k): v for k, v in self.any_source_hit.items()}
        for group in data["by_source_age"].values():
            group["hit"] = {str(k): v for k, v in group["hit"].items()}
        if not details:
            data.pop("outcomes")
        return data


def load_questions(path: Path) -> list[Question]:
    """Questions from a JSONL file of {"id", "question", "answers", "sources"} objects."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise QuestionsError(f"no questions file at {path}: pass a .jsonl file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise QuestionsError(f"cannot read {path} ({error}): pass a UTF-8 .jsonl file") from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            question = Question(
                id=str(item.get("id", number)),
                question=str(item["question"]),
                answers=tuple(str(a) for a in item.get("answers") or ()),
                sources=tuple(str(s) for s in item.get("sources") or ()),
                date=str(item["date"]) if item.get("date") else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise QuestionsError(
                f"{path}, line {number}: expected a JSON object with a \"question\" field "
                '(and "answers", "sources" lists)'
            ) from None
        questions.append(question)
    if not questions:
        raise QuestionsError(f"{path} holds no questions: one JSON object a line")
    return questions


def sample(questions: Sequence[Question], n: int | None) -> list[Question]:
    """``n`` questions spread evenly over the file (every len/n-th one), or all of them."""
    if not n or n >= len(questions):
        return list(questions)
    step = len(questions) / n
    return [questions[int(i * step)] for i in range(n)]


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _stem(source: str) -> str:
    return source.rsplit(".", 1)[0] if source.endswith((".txt", ".md")) else source


def judge(answer: Answer, question: Question, ks: Sequence[int]) -> tuple[int | None, int | None]:
    """(first rank with an answer from a listed source, first rank from a listed source).

    A result folded from several outlets counts for each of its sources: its text is the
    finding they share."""
    answers = [_fold(a) for a in question.answers]
    sources = set(question.sources)
    depth = max(ks)
    rank = source_rank = None
    for passage in answer.passages[:depth]:
        cited = {_stem(passage.citation.source)} | {_stem(c.source) for c in passage.also}
        if not cited & sources:
            continue
        if source_rank is None:
            source_rank = passage.rank
        text = _fold(passage.text)
        if rank is None and any(a in text for a in answers):
            rank = passage.rank
            break
    return rank, source_rank


def any_source_rank(answer: Answer, question: Question, depth: int) -> int | None:
    """First rank (up to ``depth``) whose passage holds one of the answers, whatever article
    it comes from."""
    answers = [_fold(a) for a in question.answers]
    for passage in answer.passages[:depth]:
        text = _fold(passage.text)
        if any(a in text for a in answers):
            return passage.rank
    return None


def highlighted(answer: Answer, question: Question, rank: int | None) -> bool | None:
    """Whether the passage at ``rank`` (the first answering one) highlights a sentence that
    holds one of the answers; None when there is no such passage or it has no highlight."""
    if rank is None:
        return None
    highlight = answer.passages[rank - 1].highlight
    if highlight is None:
        return None
    text = _fold(highlight.text)
    return any(_fold(a) in text for a in question.answers)


# An article at most this many days older than the question can report its event.
FRESH_DAYS = 60


def source_age(engine: Engine, question: Question) -> int | None:
    """Days from the newest of ``question``'s listed sources that holds one of its answers
    (dated on or before its date, as the judge reads passages) to its date; None when it has
    no date or no such source. A quiz about this week answered only by a years-old article
    that happens to contain the answer string is not a ranking miss."""
    if question.date is None or not question.answerable:
        return None
    answers = [_fold(a) for a in question.answers]
    ages = []
    for source in question.sources:
        document = engine.store.document_named(source)
        if document is None or not document.date or document.date > question.date:
            continue
        texts = (_fold(row.text) for row in engine.store.passages_of(document.id))
        if any(a in text for text in texts for a in answers):
            ages.append(days_before(question.date, document.date))
    return min((age for age in ages if age is not None), default=None)


def by_age(
    questions: Sequence[Question], outcomes: Sequence[Outcome], ks: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Answer-hit@k and MRR of the answerable dated questions whose answer some listed
    source ≤ ``FRESH_DAYS`` days old holds ("fresh"), only older ones hold ("older"), or no
    dated source holds ("none")."""
    groups: dict[str, list[Outcome]] = {"fresh": [], "older": [], "none": []}
    for question, o in zip(questions, outcomes, strict=True):
        if not o.answerable or question.date is None:
            continue
        if o.source_age is None:
            groups["none"].append(o)
        else:
            groups["fresh" if o.source_age <= FRESH_DAYS else "older"].append(o)
    return {
        key: {"questions": len(group),
              "hit": {k: sum(o.rank is not None and o.rank <= k for o in group) / len(group)
                      for k in ks},
              "mrr": sum(1 / o.rank for o in group if o.rank) / len(group)}
        for key, group in groups.items() if group
    }


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def asker(
    engine: Engine, stage: str = "final", filters: Filters | None = None
) -> Callable[..., Answer]:
    """``ask(question, k)`` for ``evaluate``: the engine's full answer ("final"), or one
    retrieval stage's ordering for measurement ("dense", "bm25", "rrf", "fused": no
    re-ordering, grouping, highlight or refusal; ``answered`` is always true)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")

    def dated(as_of: str | None) -> Filters | None:
        if as_of is None:
            return filters
        return replace(filters, as_of=as_of) if filters is not None else Filters(as_of=as_of)

    if stage == "final":
        return lambda question, k, as_of=None: engine.ask(question, k=k, filters=dated(as_of))

    def ask_stage(question: str, k: int, as_of: str | None = None) -> Answer:
        text, warnings = engine.clean(question)
        pool = engine.retrieve(text, engine.embed_question(text), k, dated(as_of))
        if not pool:
            return Answer(question=text, answered=False, passages=[], warnings=warnings)
        top = order(pool, stage, engine.ranking)[:k]
        passages = [
            Passage(rank, round(c.score, 4), c.row.text, None, citation(c.document, c.row))
            for rank, c in enumerate(top, start=1)
        ]
        return Answer(question=text, answered=True, passages=passages, warnings=warnings)

    return ask_stage


def _outcome(ask: Callable[..., Answer], question: Question, ks: Sequence[int],
             age: Callable[[Question], int | None] | None) -> Outcome:
    """Ask one question (as of its date, if it has one) and judge the answer."""
    depth = max(ks)
    began = time.perf_counter()
    answer = ask(question.question, depth, question.date) if question.date else \
        ask(question.question, depth)
    seconds = time.perf_counter() - began
    rank, source_rank = judge(answer, question, ks) if question.answerable else (None, None)
    first = None
    if answer.passages:
        top = answer.passages[0]
        first = f"{top.citation.source}: {' '.join(top.text.split()[:14])}…"
    return Outcome(question.id, question.question, question.answerable, answer.answered, rank,
                   source_rank, seconds, first, highlighted(answer, question, rank),
                   age(question) if age else None,
                   any_source_rank(answer, question, depth) if question.answerable else None)


def evaluate(
    ask: Callable[..., Answer],
    questions: Sequence[Question],
    ks: Sequence[int] = (1, 5, 10),
    stage: str = "final",
    progress: Callable[[int, int], None] | None = None,
    age: Callable[[Question], int | None] | None = None,
) -> Report:
    """Ask every question through ``ask(question, k)`` (``ask(question, k, date)`` for a
    question with a date: answered as of that day) and score the answers; with ``age``
    (``source_age`` of the index asked), dated questions are also scored by how old the
    newest article holding their answer is (``Report.by_source_age``)."""
    ks = sorted(set(ks))
    outcomes = []
    for done, question in enumerate(questions, start=1):
        outcomes.append(_outcome(ask, question, ks, age))
        if progress:
            progress(done, len(questions))
    answerable = [o for o in outcomes if o.answerable]
    offtopic = [o for o in outcomes if not o.answerable]
    n = len(answerable) or 1
    latencies = [o.seconds * 1000 for o in outcomes]
    final = stage == "final"
    return Report(
        stage=stage,
        ks=list(ks),
        questions=len(outcomes),
        answerable=len(answerable),
        hit={k: sum(o.rank is not None and o.rank <= k for o in answerable) / n for k in ks},
        source_hit={
            k: sum(o.source_rank is not None and o.source_rank <= k for o in answerable) / n
            for k in ks
        },
        mrr=sum(1 / o.rank for o in answerable if o.rank) / n,
        any_source_hit={
            k: sum(o.any_rank is not None and o.any_rank <= k for o in answerable) / n for k in ks
        },
        offtopic=len(offtopic),
        refused_correctly=sum(not o.answered for o in offtopic) if final else None,
        refused_wrongly=sum(o.refused_wrongly for o in answerable) if final else None,
        answered_offtopic=sum(o.answered for o in offtopic) if final else None,
        highlight_hit=_share([o.highlighted for o in answerable if o.highlighted is not None]),
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        missed=[o for o in answerable if o.rank is None or o.rank > 1],
        outcomes=outcomes,
        by_source_age=by_age(questions, outcomes, ks) if age else {},
    )


def docs_for(questions: Path, docs: Path | None = None) -> Path | None:
    """The articles a questions file is asked of: ``docs``, else a ``docs/`` folder beside
    the file when there is one (None: the default docs)."""
    if docs is None and (questions.parent / "docs").is_dir():
        return questions.parent / "docs"
    return docs


def evaluate_engine(engine: Engine, questions: Sequence[Question], ks: Sequence[int] = (1, 5, 10),
                    stage: str = "final", filters: Filters | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Report:
    """``evaluate`` over ``engine`` asked at ``stage`` (``asker``), dated questions scored by
    source age too, the report naming the ranking the engine answered with."""
    report = evaluate(asker(engine, stage, filters), questions, ks, stage=stage,
                      progress=progress, age=lambda q: source_age(engine, q))
    report.ranking = engine.ranking.to_dict()
    return report
