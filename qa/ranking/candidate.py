"""One record per candidate passage, carried from retrieval through ranking to the answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from index.storage.rows import DocumentRow, PassageRow


@dataclass
class Candidate:
    row: PassageRow
    document: DocumentRow
    dense: float  # cosine similarity of question and passage
    keyword: float  # BM25 score over the question's best BM25 score (0..1)
    fused: float = 0.0  # the fused retrieval score (``qa.search``)
    # The first story passage of an article with a stated date (a news story's lead).
    lead: bool = False
    # Sentence evidence (``features.sentence_evidence``): the best share of the question's
    # IDF mass one sentence holds, the share of its term pairs found there in order, which
    # sentence that is, every sentence's share, and the sentences stating the wanted answer.
    sentence: float = 0.0
    pairs: float = 0.0
    best: int = 0
    shares: tuple[float, ...] = ()
    stating: frozenset[int] = frozenset()
    similar: dict[int, float] = field(default_factory=dict)  # cosine of embedded sentences
    embedded: bool = False  # whether its sentences were embedded (the best few are)
    score: float = 0.0  # the ordering score of the stage that last sorted the list
    _texts: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def kind(self) -> str:
        return self.row.kind

    def sentence_text(self, i: int) -> str:
        start, end = self.row.sentences[i]
        return self.row.text[start - self.row.start : end - self.row.start]

    def sentence_texts(self) -> list[str]:
        if self._texts is None:  # grouping asks for them many times
            self._texts = [self.sentence_text(i) for i in range(len(self.row.sentences))] \
                or [self.row.text]
        return self._texts
