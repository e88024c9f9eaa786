"""The query pipeline over one open index: clean → embed → retrieve → rank → group → present."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import IndexDamaged, QuestionError
from index.models.embedder import OnnxEmbedder, load_tokenizer
from index.models.export import (
    INT8_FILE,
    ONNX_FILE,
    check_query_model,
    ensure_query_model,
    export_folder,
    stamp_time,
)
from index.models.spec import DEFAULT, ModelSpec, from_manifest
from index.storage.lexical import Analyzer
from index.storage.manifest import expected
from index.storage.reader import Store

from .cite import citation, highlight
from .filters import Filters
from .ranking import Archive, Candidate, Profile, RankingConfig, analyse, rank
from .ranking.passes import group, stale
from .results import Answer, Passage
from .search import retrieve

# A cheap bound before tokenizing; the model's window (256 word pieces by default) is the
# real limit.
MAX_QUESTION_CHARS = 20_000
# C0/C1 control characters and lone surrogates (undecodable bytes from argv or a pipe) become
# spaces; bidirectional overrides, which can garble a terminal, are dropped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
VOCABULARY_CACHE = 256  # articles; a server sees many
# Why a question got no passages at all.
NOTHING = "nothing in the archive matches it"
NOTHING_ALLOWED = "nothing in the articles the filters allow matches it"


def clean_question(question: str, window: int = DEFAULT.window,
                   tokenizer: Path | None = None) -> tuple[str, list[str]]:
    """Strip control characters and fit the model's ``window`` (word pieces by the
    ``tokenizer.json`` at ``tokenizer``, default: the default model's); empty → QuestionError.

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
    if len(text) > window - 2:
        kept = _fit_window(text, window, tokenizer)
        if kept < len(text):
            warnings.append(
                f"the question is longer than the model reads ({window} word pieces): "
                f"using its first {kept:,} of {len(question):,} characters"
            )
            text = text[:kept].rstrip()
    return text, warnings


def _fit_window(text: str, window: int, path: Path | None) -> int:
    """How many characters of ``text`` fit in the model's window, [CLS] and [SEP] included."""
    tokenizer = load_tokenizer(path)
    offsets = tokenizer.encode(text).offsets
    if len(offsets) <= window:
        return len(text)
    # offsets[0] is [CLS]: keep word pieces 1..window-2. A cut inside a word can tokenize into
    # more pieces than it had inside the whole word, so check and back off if needed.
    for keep in range(window - 2, 0, -1):
        end = offsets[keep][1]
        if len(tokenizer.encode(text[:end]).ids) <= window:
            return end
    return 0


def fold_accents(word: str) -> str:
    """``word`` without combining accents ("beyoncé" → "beyonce")."""
    import unicodedata

    return "".join(ch for ch in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(ch))


def one_edit(word: str) -> Iterator[str]:
    """Every string one deletion, transposition, substitution or insertion (a–z) away."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(len(word) + 1):
        head, tail = word[:i], word[i:]
        if tail:
            yield head + tail[1:]
            for ch in letters:
                yield head + ch + tail[1:]
        if len(tail) > 1:
            yield head + tail[1] + tail[0] + tail[2:]
        for ch in letters:
            yield head + ch + tail


class Engine:
    """An index, its analyzer and its query encoder, loaded once; answers many questions.

    The model is the one the index's manifest names (``index.models.spec``): its export in
    the index, its tokenizer and window; two engines over indexes built with two models
    answer side by side."""

    def __init__(
        self, index_dir: Path, embedder: Any = None, ranking: RankingConfig | None = None,
        model_cache: Path | None = None, previous: Engine | None = None,
    ):
        """``embedder`` stands in for the model (tests); ``model_cache``: where the query
        model is exported once for every index (``index.models.export.ensure_query_model``),
        if it has to be exported. A server that reopens a new version passes the engine it
        served (``previous``): its encoders serve on when the model is the same."""
        self.index_dir = Path(index_dir)
        self.model_cache = model_cache
        self.store = Store(self.index_dir, expect=expected(embedder))
        try:
            self.model: ModelSpec = (DEFAULT if embedder is not None else
                                     from_manifest(self.store.manifest["model"], self.index_dir))
        except BaseException:
            self.store.close()
            raise
        self.ranking = ranking or RankingConfig()
        self._embedder = embedder
        self._sentence_embedder: Any = None
        if previous is not None:
            model, query, sentences = previous.encoders()
            if model.same_model(self.model):
                self._embedder, self._sentence_embedder = query, sentences
        self.given_embedder = embedder  # None: the model the manifest names
        self._vocabularies: OrderedDict[int, set[str]] = OrderedDict()
        self._metadata_terms: set[str] | None = None
        self._vocabulary_lock = threading.Lock()  # servers answer on several threads

    def encoders(self) -> tuple[ModelSpec, Any, Any]:
        """(model, question encoder, sentence encoder) as loaded so far (None: not yet)."""
        return self.model, self._embedder, self._sentence_embedder

    @property
    def embedder(self) -> Any:
        """The question encoder: the fp32 ONNX export of the model (or the one given)."""
        if self._embedder is None:
            self._embedder = self._load(ONNX_FILE, optimized=True)
        return self._embedder

    @property
    def sentence_embedder(self) -> Any:
        """The encoder of the sentences the re-ranking compares with the question: the int8
        ONNX copy that embedded the passages (~2.5x faster than fp32 on the handful of
        sentences a question embeds, vectors within cosine ~0.99; docs/EVALUATION.md), or
        the embedder given."""
        if self._sentence_embedder is None and self.given_embedder is not None:
            return self.given_embedder
        if self._sentence_embedder is None:
            self._sentence_embedder = self._load(INT8_FILE, optimized=False)
        return self._sentence_embedder

    def _load(self, name: str, optimized: bool) -> Any:
        folder = export_folder(self.index_dir, self.model)
        ensure_query_model(folder, self.model, cache=self.model_cache, int8=True)
        check_query_model(folder)
        tokenizer = self._tokenizer()
        try:
            return OnnxEmbedder(folder / name, tokenizer, optimized=optimized, model=self.model)
        except Exception as error:  # onnxruntime's own errors for a file it cannot load
            raise IndexDamaged(
                f"index at {self.index_dir} is damaged (the model file {name} cannot be "
                "loaded): run `qa index build`"
            ) from error

    def _tokenizer(self) -> Path | None:
        """The model's tokenizer.json, its files checked against the manifest's digests
        (those not modified since the index's export was made are taken as they are)."""
        if self.given_embedder is not None:
            return None
        try:
            made = stamp_time(export_folder(self.index_dir, self.model))
        except OSError:
            made = None
        return self.model.tokenizer(trusted_before=made)

    def clean(self, question: str) -> tuple[str, list[str]]:
        """``clean_question`` for this index's model."""
        if len(question) <= self.model.window - 2:  # fits whatever its word pieces
            return clean_question(question, self.model.window)
        return clean_question(question, self.model.window, self._tokenizer())

    @property
    def analyzer(self) -> Analyzer:
        """The index's own analyzer (the stop words it was built with)."""
        return self.store.bm25.analyzer

    def ask(self, question: str, k: int = 5, filters: Filters | None = None) -> Answer:
        """The top ``k`` findings for ``question`` with citations and highlights.

        ``answered`` says whether the evidence is strong enough; the passages are returned
        either way, best first, so a front end can show the closest ones on request
        (``Answer.to_dict`` applies the contract). ``filters`` restrict the articles.
        """
        text, warnings = self.clean(question)
        vector = self._question_vector(text)
        pool = self.retrieve(text, vector, k, filters)
        query = vector()
        if not pool:
            return Answer(question=text, answered=False, passages=[], warnings=warnings,
                          reason=NOTHING if filters is None or not filters.restricts(
                              self.store.latest_date) else NOTHING_ALLOWED)
        as_of = filters.as_of if filters else None
        profile = analyse(text, self.analyzer, as_of, self.ranking.half_life)
        answered, reason, ranked = rank(profile, pool, self._archive(), query, self.ranking)
        groups = group(ranked, k, profile, self.analyzer, self.ranking)
        note = stale(profile, [found[0] for found in groups], self.ranking) if answered else None
        if note:
            warnings.append(note)
        passages = [self._present(n, found, profile) for n, found in enumerate(groups, start=1)]
        return Answer(question=text, answered=answered, passages=passages, warnings=warnings,
                      reason=reason)

    def embed_question(self, text: str) -> np.ndarray:
        return self.embedder.embed_batch([text])[0]

    def _question_vector(self, text: str) -> Callable[[], np.ndarray]:
        """The question's vector, to be had by calling: the model runs on another thread
        meanwhile where the embedder can (the keyword search needs no vector)."""
        submit = getattr(self.embedder, "submit", None)
        if submit is None:
            query = self.embed_question(text)
            return lambda: query
        future = submit([text])
        return lambda: future.result()[0]

    def retrieve(
        self, text: str, query: np.ndarray | Callable[[], np.ndarray], k: int,
        filters: Filters | None = None,
    ) -> list[Candidate]:
        """The candidate pool for a cleaned question, ordered by the fused retrieval score.
        ``query``: its vector, or a call that gives it (asked for after the keyword search)."""
        allowed = None
        if filters is not None and filters.restricts(self.store.latest_date):
            allowed = self.store.passage_mask(as_of=filters.as_of, since=filters.since,
                                              until=filters.until, source=filters.source,
                                              articles=filters.articles)
        n = max(self.ranking.pool, 4 * k)
        return retrieve(self.store, text, query, n, allowed, self.ranking)

    def _present(self, rank: int, found: list[Candidate], profile: Profile) -> Passage:
        head = found[0]
        return Passage(
            rank=rank,
            score=round(head.score, 4),
            text=head.row.text,
            highlight=highlight(head, profile, self.ranking),
            citation=citation(head.document, head.row),
            also=[citation(other.document, other.row) for other in found[1:]],
        )

    def _archive(self) -> Archive:
        # Apart (unpadded, over both cores) where the embedder can; any embedder batches.
        embedder = self.sentence_embedder
        embed = getattr(embedder, "embed_apart", None) or embedder.embed_batch
        return Archive(
            analyzer=self.analyzer,
            idf=self.store.bm25.idf,
            vocabulary=self._vocabulary,
            known=self._known,
            bylines=self._bylines,
            embed=embed,
        )

    def _bylines(self, docs: list[int]) -> list[Candidate]:
        return [
            Candidate(row, self.store.document(row.doc), 0.0, 0.0)
            for row in self.store.bylines_of(docs)
        ]

    def _known(self, term: str) -> bool:
        """Whether some article may use ``term``, as far as a refusal may assume: it is in a
        passage (the keyword index's vocabulary), a title, byline or outlet name, or a
        spelling away from one: accents dropped ("Beyonce"), one letter off in a word of 5
        or more ("Melanchhon"), a plural the stemmer kept ("DVDs"), or two known words run
        together ("Superbowl"). Short words and
        words with digits ("RB", "O3") are never held against a question."""
        vocab = self.store.bm25.vocab_dict
        if term in vocab or len(term) <= 3 or any(ch.isdigit() for ch in term):
            return True
        if self._metadata_terms is None:
            # Saved at build time; an index from before that reads every article's once.
            saved = self.store.bm25.metadata_terms
            terms: set[str] = set(saved or ())
            if saved is None:
                for text in self.store.metadata_texts():
                    terms.update(self.analyzer.analyze(text))
            accented = [t for t in vocab if not t.isascii()]
            terms.update(fold_accents(t) for t in accented)
            terms.update(self.analyzer.stem([fold_accents(t) for t in accented]))
            self._metadata_terms = terms
        seen = self._metadata_terms

        def has(word: str) -> bool:
            return word in vocab or word in seen

        if has(term) or has(fold_accents(term)) or (term.endswith("s") and has(term[:-1])):
            return True
        if len(term) >= 5 and any(has(variant) for variant in one_edit(term)):
            return True
        return any(has(term[:i]) and has(term[i:]) for i in range(3, len(term) - 2))

    def _vocabulary(self, doc: int) -> set[str]:
        """The terms of an article's passages, title, author and outlet (bounded cache)."""
        with self._vocabulary_lock:
            words = self._vocabularies.get(doc)
        if words is None:
            words = set()
            for row in self.store.passages_of(doc):
                words.update(self.analyzer.analyze(row.text))
            meta = self.store.document(doc)
            for field in (meta.title, meta.author, meta.publisher):
                words.update(self.analyzer.analyze(field or ""))
            with self._vocabulary_lock:
                if len(self._vocabularies) >= VOCABULARY_CACHE:
                    self._vocabularies.popitem(last=False)
                self._vocabularies[doc] = words
        return words

    def close(self) -> None:
        self.store.close()
