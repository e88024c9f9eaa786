"""The learned final ordering: a LightGBM LambdaMART model over features of each candidate.

``FEATURES`` are pure functions of a candidate, the question's ``Profile`` and ``Pool`` (what
the question's whole candidate list says: the best scores, each article's best passage, the
newest article on the topic), so a score is relative to its competitors as the model was
taught. The model is fitted by ``python -m benchmarks.fit`` on news-train and squad-a
(docs/EVALUATION.md) in LightGBM's own text format; ``RankingConfig.model`` names it (a file
of ``qa/ranking/models/`` or a path). The default is the hand-weighted sum: the fitted model
did not beat it held out (EVALUATION.md).

``Model`` reads that text file and evaluates its trees with NumPy: importing LightGBM costs
~3 s here (it imports scikit-learn); reading a 200-tree model takes ~12 ms and scoring 100
candidates ~2.4 ms. A test checks it against ``lightgbm.Booster.predict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from index.storage.lexical import Analyzer

from . import features, kinds
from .candidate import Candidate
from .config import RankingConfig, RankingConfigError
from .features import Idf, best_sentence, days_before
from .profile import Profile

UNDATED = -1.0  # an age for articles without a date, or questions without one to ask as of


@dataclass
class Pool:
    """What a question's whole candidate list says, computed once per question."""

    best_fused: float
    best_dense: float
    best_sentence: float
    best_similar: float
    dense_rank: dict[int, int]
    keyword_rank: dict[int, int]
    article_best: dict[int, float]  # each article's best sentence share
    article_count: dict[int, int]  # candidates per article
    article_rank: dict[int, int]  # articles by their best hand score, 0 first
    ages: dict[int, float]  # article → days before the as-of date (UNDATED)
    topical_newest: float  # youngest age among articles holding most of the evidence
    freshness: dict[int, int]  # article → rank by date among topical articles, 0 newest
    title_share: dict[int, float]  # article → share of the question's IDF mass in its title
    answer_sentence: dict[int, int] = field(default_factory=dict)  # candidate → sentence
    # Candidate → how many other articles among the best ``SUPPORT_DEPTH`` passages name
    # what its answering sentence names and the question does not (the most repeated).
    support: dict[int, int] = field(default_factory=dict)
    articles: int = 0  # articles among the best SUPPORT_DEPTH passages


SUPPORT_DEPTH = 30


def pool_of(profile: Profile, ranked: Sequence[Candidate], idf: Idf, analyzer: Analyzer,
            config: RankingConfig) -> Pool:
    """The ``Pool`` of a question's candidates (their sentence evidence and hand scores set)."""
    stories = [c for c in ranked if c.kind != "byline"] or list(ranked)
    by_dense = sorted(stories, key=lambda c: -c.dense)
    by_keyword = sorted(stories, key=lambda c: -c.keyword)
    article_best: dict[int, float] = {}
    article_count: dict[int, int] = {}
    article_score: dict[int, float] = {}
    ages: dict[int, float] = {}
    for c in stories:
        doc = c.document.id
        article_best[doc] = max(article_best.get(doc, 0.0), c.sentence)
        article_count[doc] = article_count.get(doc, 0) + 1
        article_score[doc] = max(article_score.get(doc, -math.inf), c.score)
        ages[doc] = _age(c, profile)
    best_sentence_share = max((c.sentence for c in stories), default=0.0)
    topical = [d for d, share in article_best.items()
               if share >= 0.75 * best_sentence_share and ages[d] >= 0]
    dated = sorted(topical, key=lambda d: ages[d])
    weights = {t: idf(t) for t in profile.terms}
    total = sum(weights.values()) or 1.0
    titles: dict[int, float] = {}
    for c in stories:
        if c.document.id not in titles:
            terms = set(analyzer.terms(c.document.title or ""))
            titles[c.document.id] = sum(w for t, w in weights.items() if t in terms) / total
    answer_sentence = {c.id: best_sentence(c, profile, config) for c in stories}
    support, articles = _support(profile, stories[:SUPPORT_DEPTH], answer_sentence)
    return Pool(
        best_fused=max((c.fused for c in stories), default=0.0),
        best_dense=max((c.dense for c in stories), default=0.0),
        best_sentence=best_sentence_share,
        best_similar=max((_similar(c) for c in stories), default=0.0),
        dense_rank={c.id: i for i, c in enumerate(by_dense)},
        keyword_rank={c.id: i for i, c in enumerate(by_keyword)},
        article_best=article_best,
        article_count=article_count,
        article_rank={d: i for i, d in enumerate(
            sorted(article_score, key=lambda d: -article_score[d]))},
        ages=ages,
        topical_newest=ages[dated[0]] if dated else UNDATED,
        freshness={d: i for i, d in enumerate(dated)},
        title_share=titles,
        answer_sentence=answer_sentence,
        support=support,
        articles=articles,
    )


def _support(profile: Profile, top: Sequence[Candidate], answer_sentence: dict[int, int]
             ) -> tuple[dict[int, int], int]:
    """Per candidate, how many other articles of ``top`` name one of the new names of its
    answering sentence (the best-supported name): news reports an answer in many stories."""
    texts = [(c.document.id, c.row.text) for c in top]
    support = {}
    for c in top:
        sentences = c.sentence_texts()
        sentence = sentences[min(answer_sentence.get(c.id, c.best), len(sentences) - 1)]
        best = 0
        for name in set(kinds.names(sentence, profile.words)):
            best = max(best, len({doc for doc, text in texts
                                  if doc != c.document.id and name in text}))
        support[c.id] = best
    return support, len({doc for doc, _ in texts})


def _age(c: Candidate, profile: Profile) -> float:
    if not c.document.date or not profile.as_of:
        return UNDATED
    age = days_before(profile.as_of, c.document.date)
    return UNDATED if age is None else float(max(age, 0))


def _similar(c: Candidate) -> float:
    return max(c.similar.values(), default=c.dense) if c.embedded else c.dense


def _answer_text(c: Candidate, pool: Pool) -> str:
    texts = c.sentence_texts()
    return texts[min(pool.answer_sentence.get(c.id, c.best), len(texts) - 1)]


PoolFeature = Callable[[Candidate, Profile, Pool], float]


def _log_age(c: Candidate, profile: Profile, pool: Pool) -> float:
    age = pool.ages.get(c.document.id, UNDATED)
    return UNDATED if age < 0 else math.log1p(age)


def _behind_newest(c: Candidate, profile: Profile, pool: Pool) -> float:
    """Days this article is older than the newest article on the topic (-1 undated)."""
    age = pool.ages.get(c.document.id, UNDATED)
    if age < 0 or pool.topical_newest < 0:
        return UNDATED
    return math.log1p(max(age - pool.topical_newest, 0.0))


def _states_kind(c: Candidate, profile: Profile, pool: Pool) -> float:
    """The answering sentence states an answer of the kind asked (a place by its people's
    adjective too: "the Spanish government" for "which country")."""
    return float(kinds.states(_answer_text(c, pool), profile.kind, profile.words,
                              profile.places_given))


def _states_kind_anywhere(c: Candidate, profile: Profile, pool: Pool) -> float:
    return float(any(kinds.states(s, profile.kind, profile.words, profile.places_given)
                     for s in c.sentence_texts()))


def _kind_code(c: Candidate, profile: Profile, pool: Pool) -> float:
    return float(kinds.KINDS.index(profile.kind) + 1) if profile.kind else 0.0


def _hand(c: Candidate, profile: Profile, pool: Pool) -> float:
    """The hand-weighted score (``score.LEXICAL`` + ``SEMANTIC``): a strong, simple prior."""
    return c.score


FEATURES: tuple[tuple[str, PoolFeature], ...] = (
    ("hand", _hand),
    ("fused", lambda c, p, pool: c.fused),
    ("fused_gap", lambda c, p, pool: pool.best_fused - c.fused),
    ("dense", lambda c, p, pool: c.dense),
    ("dense_gap", lambda c, p, pool: pool.best_dense - c.dense),
    ("keyword", lambda c, p, pool: c.keyword),
    ("dense_rank", lambda c, p, pool: math.log1p(pool.dense_rank.get(c.id, 99))),
    ("keyword_rank", lambda c, p, pool: math.log1p(pool.keyword_rank.get(c.id, 99))),
    ("sentence", lambda c, p, pool: c.sentence),
    ("sentence_gap", lambda c, p, pool: pool.best_sentence - c.sentence),
    ("pairs", lambda c, p, pool: c.pairs),
    ("similar", lambda c, p, pool: _similar(c)),
    ("similar_gap", lambda c, p, pool: pool.best_similar - _similar(c)),
    ("embedded", lambda c, p, pool: float(c.embedded)),
    ("title", lambda c, p, pool: pool.title_share.get(c.document.id, 0.0)),
    ("article_gap", lambda c, p, pool: pool.article_best.get(c.document.id, 0.0) - c.sentence),
    ("article_passages", lambda c, p, pool: float(pool.article_count.get(c.document.id, 0))),
    ("article_rank", lambda c, p, pool: math.log1p(pool.article_rank.get(c.document.id, 99))),
    ("position", lambda c, p, pool: math.log1p(c.row.start)),
    ("lead", lambda c, p, pool: float(c.lead)),
    ("caption", lambda c, p, pool: float(c.kind == "caption")),
    ("byline", lambda c, p, pool: float(c.kind == "byline")),
    ("age", _log_age),
    ("behind_newest", _behind_newest),
    ("freshness", lambda c, p, pool: float(pool.freshness.get(c.document.id, 99))),
    ("recency", lambda c, p, pool: features.recency(c, p)),
    ("recent_cue", lambda c, p, pool: float(p.recent_cue)),
    ("other_time", lambda c, p, pool: float(p.other_time)),
    ("kind", _kind_code),
    ("states_kind", _states_kind),
    ("states_kind_anywhere", _states_kind_anywhere),
    ("states_wanted", lambda c, p, pool: float(c.best in c.stating)),
    ("place", lambda c, p, pool: features.names_wanted_place(c, p)),
    ("outlet", lambda c, p, pool: features.names_outlet(c, p)),
    ("names_new", lambda c, p, pool: float(features.names_new(_answer_text(c, pool), p.words))),
    ("asks_name", lambda c, p, pool: float(p.asks_name)),
    ("support", lambda c, p, pool: math.log1p(pool.support.get(c.id, 0))),
    ("support_share", lambda c, p, pool: pool.support.get(c.id, 0) / max(pool.articles - 1, 1)),
)
NAMES = tuple(name for name, _ in FEATURES)


def matrix(profile: Profile, ranked: Sequence[Candidate], pool: Pool,
           names: Sequence[str] = NAMES) -> np.ndarray:
    """The feature matrix of ``ranked`` (a row per candidate, a column per name)."""
    table = dict(FEATURES)
    chosen = [table[n] for n in names]
    return np.array([[f(c, profile, pool) for f in chosen] for c in ranked],
                    dtype=np.float64).reshape(len(ranked), len(chosen))


class Model:
    """A LightGBM text model's trees, evaluated with NumPy (sum of the trees' leaf values).

    Every tree's nodes sit in one set of arrays, so a prediction walks all trees of all rows
    a level at a time: as many NumPy steps as the deepest tree is deep."""

    def __init__(self, text: str, source: str = "model"):
        self.source = source
        self.names: tuple[str, ...] = ()
        try:
            self._parse(text)
        except (ValueError, IndexError, KeyError) as error:
            raise RankingConfigError(
                f"{source} is not a LightGBM text model ({error}): pass a file written by "
                "`python -m benchmarks.fit`") from None
        unknown: list[str] = sorted(set(self.names) - set(NAMES))
        if unknown:
            raise RankingConfigError(
                f"{source} uses features this qa does not compute ({', '.join(unknown)}): "
                "fit it again with `python -m benchmarks.fit`")

    def _parse(self, text: str) -> None:
        blocks = text.split("\nTree=")
        self.names = tuple(dict(_pairs(blocks[0]))["feature_names"].split())
        self.bias = 0.0
        columns: dict[str, list[np.ndarray]] = {k: [] for k in (
            "feature", "threshold", "decision", "left", "right", "leaves", "roots")}
        nodes = leaves = 0
        for block in blocks[1:]:
            values = dict(_pairs(block.split("\nend of trees")[0]))
            leaf = np.array(values["leaf_value"].split(), dtype=np.float64)
            if int(values["num_leaves"]) == 1:
                self.bias += float(leaf[0])
                continue
            if int(values.get("num_cat", "0")):
                raise ValueError("categorical splits are not supported")
            for key in ("left", "right"):  # children: internal ≥ 0, leaf i as -(i + 1)
                child = np.array(values[f"{key}_child"].split(), dtype=np.int64)
                columns[key].append(np.where(child >= 0, child + nodes, child - leaves))
            columns["feature"].append(np.array(values["split_feature"].split(), dtype=np.int64))
            columns["threshold"].append(np.array(values["threshold"].split(), dtype=np.float64))
            columns["decision"].append(np.array(values["decision_type"].split(), dtype=np.int64))
            columns["leaves"].append(leaf)
            columns["roots"].append(np.array([nodes]))
            nodes += len(columns["feature"][-1])
            leaves += len(leaf)
        joined = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64)
                  for k, v in columns.items()}
        self.feature, self.threshold = joined["feature"], joined["threshold"]
        self.left, self.right = joined["left"], joined["right"]
        self.leaves, self.roots = joined["leaves"].astype(np.float64), joined["roots"]
        self.missing = (joined["decision"] >> 2) & 3  # 0 none, 1 zero, 2 NaN
        self.default_left = (joined["decision"] & 2) > 0
        self.trees = len(self.roots) + (self.bias != 0.0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's score of each row of ``x`` (columns in ``self.names`` order)."""
        x = np.asarray(x, dtype=np.float64)
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        row = np.broadcast_to(np.arange(len(x))[:, None], node.shape)
        while True:
            inner = node >= 0
            if not inner.any():
                break
            at = node[inner]
            value = x[row[inner], self.feature[at]]
            kind = self.missing[at]
            nan = np.isnan(value)
            value = np.where(nan & (kind != 2), 0.0, value)
            missing = (nan & (kind == 2)) | ((kind == 1) & (np.abs(value) <= 1e-35))
            go_left = np.where(missing, self.default_left[at], value <= self.threshold[at])
            node[inner] = np.where(go_left, self.left[at], self.right[at])
        return self.bias + self.leaves[~node].sum(axis=1)


def _pairs(block: str) -> list[tuple[str, str]]:
    return [tuple(line.split("=", 1)) for line in block.splitlines()  # type: ignore[misc]
            if "=" in line]


def load(name: str) -> Model:
    """The model ``name`` names: a file of this package's ``models/`` folder or a path (read
    once per version of the file)."""
    packaged = resources.files("qa.ranking").joinpath("models", name)
    path = Path(str(packaged)) if packaged.is_file() else Path(name).expanduser()
    try:
        stat = path.stat()
    except OSError as error:
        raise RankingConfigError(
            f"cannot read the ranking model {name} ({error}): name a file of qa/ranking/models "
            "or a path to one written by `python -m benchmarks.fit`") from None
    return _read(str(path), stat.st_mtime_ns, stat.st_size)


@cache
def _read(path: str, mtime: int, size: int) -> Model:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RankingConfigError(
            f"cannot read the ranking model {path} ({error}): pass a file written by "
            "`python -m benchmarks.fit`") from None
    return Model(text, source=path)


def scores(model: Model, profile: Profile, ranked: Sequence[Candidate], idf: Idf,
           analyzer: Analyzer, config: RankingConfig) -> np.ndarray:
    """The model's score of every candidate (hand scores and sentence evidence set)."""
    pool = pool_of(profile, ranked, idf, analyzer, config)
    return model.predict(matrix(profile, ranked, pool, model.names))
