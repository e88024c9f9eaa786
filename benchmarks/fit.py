"""Fit the learned final ordering (LightGBM LambdaMART), cross-validated by quiz week.

    python -m benchmarks.fit --news-train-index /tmp/idx-newstrain --squad-index /tmp/idx-squad-a \
        [--news-a-index /tmp/idx-newsa] [--seeds-index /tmp/idx-seeds] [--cache /tmp/fit.pkl] \
        [--out qa/ranking/models/news.txt]

1. Collect: every question of news-train (as of its date) and squad-a is retrieved and
   prepared exactly as ``qa ask`` does (``qa.ranking.prepare``); for the ``learned_depth``
   best candidates by the hand score, the features of ``qa.ranking.learned.FEATURES`` are
   recorded with whether the candidate answers (a listed source holding an answer: ``qa
   eval``'s rule) and where today's hand ordering puts it. news-a and the near-domain sets
   are collected too, to report on; nothing is fitted on them.
2. Cross-validate by week: news-train's quiz weeks (the first 8 characters of an id) are cut
   into ``--folds`` runs of consecutive weeks, squad-a's questions into folds by article; each
   fold is scored by a model fitted on the others. Depth, leaves and rounds are chosen on the
   folds' news-train hit@1 + hit@5; then features by group, dropped one group at a time.
3. The refusal threshold ``min_learned`` is the score under which the out-of-fold best passage
   of ``--refuse`` of news-train's and squad-a's answerable questions falls.
4. The chosen model, fitted on every question, is written to ``--out`` (LightGBM's text
   format; ``qa.ranking.learned.Model`` reads it) with the threshold and fold figures printed.
   ``qa eval --ranking OUT`` (or a TOML with ``model`` and ``min_learned``) runs it; copied to
   ``qa/ranking/models/`` and named by ``RankingConfig.model`` it becomes what every front end
   uses — only when it wins held out.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PARAMS: dict[str, Any] = {"objective": "lambdarank", "learning_rate": 0.05, "subsample": 0.8,
          "subsample_freq": 1, "colsample_bytree": 0.8, "lambdarank_truncation_level": 10,
          "verbose": -1, "n_jobs": 2}
GRID = {"num_leaves": (7, 15), "n_estimators": (200, 400), "min_child_samples": (50,)}
# Features dropped together in the drop-one measure (see ``qa.ranking.learned.FEATURES``).
GROUPS = {
    "time": ("age", "behind_newest", "freshness", "recency", "recent_cue", "other_time"),
    "answer kind": ("kind", "states_kind", "states_kind_anywhere", "states_wanted", "place"),
    "title": ("title",),
    "place in article": ("position", "lead", "article_gap", "article_passages",
                         "article_rank"),
    "relative scores": ("fused_gap", "dense_gap", "sentence_gap", "similar_gap",
                        "dense_rank", "keyword_rank"),
    "answer support": ("support", "support_share", "names_new", "asks_name"),
    "hand score": ("hand",),
}


def collect(index: Path, questions: Path, depth: int | None = None) -> list[dict[str, Any]]:
    """Per question: its id, feature matrix, which candidates answer, today's positions."""
    from qa.engine import Engine, clean_question
    from qa.evaluate import _fold, _stem, load_questions
    from qa.filters import Filters
    from qa.ranking import analyse, hand_order, learned, prepare

    engine = Engine(index)
    config = engine.ranking
    depth = depth or config.learned_depth
    archive = engine._archive()
    rows = []
    for q in load_questions(questions):
        text, _ = clean_question(q.question)
        filters = Filters(as_of=q.date) if q.date else None
        query = engine.embed_question(text)
        pool = engine.retrieve(text, query, 10, filters)
        if not pool:
            rows.append(_row(q, np.zeros((0, len(learned.NAMES))), [], [], [], True))
            continue
        profile = analyse(text, engine.analyzer, q.date, config.half_life)
        ranked = prepare(profile, pool, archive, query, config)[:depth]
        x = learned.matrix(profile, ranked, learned.pool_of(
            profile, ranked, archive.idf, engine.analyzer, config))
        answers = [_fold(a) for a in q.answers]
        good = [_stem(c.document.source) in set(q.sources)
                and any(a in _fold(c.row.text) for a in answers) for c in ranked]
        answered, _, final = hand_order(profile, list(ranked), archive, config)
        order = {c.id: i for i, c in enumerate(c for c in final if c.kind != "byline")}
        rows.append(_row(q, x, good, [order.get(c.id, 999) for c in ranked],
                         [c.document.id for c in ranked], answered))
    engine.close()
    return rows


def _row(q: Any, x: np.ndarray, good: list[bool], shipped: list[int], docs: list[int],
         answered: bool) -> dict[str, Any]:
    return {"id": q.id, "week": q.id[:8], "group": (sorted(q.sources) or [q.id])[0],
            "answerable": q.answerable, "x": x, "y": np.array(good, dtype=bool),
            "docs": np.array(docs, dtype=np.int64),
            "shipped": np.array(shipped, dtype=np.float64), "shipped_answered": answered}


def first_good(row: dict[str, Any], scores: np.ndarray) -> int | None:
    """Rank (0-based) of the first answering candidate when ordered by ``scores``."""
    if not len(scores):
        return None
    good = np.flatnonzero(row["y"][np.argsort(-scores, kind="stable")])
    return int(good[0]) if len(good) else None


def metrics(rows: list[dict[str, Any]], score: Any) -> dict[str, float]:
    """hit@1, hit@5 and MRR over answerable ``rows`` ranked by ``score(row)``."""
    ranks = [first_good(r, score(r)) for r in rows if r["answerable"]]
    n = max(len(ranks), 1)
    return {"hit1": sum(r == 0 for r in ranks) / n,
            "hit5": sum(r is not None and r < 5 for r in ranks) / n,
            "mrr": sum(1 / (r + 1) for r in ranks if r is not None) / n, "n": len(ranks)}


def wrong_passage(rows: list[dict[str, Any]], score: Any) -> tuple[int, int]:
    """(questions whose first passage is from an article with an answering passage but is
    not that passage, questions whose first passage answers)."""
    wrong = right = 0
    for r in rows:
        if not r["answerable"] or not len(r["y"]):
            continue
        top = int(np.argsort(-score(r), kind="stable")[0])
        if r["y"][top]:
            right += 1
        elif r["y"][r["docs"] == r["docs"][top]].any():
            wrong += 1
    return wrong, right


def shipped(row: dict[str, Any]) -> np.ndarray:
    return -row["shipped"]


def fit(rows: list[dict[str, Any]], columns: list[int], params: dict[str, Any]) -> Any:
    import lightgbm

    from qa.ranking.learned import NAMES

    train = [r for r in rows if r["y"].any()]
    model = lightgbm.LGBMRanker(**PARAMS, **params)
    model.fit(np.vstack([r["x"][:, columns] for r in train]),
              np.concatenate([r["y"].astype(int) for r in train]),
              group=[len(r["y"]) for r in train], feature_name=[NAMES[i] for i in columns])
    return model


def folds_of(sets: dict[str, list[dict[str, Any]]], folds: int) -> dict[str, int]:
    """Question key → fold: news-train by runs of consecutive weeks, squad-a by article."""
    fold = {}
    weeks = sorted({r["week"] for r in sets["news-train"]})
    for r in sets["news-train"]:
        fold[r["key"]] = weeks.index(r["week"]) * folds // len(weeks)
    for r in sets["squad-a"]:
        fold[r["key"]] = int(hashlib.sha256(r["group"].encode()).hexdigest(), 16) % folds
    return fold


def cross_validate(sets: dict[str, list[dict[str, Any]]], fold: dict[str, int], folds: int,
                   columns: list[int], params: dict[str, Any]
                   ) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray], np.ndarray]:
    """Out-of-fold metrics per set, out-of-fold scores per question, mean gain importance."""
    train_sets = sets["news-train"] + sets["squad-a"]
    scores: dict[str, np.ndarray] = {}
    gains = np.zeros(len(columns))
    for k in range(folds):
        model = fit([r for r in train_sets if fold[r["key"]] != k], columns, params)
        gains += model.booster_.feature_importance("gain") / folds
        for r in train_sets:
            if fold[r["key"]] == k and len(r["x"]):
                scores[r["key"]] = model.booster_.predict(r["x"][:, columns])
    held = {name: metrics(sets[name], lambda r: scores.get(r["key"], np.zeros(0)))
            for name in ("news-train", "squad-a")}
    return held, scores, gains


def threshold(sets: dict[str, list[dict[str, Any]]], scores: dict[str, np.ndarray],
              refuse: float) -> float:
    """The score under which ``refuse`` of the answerable questions' best passages fall."""
    tops = [float(scores[r["key"]].max()) for name in ("news-train", "squad-a")
            for r in sets[name] if r["answerable"] and r["key"] in scores]
    return float(np.quantile(tops, refuse))


def report(name: str, figures: dict[str, float]) -> str:
    return (f"{name:34} hit@1 {figures['hit1']:.3f}  hit@5 {figures['hit5']:.3f}  "
            f"MRR {figures['mrr']:.4f}  (n={figures['n']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--news-train-index", type=Path, required=True)
    parser.add_argument("--squad-index", type=Path, required=True)
    parser.add_argument("--news-a-index", type=Path)
    parser.add_argument("--seeds-index", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--refuse", type=float, default=0.01,
                        help="share of answerable training questions the threshold refuses")
    parser.add_argument("--out", type=Path, default=Path("news-ranking.txt"),
                        help="the model file (qa eval --ranking takes it)")
    parser.add_argument("--cache", type=Path, help="keep the collected features here (pickle)")
    parser.add_argument("--no-select", action="store_true", help="skip the feature drop-one")
    args = parser.parse_args()

    from qa.ranking import learned

    bench = args.shared / "bench"
    sources = {"news-train": (args.news_train_index, bench / "news-train/questions.jsonl"),
               "squad-a": (args.squad_index, bench / "squad-a/questions.jsonl")}
    if args.news_a_index:
        sources["news-a"] = (args.news_a_index, bench / "news-a/questions.jsonl")
        sources["near-domain news"] = (args.news_a_index, ROOT / "docs/near_domain_news.jsonl")
    if args.seeds_index:
        sources["seeds"] = (args.seeds_index, args.shared / "eval/seed_questions.jsonl")
        for name in ("questions", "heldout"):
            sources[f"near-domain {name}"] = (args.seeds_index,
                                              ROOT / f"docs/near_domain_{name}.jsonl")
    began = time.perf_counter()
    sets = pickle.loads(args.cache.read_bytes()) if args.cache and args.cache.exists() else {}
    for name, (index, questions) in sources.items():
        if name not in sets:
            sets[name] = collect(index, questions)
            if args.cache:
                args.cache.write_bytes(pickle.dumps(sets))
    print(f"features of {sum(len(r) for r in sets.values()):,} questions "
          f"in {time.perf_counter() - began:.0f} s")

    for name, rows in sets.items():  # ids repeat within and across sets
        for i, r in enumerate(rows):
            r["key"] = f"{name}:{i}"
    fold = folds_of(sets, args.folds)
    names = list(learned.NAMES)
    every = list(range(len(names)))
    best: tuple[float, dict[str, Any]] | None = None
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        held, _, _ = cross_validate(sets, fold, args.folds, every, params)
        value = held["news-train"]["hit1"] + held["news-train"]["hit5"]
        print(f"{params}: news-train {held['news-train']['hit1']:.3f} / "
              f"{held['news-train']['hit5']:.3f}, squad-a {held['squad-a']['hit1']:.3f} / "
              f"{held['squad-a']['hit5']:.3f}")
        if best is None or value > best[0] + 1e-9:
            best = (value, params)
    assert best is not None
    params = best[1]
    columns = every
    held, scores, gains = cross_validate(sets, fold, args.folds, columns, params)
    if not args.no_select:
        base = held["news-train"]["hit1"] + held["news-train"]["hit5"]
        for group, members in GROUPS.items():
            kept = [i for i in columns if names[i] not in members]
            trial, trial_scores, trial_gains = cross_validate(sets, fold, args.folds, kept,
                                                              params)
            delta = trial["news-train"]["hit1"] + trial["news-train"]["hit5"] - base
            print(f"drop {group:18} news-train hit@1 {trial['news-train']['hit1']:.3f} "
                  f"hit@5 {trial['news-train']['hit5']:.3f} (sum {delta:+.3f}), squad-a "
                  f"{trial['squad-a']['hit1']:.3f}")
            if delta > 0.005:  # dropping it helps held out: leave the group out
                columns, held, scores, gains, base = kept, trial, trial_scores, trial_gains, \
                    base + delta
    chosen = [names[i] for i in columns]
    print(f"chosen: {params}, {len(chosen)} features")
    for name, gain in sorted(zip(chosen, gains, strict=True), key=lambda p: -p[1]):
        print(f"  gain {name:22} {gain:10.1f}")
    cut = threshold(sets, scores, args.refuse)
    print(f"min_learned = {cut:.4f}")

    print("\ncross-validated by week (news-train) and by article (squad-a):")
    for name in ("news-train", "squad-a"):
        print(report(f"{name} today's ranking, same folds", metrics(sets[name], shipped)))
        print(report(f"{name} learned, held out", held[name]))
        for label, score in (("today", shipped), ("learned, held out", lambda r: scores.get(
                r["key"], np.zeros(len(r["y"]))))):
            wrong, right = wrong_passage(sets[name], score)
            print(f"{'':34} {label}: right article first but not its answering passage "
                  f"{wrong} (answering passage first {right})")
    model = fit(sets["news-train"] + sets["squad-a"], columns, params)
    print("\nwhole sets (fitted on news-train + squad-a):")
    for name, rows in sets.items():
        if not any(r["answerable"] for r in rows):
            tops = [model.booster_.predict(r["x"][:, columns]).max() for r in rows if len(r["x"])]
            refused = sum(t < cut for t in tops) + sum(not len(r["x"]) for r in rows)
            today = sum(not r["shipped_answered"] for r in rows)
            print(f"{name:34} refused {refused}/{len(rows)} (today {today})")
            continue
        print(report(f"{name} today's ranking", metrics(rows, shipped)))
        print(report(f"{name} learned", metrics(
            rows, lambda r: model.booster_.predict(r["x"][:, columns]) if len(r["x"]) else r["x"])))
        tops = [model.booster_.predict(r["x"][:, columns]).max() if len(r["x"]) else -np.inf
                for r in rows if r["answerable"]]
        print(f"{'':34} answerable refused {sum(t < cut for t in tops)}/{len(tops)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.booster_.save_model(str(args.out))
    print(f"model → {args.out} ({args.out.stat().st_size:,} bytes); set min_learned = {cut:.4f}")


if __name__ == "__main__":
    main()
