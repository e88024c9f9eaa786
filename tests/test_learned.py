"""The learned ordering: answer kinds, pool features, and the tree model read from LightGBM."""

import numpy as np
import pytest
from test_ranking import ANALYZER, CONFIG, candidate, two_sentences

from qa.ranking import RankingConfig, RankingConfigError, analyse, kinds, learned


@pytest.mark.parametrize("question, kind", [
    ("Which country announced a ban on TikTok this week?", "place"),
    ("Where did the earthquake strike on Monday?", "place"),
    ("Which volcano erupted on Monday?", "place"),
    ("Who is the new commander of the Quds Force?", "person"),
    ("Which actor won the best actor Oscar?", "person"),
    ("Which retailer is closing all its stores?", "org"),
    ("What automaker recalled 2 million cars?", "org"),
    ("How many people were killed in the attack?", "number"),
    ("What percentage of voters backed the measure?", "number"),
    ("How much did the painting sell for at auction?", "money"),
    ("When did the Fed last raise rates?", "date"),
    ("What is the Quds Force?", None),
])
def test_the_kind_of_answer_a_question_asks_for(question, kind):
    assert kinds.asked(question) == kind
    assert analyse(question, ANALYZER).kind == kind


def test_a_country_is_stated_by_its_demonym_too():
    assert kinds.countries("The Spanish government said so") == {"Spain"}
    assert kinds.countries("Italians and the Swiss voted") == {"Italy", "Switzerland"}
    assert kinds.states("The Spanish government said so.", "place", frozenset())
    # A place the question already names is not an answer to it.
    assert not kinds.states("Spain said so.", "place", frozenset(), frozenset({"Spain"}))
    assert not kinds.states("The government said so.", "place", frozenset())


@pytest.mark.parametrize("sentence, kind, states", [
    ("The post went to Brig. Gen. Esmail Ghaani on Friday.", "person", True),
    ("The post went to a general on Friday.", "person", False),
    ("Shares of Bed Bath & Beyond Inc fell.", "org", True),
    ("It fell 12 points.", "number", True),
    ("It fell sharply.", "number", False),
    ("The sale raised $4.5 million.", "money", True),
    ("The sale raised a lot.", "money", False),
    ("It erupted on Sunday.", "date", True),
    ("It erupted again.", "date", False),
])
def test_a_sentence_states_an_answer_of_a_kind(sentence, kind, states):
    assert kinds.states(sentence, kind, frozenset({"who", "the", "post"})) is states


def _profile(question, as_of="2023-06-30"):
    return analyse(question, ANALYZER, as_of, CONFIG.half_life)


def test_the_newest_article_on_a_topic_is_fresh_and_older_ones_are_behind():
    profile = _profile("Which retailer is closing all its stores?")
    new = candidate("The retailer is closing all its stores, Bed Bath & Beyond said.",
                    id=1, doc=1, date="2023-06-28", sentence=0.8)
    old = candidate("The retailer is closing all its stores, Sears said.",
                    id=2, doc=2, date="2019-01-10", sentence=0.8)
    off = candidate("Markets rose.", id=3, doc=3, date="2023-06-29", sentence=0.1)
    ranked = [new, old, off]
    pool = learned.pool_of(profile, ranked, lambda t: 1.0, ANALYZER, CONFIG)
    x = dict(zip(learned.NAMES, learned.matrix(profile, ranked, pool).T, strict=True))
    assert list(x["freshness"]) == [0.0, 1.0, 99.0]  # the off-topic one is not "newest"
    assert x["behind_newest"][0] == 0.0 and x["behind_newest"][1] > 7.0
    assert x["age"][0] == pytest.approx(np.log1p(2))
    assert list(x["states_kind"]) == [1.0, 1.0, 0.0]
    undated = learned.pool_of(_profile("Which retailer closed?", as_of=None), ranked,
                              lambda t: 1.0, ANALYZER, CONFIG)
    assert undated.ages[1] == learned.UNDATED


def test_a_passage_below_its_articles_best_sentence_says_so():
    profile = _profile("Which country banned TikTok?")
    lead = two_sentences("TikTok faces a ban.", "Officials met on Monday.", id=1, doc=1,
                         sentence=0.3)
    answer = two_sentences("Italy banned TikTok.", "It did so on Friday.", id=2, doc=1,
                           sentence=0.9)
    pool = learned.pool_of(profile, [lead, answer], lambda t: 1.0, ANALYZER, CONFIG)
    x = dict(zip(learned.NAMES, learned.matrix(profile, [lead, answer], pool).T, strict=True))
    assert x["article_gap"][0] == pytest.approx(0.6) and x["article_gap"][1] == 0.0
    assert list(x["states_kind_anywhere"]) == [0.0, 1.0]
    assert list(x["article_passages"]) == [2.0, 2.0]


def test_the_tree_model_scores_as_lightgbm_does(tmp_path):
    lightgbm = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(7)
    n = len(learned.NAMES)
    x = rng.normal(size=(600, n))
    x[rng.random(x.shape) < 0.05] = 0.0
    y = (x[:, 0] + 0.5 * x[:, 3] * x[:, 8] > 0.3).astype(int)
    model = lightgbm.LGBMRanker(objective="lambdarank", n_estimators=40, num_leaves=7,
                                min_child_samples=5, verbose=-1)
    model.fit(x, y, group=[30] * 20, feature_name=list(learned.NAMES))
    path = tmp_path / "m.txt"
    model.booster_.save_model(str(path))
    ours = learned.Model(path.read_text(), source=str(path))
    probe = rng.normal(size=(200, n))
    probe[::7, 2] = 0.0
    assert ours.names == learned.NAMES
    np.testing.assert_allclose(ours.predict(probe), model.booster_.predict(probe), atol=1e-9)


def test_a_model_file_that_is_not_one_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("not a model\n")
    with pytest.raises(RankingConfigError, match="not a LightGBM text model"):
        learned.load(str(bad))
    with pytest.raises(RankingConfigError, match="cannot read the ranking model"):
        learned.load(str(tmp_path / "missing.txt"))
    other = tmp_path / "other.txt"
    other.write_text("tree\nfeature_names=hand shoe_size\n\nTree=0\nnum_leaves=1\n"
                     "leaf_value=0.5\n\nend of trees\n")
    with pytest.raises(RankingConfigError, match="shoe_size"):
        learned.load(str(other))


def _stump(tmp_path, feature, threshold, left, right):
    """A one-split model in LightGBM's text format: ``left`` when ``feature`` ≤ ``threshold``."""
    path = tmp_path / f"{feature}-{left}.txt"
    path.write_text(
        "tree\nversion=v4\nnum_class=1\nobjective=lambdarank\n"
        f"feature_names={' '.join(learned.NAMES)}\n\nTree=0\nnum_leaves=2\nnum_cat=0\n"
        f"split_feature={learned.NAMES.index(feature)}\nthreshold={threshold}\n"
        f"decision_type=2\nleft_child=-1\nright_child=-2\nleaf_value={left} {right}\n"
        "shrinkage=1\n\n\nend of trees\n")
    return path


def test_the_engine_orders_by_the_model_its_ranking_names(tmp_path):
    from conftest import FakeEmbedder, fake_index

    from qa.engine import Engine

    _, index = fake_index(tmp_path)
    question = "How many rockets landed at the Taji base?"

    def first(path, **values):
        config = RankingConfig.load(path)  # a model file is a ranking file too
        assert config.model == str(path.resolve())
        engine = Engine(index, embedder=FakeEmbedder(), ranking=config.updated(
            {"min_learned": -1.0, "learned_depth": 100, **values}))
        try:
            return engine.ask(question, k=3)
        finally:
            engine.close()

    hand = Engine(index, embedder=FakeEmbedder())
    by_hand = hand.ask(question, k=3).passages[0].citation.start
    hand.close()
    # The seeds' only passage that starts in an article's first 60 characters (at 53) is first
    # when the model scores the start of an article up, and not when it scores it down.
    near, far = (_stump(tmp_path, "position", 4.11, a, b) for a, b in ((1, 0), (0, 1)))
    assert first(near).passages[0].citation.start == 53 != by_hand
    assert first(far).passages[0].citation.start != 53
    refused = first(near, min_learned=1.5)  # above the best score the model can give
    assert not refused.answered and refused.reason
