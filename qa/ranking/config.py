"""Every weight and threshold of the ranking, in one frozen object (TOML-loadable).

The defaults were tuned with ``qa eval`` on squad-a and the seed questions (docs/EVALUATION.md).
A sweep needs no code edit: ``qa eval QUESTIONS --ranking FILE.toml`` with any subset of these
keys, and ``qa eval --json`` writes the values it ran with.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from index.errors import QAError


class RankingConfigError(QAError):
    """A ranking file that cannot be read or holds unknown or mistyped keys."""


@dataclass(frozen=True)
class RankingConfig:
    # Retrieval: candidates taken from each retriever, and how their scores are fused
    # ("blend": (1 - blend)·cosine + blend·BM25/best BM25; "rrf": reciprocal-rank fusion).
    pool: int = 50
    fusion: str = "blend"
    blend: float = 0.3
    rrf_k: int = 60

    # The relevance score: a weighted sum of features (``score.LEXICAL``, ``score.SEMANTIC``).
    fused: float = 1.0
    sentence: float = 0.6  # best share of the question's IDF mass held by one sentence
    pairs: float = 0.2  # share of the question's adjacent term pairs found in order there
    # A question term only the sentence before holds counts this much of its IDF weight:
    # "… bases of Kataib Hezbollah. Washington said the air strikes, which killed 25 people, …"
    context: float = 0.5
    # A sentence that is itself a question ("Who won Super Bowl 57?", a FAQ subhead) holds
    # this much of its share: it asks, it does not answer. Its words still count as context
    # for the sentence after it, which answers it.
    asked: float = 0.0
    # The best sentence states the kind of answer the question asks for: a count of what a
    # "how many" question counts (the number at most ``count_window`` words before it), or a
    # time a "when / what year" question does not already give.
    count: float = 0.2
    count_window: int = 2
    time: float = 0.1
    # "Which country / which state …": the passage names one the question does not
    # (``places``: pycountry's countries and US states).
    place: float = 0.2
    outlet: float = 0.2  # the question names the article's outlet ("the VOA report")
    # A soft prior for articles near the date the question is asked as of (``features
    # .recency``: 1 that day, halving every ``half_life`` days), stronger when the question
    # asks about now ("this week", "recently"); none when it names another time.
    recency: float = 0.1
    recency_cue: float = 0.2
    half_life: float = 30.0
    # The lead (first story passage) of an article with a stated date: news stories put
    # their who/what/where first. Swept on news-a (docs/EVALUATION.md); 0 where no article
    # states a date, as in squad-a's Wikipedia pages.
    lead: float = 0.2
    # A photo caption restates the story and a byline says nothing about it.
    caption: float = -0.1
    byline: float = -0.5
    # Cosine of the best sentence, measured on the ``rerank_depth`` best passages only
    # (embedding sentences is the costly part of a query); others use the passage's cosine.
    sentence_dense: float = 0.6
    rerank_depth: int = 5

    # The highlighted sentence: among the (at most ``highlight_embed``) sentences within
    # ``highlight_margin`` of the best lexical share, similarity + lexical share · this.
    highlight_lexical: float = 2.0
    highlight_margin: float = 0.2
    highlight_embed: int = 2
    # … plus this for a sentence that names someone or something the question does not, when
    # the question asks who or which (swept on news-a by halves of its weeks: EVALUATION.md).
    highlight_name: float = 0.2

    # Refusal: the best passage answers when dense·cosine + sentence·share − missing·(share
    # of the question's IDF mass in names the article never uses) reaches ``min_confidence``
    # (calibrated on answerable squad-a questions against questions about other corpora).
    confidence_dense: float = 1.0
    confidence_sentence: float = 1.0
    missing_names: float = 0.3
    min_confidence: float = 0.56
    # … less this when none of the ``unstated_depth`` best passages states the kind of answer
    # the question asks for (an amount, a measure, an age, a year, a count, a time).
    unstated: float = 0.2
    unstated_depth: int = 3

    # The learned ordering (``learned``): a LightGBM text model in qa/ranking/models/ (or a
    # path) fitted by ``python -m benchmarks.fit``; "" for the hand-weighted sum above. Its
    # best story passage answers when its score reaches ``min_learned`` (fitted with it).
    model: str = ""
    min_learned: float = 0.0
    learned_depth: int = 100  # the best candidates by the hand score that the model re-orders

    # Passes over the ranked list.
    author_articles: int = 3  # articles whose bylines answer "who wrote …"
    recency_margin: float = 0.05  # "latest …": newer first among results this close
    # "… this week?" answered only from articles older than this (days): a note says so.
    stale_days: int = 180
    group_depth: int = 3  # candidates compared for grouping, per result asked for
    # Two sentences report the same finding when the shorter one's terms (at least
    # ``group_min_terms``) are this much in the longer one.
    group_min_terms: int = 6
    group_min_shared: float = 0.8

    @classmethod
    def load(cls, path: Path) -> RankingConfig:
        """The defaults overridden by the keys of a TOML file (tables are flattened), or
        with ``model`` set to a LightGBM text model file (``python -m benchmarks.fit``)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
            if text.startswith("tree\n"):
                return cls(model=str(Path(path).resolve()))
            data = tomllib.loads(text)
        except (OSError, UnicodeDecodeError) as error:
            raise RankingConfigError(f"cannot read {path} ({error}): pass a TOML file") from None
        except tomllib.TOMLDecodeError as error:
            raise RankingConfigError(f"{path} is not valid TOML ({error})") from None
        return cls().updated(_flatten(data), source=str(path))

    def updated(self, values: dict[str, Any], source: str = "ranking") -> RankingConfig:
        """A copy with ``values`` applied; RankingConfigError for unknown keys or types."""
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise RankingConfigError(
                f"{source}: unknown ranking key(s) {', '.join(unknown)}; known: "
                + ", ".join(types)
            )
        clean: dict[str, Any] = {}
        for key, value in values.items():
            want = types[key]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not want:
                raise RankingConfigError(
                    f"{source}: {key} must be a {want.__name__}, not {value!r}"
                )
            clean[key] = value
        if clean.get("fusion", self.fusion) not in ("blend", "rrf"):
            raise RankingConfigError(f"{source}: fusion must be \"blend\" or \"rrf\"")
        return replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat
