"""The query layer's facade: open an index once, answer many questions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import QuestionError
from index.model import MAX_TOKENS as MODEL_WINDOW
from index.pipeline import expected_manifest
from index.store import PassageRow, Store

from .results import Answer, Citation, Highlight, Passage

# Cosine similarity of the best passage below which the archive is taken not to answer.
MIN_CONFIDENCE = 0.35
# A cheap bound before tokenizing; the model's window (256 word pieces) is the real limit.
MAX_QUESTION_CHARS = 20_000
# C0/C1 control characters and lone surrogates (undecodable bytes from argv or a pipe) become
# spaces; bidirectional overrides, which can garble a terminal, are dropped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


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

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from index.embed import OnnxEmbedder
            from index.model import MODEL_NAME
            from index.pipeline import ensure_query_model

            ensure_query_model(self.index_dir, MODEL_NAME)
            self._embedder = OnnxEmbedder(self.index_dir / "model.onnx")
        return self._embedder

    def ask(self, question: str, k: int = 5) -> Answer:
        """The top ``k`` passages for ``question`` with citations and highlights."""
        from .search import hybrid_search

        text, warnings = clean_question(question)
        query = self.embedder.embed_batch([text])[0]
        hits = hybrid_search(self.store, text, query, n=max(50, k * 10))[:k]
        rows = self.store.passages([h.id for h in hits])
        passages = []
        for rank, (hit, row) in enumerate(zip(hits, rows, strict=True), start=1):
            passages.append(
                Passage(
                    rank=rank,
                    score=round(hit.dense, 4),
                    text=row.text,
                    highlight=self._highlight(row, query),
                    citation=self.citation(row),
                )
            )
        answered = bool(hits) and max(h.dense for h in hits) >= MIN_CONFIDENCE
        return Answer(question=text, answered=answered, passages=passages, warnings=warnings)

    def citation(self, row: PassageRow) -> Citation:
        doc = self.store.documents[row.doc]
        return Citation(
            source=doc.source, path=doc.path, title=doc.title, date=doc.date, author=doc.author,
            publisher=doc.publisher, start=row.start, end=row.end,
            date_inferred=doc.date_inferred,
        )

    def _highlight(self, row: PassageRow, query: np.ndarray) -> Highlight | None:
        if not row.sentences:
            return None
        texts = [row.text[s - row.start : e - row.start] for s, e in row.sentences]
        vectors = self.embedder.embed_batch(texts)
        best = int(np.argmax(vectors @ query))
        start, end = row.sentences[best]
        return Highlight(texts[best], start, end)

    def close(self) -> None:
        self.store.close()


def answer(question: str, index_dir: Path, k: int = 5) -> Answer:
    """One-shot convenience: open the index, answer, close."""
    engine = Engine(index_dir)
    try:
        return engine.ask(question, k=k)
    finally:
        engine.close()
