"""The query layer's facade: open an index once, answer many questions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import QuestionError
from index.model import MAX_TOKENS as MODEL_WINDOW
from index.pipeline import expected_manifest
from index.store import PassageRow, Store

from . import rerank
from .filters import Filters, allowed_passages, asks_for_latest, make_filters
from .group import same_finding
from .results import Answer, Citation, Highlight, Passage
from .search import Hit, candidates, order

# A cheap bound before tokenizing; the model's window (256 word pieces) is the real limit.
MAX_QUESTION_CHARS = 20_000
# C0/C1 control characters and lone surrogates (undecodable bytes from argv or a pipe) become
# spaces; bidirectional overrides, which can garble a terminal, are dropped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")

# Fusion of the dense and keyword scores: "blend" or "rrf" (measured in docs/EVALUATION.md).
FUSION = "blend"
# Candidates taken from each retriever before the final ordering.
POOL = 50
# The archive answers when the best result's confidence reaches this (calibrated in
# docs/EVALUATION.md on answerable squad-a questions against questions about other corpora).
MIN_CONFIDENCE = 0.56
# Confidence lost per share of the question's evidence held by names its best article never
# uses (``rerank.missing_names``; calibrated with MIN_CONFIDENCE).
C_MISSING = 0.3
C_DENSE, C_SENTENCE, C_SIMILAR = 1.0, 1.0, 0.0
# Results whose final score is this close to the best count as tied on relevance; for
# "latest …" questions, newer articles go first among them.
RECENCY_MARGIN = 0.05
# Candidates compared for grouping, per result asked for.
GROUP_DEPTH = 3
STAGES = ("dense", "bm25", "rrf", "fused", "final")


def clean_question(question: str) -> tuple[str, list[str]]:
    """Strip control characters and fit the model's window; empty → QuestionError.

    Returns the cleaned question and warnings for the user (e.g. that it was truncated).
    """
    warnings = []
    text = _BIDI.sub("", _CONTROL.sub(" ", question or ""))
    text = " ".join(text.split())
    if not text:
        raise QuestionError("the question is empty: ask something, e.g. qa ask \"Who said …?\"")
    if len(text) > MAX_QUESTION_CHARS:
        text = text[:MAX_QUESTION_CHARS]
    # Every word piece covers at least one character, so short questions always fit.
    if len(text) > MODEL_WINDOW - 2:
        kept = _fit_window(text)
        if kept < len(text):
            warnings.append(
                f"the question is longer than the model reads ({MODEL_WINDOW} word pieces): "
                f"using its first {kept:,} of {len(question):,} characters"
            )
            text = text[:kept].rstrip()
    return text, warnings



def _fit_window(text: str) -> int:
    """How many characters of ``text`` fit in the model's window, [CLS] and [SEP] included."""
    from index.embed import load_tokenizer

    tokenizer = load_tokenizer()
    offsets = tokenizer.encode(text).offsets
    if len(offsets) <= MODEL_WINDOW:
        return len(text)
    # offsets[0] is [CLS]: keep word pieces 1..254. A cut inside a word can tokenize into
    # more pieces than it had inside the whole word, so check and back off if needed.
    for keep in range(MODEL_WINDOW - 2, 0, -1):
        end = offsets[keep][1]
        if len(tokenizer.encode(text[:end]).ids) <= MODEL_WINDOW:
            return end
    return 0


@dataclass
class Scored:
    """A candidate passage with everything the final ordering and refusal look at."""

    hit: Hit
    row: PassageRow
    signals: rerank.Signals
    score: float


def confidence(dense: float, signals: rerank.Signals) -> float:
    """Evidence that a passage answers the question: the passage's cosine similarity, the
    share of the question's rare words one of its sentences holds, and how close in meaning
    its best sentence is."""
    return C_DENSE * dense + C_SENTENCE * signals.sentence + C_SIMILAR * signals.sentence_similarity


class Engine:
    """An index and its query encoder, loaded once."""

    def __init__(self, index_dir: Path, embedder: Any = None):
        self.index_dir = Path(index_dir)
        if embedder is None:
            from index.model import DIMENSION, MODEL_NAME

            expect = expected_manifest(MODEL_NAME, DIMENSION)
        else:
            expect = expected_manifest(embedder.name, embedder.dimension)
        self.store = Store(self.index_dir, expect=expect)
        self._embedder = embedder
        self._idf: rerank.Idf | None = None
        self._vocabularies: dict[int, set[str]] = {}

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from index.embed import OnnxEmbedder
            from index.model import MODEL_NAME
            from index.pipeline import ensure_query_model

            ensure_query_model(self.index_dir, MODEL_NAME)
            self._embedder = OnnxEmbedder(self.index_dir / "model.onnx")
        return self._embedder

    @property
    def idf(self) -> rerank.Idf:
        if self._idf is None:
            self._idf = rerank.Idf(self.store.bm25)
        return self._idf

    def ask(
        self,
        question: str,
        k: int = 5,
        *,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        filters: Filters | None = None,
        stage: str = "final",
    ) -> Answer:
        """The top ``k`` findings for ``question`` with citations and highlights.

        ``answered`` says whether the evidence is strong enough; the passages are returned
        either way, best first, so a front end can show the closest ones on request.
        ``source``/``since``/``until`` restrict the articles (see ``qa.filters.Filters``).
        ``stage`` orders by one retrieval stage only for measurement: "dense", "bm25",
        "fused" (the score blend in use) or "rrf" (reciprocal-rank fusion, the alternative);
        "final" is the full ordering with grouping of duplicate findings.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
        text, warnings = clean_question(question)
        if filters is None:
            filters = make_filters(source, since, until)
        query = self.embedder.embed_batch([text])[0]
        allowed = allowed_passages(self.store, filters)
        hits = candidates(self.store, text, query, max(POOL, 4 * k), allowed)
        if not hits:
            return Answer(question=text, answered=False, passages=[], warnings=warnings)
        if stage != "final":
            return self._stage(text, hits, k, stage, warnings)
        fused = order(hits, FUSION)
        for h in fused:
            h.fused = h.score
        scored = self._score(text, fused, query)
        answered = self._answers(text, scored)
        groups = self._group(self._final(text, scored), k)
        passages = []
        for rank, group in enumerate(groups, start=1):
            head = group[0]
            passages.append(
                Passage(
                    rank=rank,
                    score=round(head.score, 4),
                    text=head.row.text,
                    highlight=self._highlight(head),
                    citation=self.citation(head.row),
                    also=[self.citation(other.row) for other in group[1:]],
                )
            )
        return Answer(question=text, answered=answered, passages=passages, warnings=warnings)

    def _answers(self, question: str, scored: list[Scored]) -> bool:
        """Whether the evidence is strong enough to answer (see ``confidence``), less what
        names the best article never uses cost."""
        # A byline says who wrote a story, not that the archive covers the question.
        evidence = [s for s in scored if s.row.kind != "byline"] or scored
        best = max(evidence, key=lambda s: s.score)
        missing = rerank.missing_names(
            question, rerank.question_terms(question), self.idf, self._vocabulary(best.row.doc)
        )
        if confidence(best.hit.dense, best.signals) - C_MISSING * missing >= MIN_CONFIDENCE:
            return True
        # "Who wrote the VOA story?": the named outlet's byline answers it.
        return rerank.asks_for_author(question) and any(
            s.row.kind == "byline" and self._names_outlet(question, s.row.doc) for s in scored
        )

    def _stage(
        self, question: str, hits: list[Hit], k: int, stage: str, warnings: list[str]
    ) -> Answer:
        """One retrieval stage's ordering, for measurement: no re-ordering, grouping,
        highlight or refusal (``answered`` is always true)."""
        key = {"dense": "dense", "bm25": "bm25", "rrf": "rrf", "fused": FUSION}[stage]
        top = order(hits, key)[:k]
        rows = self.store.passages([h.id for h in top])
        passages = [
            Passage(rank, round(h.score, 4), row.text, None, self.citation(row))
            for rank, (h, row) in enumerate(zip(top, rows, strict=True), start=1)
        ]
        return Answer(question=question, answered=True, passages=passages, warnings=warnings)

    def _score(self, question: str, hits: list[Hit], query: np.ndarray) -> list[Scored]:
        idf = self.idf  # loads the index's analyzer settings before the question is split
        terms = rerank.question_terms(question)
        want = rerank.wanted(question)
        rows = self.store.passages([h.id for h in hits])
        scored = []
        for hit, row in zip(hits, rows, strict=True):
            title = self.store.documents[row.doc].title
            signals = rerank.signals(terms, idf, row, title, want)
            score = rerank.final_score(hit.fused, signals, row.kind)
            if self._names_outlet(question, row.doc):
                score += rerank.W_OUTLET
            scored.append(Scored(hit, row, signals, score))
        scored.sort(key=lambda s: (-s.score, s.hit.id))
        top = [s for s in scored if s.row.kind != "byline"][: rerank.RERANK_DEPTH]
        self._embed_sentences(top, query)
        embedded = {item.hit.id for item in top}
        for item in scored:
            if item.row.kind == "byline":
                continue
            # Past the embedded few, the passage's own cosine stands in for its best
            # sentence's (they correlate, r≈0.8 on squad-a): without it, being just below the
            # cut costs a whole similarity term and an answer there can fall out of the top k.
            similarity = (
                item.signals.sentence_similarity if item.hit.id in embedded else item.hit.dense
            )
            item.score += rerank.W_SENTENCE_DENSE * similarity
        if rerank.asks_for_author(question):
            scored = self._bylines(question, scored)
        return scored

    def _vocabulary(self, doc: int) -> set[str]:
        """The terms of an article's passages, title, author and outlet (cached)."""
        words = self._vocabularies.get(doc)
        if words is None:
            ids = [r[0] for r in self.store.db.execute(
                "SELECT id FROM passages WHERE doc = ?", (doc,)
            )]
            words = set()
            for row in self.store.passages(ids):
                words.update(rerank.analyze(row.text))
            meta = self.store.documents[doc]
            for field in (meta.title, meta.author, meta.publisher):
                words.update(rerank.analyze(field or ""))
            if len(self._vocabularies) >= 256:  # bounded: a server sees many articles
                self._vocabularies.pop(next(iter(self._vocabularies)))
            self._vocabularies[doc] = words
        return words

    def _names_outlet(self, question: str, doc: int) -> bool:
        return rerank.names_outlet(question, self.store.documents[doc].publisher)

    def _embed_sentences(self, items: list[Scored], query: np.ndarray) -> None:
        """Cosine to the question of each passage's contending sentences, one model call."""
        wanted = []
        for item in items:
            if item.signals.similar:
                continue
            for i in rerank.contenders(item.signals, len(item.row.sentences)):
                s, e = item.row.sentences[i]
                wanted.append((item, i, item.row.text[s - item.row.start : e - item.row.start]))
        if not wanted:
            return
        # Apart (unpadded, over both cores) where the embedder can; any embedder batches.
        embed = getattr(self.embedder, "embed_apart", None) or self.embedder.embed_batch
        similarity = embed([text for _, _, text in wanted]) @ query
        for (item, i, _), value in zip(wanted, similarity.tolist(), strict=True):
            item.signals.similar[i] = value

    def _bylines(self, question: str, scored: list[Scored]) -> list[Scored]:
        """For "who wrote …" questions, the byline of each of the best-matching articles goes
        just above that article's best passage: the question names the story, the byline
        answers it. Articles of an outlet the question names ("… the VOA article?") come
        first, their bylines above everything else."""
        best: dict[int, float] = {}
        for item in scored:
            if item.row.kind != "byline":
                best[item.row.doc] = max(best.get(item.row.doc, item.score), item.score)
        if not best:
            return scored
        lift = max(best.values()) - min(best.values()) + 1.0  # above every other article
        for doc in best:
            if self._names_outlet(question, doc):
                best[doc] += lift
        docs = sorted(best, key=lambda d: -best[d])[: rerank.AUTHOR_ARTICLES]
        marks = ",".join("?" * len(docs))
        ids = [r[0] for r in self.store.db.execute(
            f"SELECT id FROM passages WHERE kind = 'byline' AND doc IN ({marks})", docs
        )]
        known = {item.hit.id: item for item in scored}
        for row in self.store.passages(ids):
            byline = known.get(row.id)
            if byline is None:
                byline = Scored(Hit(row.id, 0.0, 0.0, 0.0), row, rerank.Signals(0.0, 0.0, 0), 0.0)
                scored.append(byline)
            byline.score = best[row.doc] + 1e-3
        return scored

    def _final(self, question: str, scored: list[Scored]) -> list[Scored]:
        ranked = sorted(scored, key=lambda s: (-s.score, s.hit.id))
        if asks_for_latest(question) and ranked:
            top = ranked[0].score
            close = [s for s in ranked if s.score >= top - RECENCY_MARGIN]
            rest = ranked[len(close):]
            docs = self.store.documents
            # Newest first among results tied on relevance; undated ones after dated ones.
            close.sort(key=lambda s: (docs[s.row.doc].date or "", s.score), reverse=True)
            ranked = close + rest
        return rerank.story_first(ranked, lambda s: s.row.kind, lambda s: s.signals.sentence)

    def _group(self, ranked: list[Scored], k: int) -> list[list[Scored]]:
        """Fold passages from other articles that report the same finding into one result.

        Only the first ``GROUP_DEPTH``·(k+1) candidates are compared: a repeated finding
        scores close to the one it repeats."""
        groups: list[list[Scored]] = []
        depth = GROUP_DEPTH * (k + 1)
        for position, item in enumerate(ranked):
            if len(groups) >= k and position >= depth:
                break
            best = rerank.best_sentence(item.signals, len(item.row.sentences))
            for group in groups if position < depth else ():
                head = group[0]
                if all(other.row.doc != item.row.doc for other in group) and same_finding(
                    head.row, rerank.best_sentence(head.signals, len(head.row.sentences)),
                    item.row, best,
                ):
                    group.append(item)
                    break
            else:
                if len(groups) < k:
                    groups.append([item])
        return groups

    def citation(self, row: PassageRow) -> Citation:
        doc = self.store.documents[row.doc]
        return Citation(
            source=doc.source, path=doc.path, title=doc.title, date=doc.date, author=doc.author,
            publisher=doc.publisher, start=row.start, end=row.end,
            date_inferred=doc.date_inferred,
        )

    def _highlight(self, item: Scored) -> Highlight | None:
        row = item.row
        if not row.sentences:
            return None
        if item.row.kind == "byline":
            best = 0  # the "By …" line (a date stamp may sit above it)
            for i, (s, e) in enumerate(row.sentences):
                if row.text[s - row.start : e - row.start].lower().startswith("by "):
                    best = i
                    break
        else:
            # Sentences of the best passages were embedded for the ordering; the others are
            # judged on their lexical evidence alone (no extra model call).
            best = rerank.best_sentence(item.signals, len(row.sentences))
        start, end = row.sentences[best]
        return Highlight(row.text[start - row.start : end - row.start], start, end)

    def close(self) -> None:
        self.store.close()


def answer(question: str, index_dir: Path, k: int = 5) -> Answer:
    """One-shot convenience: open the index, answer, close."""
    engine = Engine(index_dir)
    try:
        return engine.ask(question, k=k)
    finally:
        engine.close()
