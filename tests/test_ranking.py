"""The ranking package: its config, the question profile, feature functions and passes."""

import dataclasses
import shutil

import pytest
from conftest import SEEDS, FakeEmbedder, fake_build, word_count

from index.ingest.job import BuildOptions
from index.ingest.pipeline import build_index
from index.storage.lexical import Analyzer
from index.storage.rows import DocumentRow, PassageRow
from qa.engine import Engine
from qa.ranking import RankingConfig, RankingConfigError, analyse, features, passes, score
from qa.ranking.candidate import Candidate
from qa.ranking.profile import counted, name_terms, names_outlet, question_terms, times, wanted
from qa.search import order, rrf

ANALYZER = Analyzer()
CONFIG = RankingConfig()


def candidate(text, *, id=0, doc=0, kind="text", dense=0.0, keyword=0.0, title=None,
              publisher=None, date=None, sentence=0.0, spans=None):
    if spans is None:
        spans = ((100, 100 + len(text)),)
    row = PassageRow(id, doc, 100, 100 + len(text), kind, text, spans, "h")
    document = DocumentRow(doc, f"doc{doc}", f"/doc{doc}.txt", "s", title, date, False, None,
                           publisher)
    return Candidate(row, document, dense, keyword, sentence=sentence)


def two_sentences(first, second, **kw):
    text = f"{first} {second}"
    spans = ((100, 100 + len(first)), (101 + len(first), 100 + len(text)))
    return candidate(text, spans=spans, **kw)


# --- config --------------------------------------------------------------------------------

def test_config_loads_a_toml_subset_and_refuses_unknown_keys(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('sentence = 0.7\nmin_confidence = 1\n[passes]\ngroup_depth = 4\n')
    config = RankingConfig.load(path)
    assert (config.sentence, config.min_confidence, config.group_depth) == (0.7, 1.0, 4)
    assert config.pairs == RankingConfig().pairs
    assert config.to_dict()["sentence"] == 0.7
    path.write_text("sentense = 0.7\n")
    with pytest.raises(RankingConfigError, match="unknown ranking key.*sentense"):
        RankingConfig.load(path)
    path.write_text('pool = "many"\n')
    with pytest.raises(RankingConfigError, match="pool must be a int"):
        RankingConfig.load(path)
    path.write_text("pool = \n")
    with pytest.raises(RankingConfigError, match="not valid TOML"):
        RankingConfig.load(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sentence = 1.0  # type: ignore[misc]


def test_every_score_term_has_a_config_weight():
    names = {f.name for f in dataclasses.fields(RankingConfig)}
    for name, feature in score.LEXICAL + score.SEMANTIC:
        assert name in names and callable(feature)


def test_a_weight_of_zero_removes_its_feature():
    c = candidate("The ferry runs.", kind="caption", publisher="VOA")
    c.fused, c.sentence, c.pairs = 0.5, 0.4, 0.25
    profile = analyse("What did VOA say about the ferry?", ANALYZER)
    full = score.weighted(c, profile, CONFIG, score.LEXICAL)
    assert full == pytest.approx(0.5 + 0.6 * 0.4 + 0.2 * 0.25 - 0.1 + 0.2)
    without = dataclasses.replace(CONFIG, outlet=0.0)
    assert score.weighted(c, profile, without, score.LEXICAL) == pytest.approx(full - 0.2)


# --- retrieval fusion ----------------------------------------------------------------------

def test_rrf_rewards_agreement_of_both_retrievers():
    pool = [candidate("a", id=1, dense=0.9, keyword=0.1), candidate("b", id=2, dense=0.8,
            keyword=1.0), candidate("c", id=3, dense=0.1, keyword=0.9)]
    fused = rrf(pool, 60)
    assert max(fused, key=fused.__getitem__) == 2
    assert [c.id for c in order(pool, "dense", CONFIG)] == [1, 2, 3]
    assert [c.id for c in order(pool, "bm25", CONFIG)] == [2, 3, 1]
    assert [c.id for c in order(pool, "blend", CONFIG)][0] == 2
    assert [c.id for c in order(pool, "fused", CONFIG)] == [c.id for c in order(pool, "blend",
                                                                                  CONFIG)]
    with pytest.raises(ValueError):
        order(pool, "magic", CONFIG)


# --- the question profile ------------------------------------------------------------------

@pytest.mark.parametrize(("question", "publisher", "named"), [
    ("Who wrote the VOA article?", "VOA", True),
    ("What did the story in Epoch Times say?", "The Epoch Times", True),
    ("What did The Epoch Times report?", "The Epoch Times", True),
    ("What did the voarchive say?", "VOA", False),
    ("What did the Times say?", "The Epoch Times", False),
    ("Who wrote it?", None, False),
])
def test_names_outlet_with_or_without_its_article(question, publisher, named):
    assert names_outlet(question, publisher) is named


def test_question_words_are_not_evidence():
    assert question_terms("Who is the president of France?", ANALYZER) == ["presid", "franc"]
    assert question_terms("How many did what?", ANALYZER) == ["how", "mani", "did", "what"]


def test_profile_is_the_question_analysed_once():
    profile = analyse("Who wrote the latest VOA story about Putin's visit?", ANALYZER)
    assert profile.asks_author and profile.asks_latest
    assert profile.names == ("voa", "putin")
    assert profile.wanted is None
    assert ("putin", "visit") in profile.pairs


@pytest.mark.parametrize("question, things", [
    ("How many people were killed by the strikes?", {"peopl"}),
    ("How many Super Bowl titles have the Broncos won?", {"super", "bowl", "titl"}),
    ("how much money did the council approve?", {"money"}),
    ("How many were killed?", set()),
    ("Who was killed?", set()),
])
def test_counted_is_what_a_how_many_question_counts(question, things):
    assert counted(question, ANALYZER) == things


def test_questions_that_want_no_particular_kind_of_answer():
    assert wanted("Who is the president of France?", ANALYZER) is None
    assert wanted("What did the mayor say?", ANALYZER) is None


def test_may_the_verb_is_not_a_time():
    assert times("Officials may respond, and a march may follow.") == set()
    assert times("Officials may respond in May or in the 19th Century.") == {"may", "19th century"}


# --- features ------------------------------------------------------------------------------

def test_names_the_best_article_never_uses_cost_confidence():
    idf = lambda term: {"putin": 3.0, "attack": 1.0, "say": 1.0}.get(term, 1.0)  # noqa: E731
    terms = ("putin", "say", "attack")
    profile = analyse("What did Putin say about the attack?", ANALYZER)
    profile = dataclasses.replace(profile, terms=terms)
    assert name_terms(profile.text, ANALYZER) == ["putin"]
    assert name_terms("Putin said what?", ANALYZER) == []  # the first word is capitalised anyway
    assert features.missing_names(profile, idf, {"say", "attack"}) == pytest.approx(0.6)
    assert features.missing_names(profile, idf, {"putin", "say", "attack"}) == 0.0
    lower = dataclasses.replace(analyse("what did putin say about the attack?", ANALYZER),
                                terms=terms)
    assert features.missing_names(lower, idf, set()) == 0.0


def test_sentence_evidence_counts_what_the_sentence_before_named_at_half_weight():
    c = two_sentences("US air raids hit bases of Kataib Hezbollah.", "The strikes killed 25 people.")
    profile = analyse("Kataib Hezbollah: how many people did the strikes kill?", ANALYZER)
    profile = dataclasses.replace(profile, terms=("kill", "peopl", "kataib", "hezbollah"))
    got = features.sentence_evidence(profile, lambda term: 1.0, ANALYZER, c, CONFIG)
    assert got is not c and c.shares == ()  # a new record; the input is left as it was
    assert got.shares[0] == pytest.approx(0.5)  # kataib, hezbollah
    assert got.shares[1] == pytest.approx((2 + CONFIG.context * 2) / 4)
    assert got.best == 1
    assert got.stating == frozenset({1})  # "25 people" states the count asked for


@pytest.mark.parametrize("subhead", ["Who won Super Bowl 57?", "“Who won Super Bowl 57?”"])
def test_a_sentence_that_asks_is_context_not_evidence(subhead):
    # A FAQ subhead repeats the question's words; the sentence after it answers.
    c = two_sentences(subhead, "The Chiefs defeated the Eagles 38-35 in the game.")
    profile = analyse("Who won Super Bowl 57?", ANALYZER)
    got = features.sentence_evidence(profile, lambda term: 1.0, ANALYZER, c, CONFIG)
    assert got.shares[0] == 0.0
    assert got.shares[1] == pytest.approx(CONFIG.context)  # its words, as the one before's
    assert got.best == 1 and got.sentence == pytest.approx(CONFIG.context)
    kept = features.sentence_evidence(profile, lambda term: 1.0, ANALYZER, c,
                                      dataclasses.replace(CONFIG, asked=1.0))
    assert kept.best == 0 and kept.shares[0] == pytest.approx(1.0)
    # A question quoted inside a statement still states.
    said = two_sentences("“Who won Super Bowl 57?” the host asked.", "Nobody answered.")
    got = features.sentence_evidence(profile, lambda term: 1.0, ANALYZER, said, CONFIG)
    assert got.shares[0] == pytest.approx(1.0)


@pytest.mark.parametrize("sentence, states", [
    ("Washington said the air strikes, which killed 25 people, were in retaliation.", True),
    ("The raid killed three more people.", True),
    ("Hundreds of people gathered.", True),
    ("It killed a US contractor and other people, prompting US air strikes.", False),
    ("Some 25 of the wounded people were flown out.", False),  # too far from the number
])
def test_states_count_needs_a_number_before_the_counted_word(sentence, states):
    assert features.states_count(sentence, frozenset({"peopl"}), ANALYZER) is states


@pytest.mark.parametrize("question, sentence, states", [
    ("When did the ferry return?", "The ferry returned in March.", True),
    ("What year was the club founded?", "The club was founded in 1889.", True),
    ("What year was the club founded?", "The club was founded by miners.", False),
    ("When in 1889 was the club founded?", "The club was founded in 1889.", False),  # given
    ("In which decade did jazz spread?", "Jazz spread in the 1920s.", True),
    ("Which city did jazz spread from?", "Jazz spread in the 1920s.", False),  # not asked
    ("What century did the war end?", "The war ended in the 17th century.", True),
    ("How many people were killed?", "The strikes killed 25 people.", True),
    ("How many people were killed?", "The strikes killed people in 2019.", False),
])
def test_wanted_answer_kind(question, sentence, states):
    want = wanted(question, ANALYZER)
    assert (want is not None and features.states(sentence, want, ANALYZER, CONFIG)) is states


def test_the_wanted_kind_counts_only_when_the_best_sentence_states_it():
    profile = analyse("When did the ferry return?", ANALYZER)
    c = two_sentences("The ferry was late.", "It returned in March.")
    c.best, c.stating = 1, frozenset({1})
    assert features.states_wanted_time(c, profile) == 1.0
    assert features.states_wanted_count(c, profile) == 0.0
    c.stating = frozenset({0})
    assert features.states_wanted_time(c, profile) == 0.0


def test_highlight_prefers_the_sentence_stating_what_the_question_asks_for():
    profile = analyse("How many people were killed?", ANALYZER)
    c = two_sentences("People were killed in the raid.", "It killed 25 people.")
    c.shares, c.similar = (0.6, 0.55), {0: 0.5, 1: 0.5}
    assert features.best_sentence(c, profile, CONFIG) == 0
    c.stating = frozenset({1})
    assert features.best_sentence(c, profile, CONFIG) == 1
    assert features.best_sentence(c, profile, dataclasses.replace(CONFIG, count=0.0)) == 0


@pytest.mark.parametrize("question,asks", [
    ("Who beat the champion?", True),
    ("Which theme park reported a ride collision this week?", True),
    ("What is the name of the boy who will throw the first pitch?", True),
    ("How many people were hurt?", False),
    ("What did the park say about the crash?", False),
])
def test_questions_asking_for_a_name(question, asks):
    assert analyse(question, ANALYZER).asks_name is asks


def test_a_new_name_is_a_capitalised_word_the_question_does_not_use():
    given = analyse("Which theme park reported a tram crash on Saturday?", ANALYZER).words
    assert features.names_new("A tram crashed at a Universal Studios park.", given)
    # Opening word, days and months, and the question's own names are not new.
    assert not features.names_new("The theme park said on Saturday that the tram crashed.", given)
    assert not features.names_new("In March, the park reported a tram crash.", given)
    given = analyse("Which park did Universal close?", ANALYZER).words
    assert not features.names_new("The park Universal closed was old.", given)


def test_highlight_prefers_a_sentence_naming_what_a_who_or_which_question_asks_for():
    text = ("The theme park confirmed that the tram incident hurt several people.",
            "A tram crashed at a Universal Studios park, injuring 15 people.")
    c = two_sentences(*text)
    c.shares, c.similar = (0.6, 0.55), {0: 0.5, 1: 0.5}
    which = analyse("Which theme park reported a tram incident that hurt people?", ANALYZER)
    assert features.best_sentence(c, which, CONFIG) == 1
    assert features.best_sentence(c, which, dataclasses.replace(CONFIG, highlight_name=0)) == 0
    # A question that asks for no name keeps the closer sentence.
    what = analyse("What did the theme park confirm about the tram incident?", ANALYZER)
    assert features.best_sentence(c, what, CONFIG) == 0


def test_sentence_similarity_falls_back_to_the_passage_cosine_unless_embedded():
    profile = analyse("q", ANALYZER)
    c = candidate("Text.", dense=0.4)
    assert features.sentence_similarity(c, profile) == 0.4
    c.embedded, c.similar = True, {0: 0.7}
    assert features.sentence_similarity(c, profile) == 0.7
    assert features.sentence_similarity(candidate("By X", kind="byline", dense=0.9), profile) == 0


# --- passes --------------------------------------------------------------------------------

def test_captions_move_below_stronger_story_passages():
    spec = [("cap1", "caption", 0.8), ("a", "text", 0.9), ("cap2", "caption", 0.5),
            ("b", "text", 0.8), ("c", "text", 0.4), ("by", "byline", 1.0)]
    ranked = [candidate(name, id=i, kind=kind, sentence=ev) for i, (name, kind, ev) in
              enumerate(spec)]
    assert [c.row.text for c in passes.captions(ranked)] == ["a", "b", "cap1", "cap2", "c", "by"]
    assert passes.captions([]) == []


def test_near_duplicate_needs_the_same_words():
    a = '"The crossing is back and it will run every twenty minutes," Mayor Lena Park said.'
    b = "“The crossing is back and it will run every twenty minutes”, Mayor Lena Park said."
    assert passes.near_duplicate(a, b, ANALYZER, CONFIG)
    other = "The council approved a budget of four million dollars."
    assert not passes.near_duplicate(a, other, ANALYZER, CONFIG)
    assert not passes.near_duplicate("Park said.", "Park said.", ANALYZER, CONFIG)


def test_recency_orders_close_results_newest_first():
    profile = analyse("What is the latest forecast?", ANALYZER)
    old = candidate("old", id=1, doc=1, date="2020-01-01")
    new = candidate("new", id=2, doc=2, date="2021-01-01")
    far = candidate("far", id=3, doc=3, date="2022-01-01")
    old.score, new.score, far.score = 1.0, 0.97, 0.5
    assert [c.row.text for c in passes.recency(profile, [old, new, far], CONFIG)] == \
        ["new", "old", "far"]
    plain = analyse("What is the forecast?", ANALYZER)
    assert passes.recency(plain, [old, new, far], CONFIG)[0] is old


# --- one analyzer per index ----------------------------------------------------------------

OTHER_ARCHIVE = {
    "mill": "Mill Reopens\n\nApril 2, 2022\n\nThe old paper mill in the valley reopened on "
            "Monday with two hundred workers, the owners said.\n",
    "dam": "Dam Repairs\n\nApril 9, 2022\n\nRepairs to the river dam will take three years and "
           "cost twelve million dollars, engineers said on Friday.\n",
}
QUESTIONS = ["How many rockets landed at the Taji base?", "Who is McKenzie?",
             "How many workers does the paper mill have?", "What will the dam repairs cost?"]


def _answers(engine):
    return [engine.ask(q, k=3).to_dict(show_weak=True) for q in QUESTIONS]


def test_two_archives_in_one_process_answer_as_each_does_alone(tmp_path):
    shutil.copytree(SEEDS, tmp_path / "seeds")
    (tmp_path / "other").mkdir()
    for name, text in OTHER_ARCHIVE.items():
        (tmp_path / "other" / f"{name}.txt").write_text(text)
    for name in ("seeds", "other"):
        build_index(tmp_path / name, tmp_path / f"{name}-index", BuildOptions(embedder=FakeEmbedder(), count_tokens=word_count))
    # The second archive's stop words differ: an index records its own analyzer settings.
    settings = tmp_path / "other-index"
    version = next(settings.glob("v-*"))
    query_file = version / "bm25" / "query_tokenizer.json"
    import json

    data = json.loads(query_file.read_text())
    data["stopwords"] = sorted(set(data["stopwords"]) | {"rockets", "workers", "dam"})
    query_file.write_text(json.dumps(data))
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["sizes"]["bm25/query_tokenizer.json"] = query_file.stat().st_size
    (version / "manifest.json").write_text(json.dumps(manifest))

    def alone(name):
        engine = Engine(tmp_path / f"{name}-index", embedder=FakeEmbedder())
        try:
            return _answers(engine)
        finally:
            engine.close()

    expected = {name: alone(name) for name in ("seeds", "other")}
    for first, second in (("seeds", "other"), ("other", "seeds")):
        engines = {n: Engine(tmp_path / f"{n}-index", embedder=FakeEmbedder())
                   for n in (first, second)}
        try:
            for name in (second, first, second):
                assert _answers(engines[name]) == expected[name]
        finally:
            for engine in engines.values():
                engine.close()
    assert expected["seeds"] != expected["other"]


# --- time ----------------------------------------------------------------------------------

def test_recency_halves_every_half_life_and_ignores_undated_and_other_times():
    profile = analyse("Who won the vote this week?", ANALYZER, as_of="2024-03-31", half_life=30)
    assert profile.recent_cue and not profile.other_time
    same_day = candidate("x", date="2024-03-31")
    month_old = candidate("x", date="2024-03-01")
    assert features.recency(same_day, profile) == 1.0
    assert features.recency(month_old, profile) == pytest.approx(0.5)
    assert features.recency(candidate("x"), profile) == 0.0  # undated: neither way
    assert features.recency_cued(month_old, profile) == pytest.approx(0.5)
    calm = analyse("Who won the vote?", ANALYZER, as_of="2024-03-31")
    assert features.recency_cued(month_old, calm) == 0.0 and features.recency(month_old, calm)
    past = analyse("Who won the vote in 2019?", ANALYZER, as_of="2024-03-31")
    assert past.other_time and features.recency(same_day, past) == 0.0
    assert features.recency(same_day, analyse("Who won the vote?", ANALYZER)) == 0.0


def test_answers_as_of_a_date_use_no_later_article_and_favour_recent_ones(tmp_path):
    from qa.filters import make_filters

    docs = tmp_path / "docs"
    docs.mkdir()
    story = ("Harbor Vote\n\n{date}\n\nThe harbor council voted this week on the new ferry "
             "timetable, and the {result} plan won by two votes.\n")
    (docs / "march.txt").write_text(story.format(date="March 2, 2024", result="morning"))
    (docs / "april.txt").write_text(story.format(date="April 6, 2024", result="evening"))
    (docs / "undated.txt").write_text("Ferry Notes\n\nThe ferry timetable vote drew a crowd "
                                      "to the harbor council this week.\n")
    fake_build(docs, tmp_path / "index")
    engine = Engine(tmp_path / "index", embedder=FakeEmbedder())
    question = "Which timetable plan won the harbor council vote this week?"
    try:
        early = engine.ask(question, k=3, filters=make_filters(as_of="2024-03-05"))
        assert "april" not in {p.citation.source for p in early.passages}
        assert "undated" in {p.citation.source for p in early.passages}
        late = engine.ask(question, k=3, filters=make_filters(as_of="2024-04-07"))
        assert late.passages[0].citation.source == "april"
    finally:
        engine.close()


def test_eval_asks_each_question_as_of_its_date(tmp_path):
    import json

    from qa.evaluate import evaluate, load_questions
    from qa.results import Answer

    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "q1", "answers": ["x"], "sources": ["s"],
                                "date": "2024-01-05"}) + "\n" + json.dumps(
        {"id": "b", "question": "q2", "answers": ["x"], "sources": ["s"]}) + "\n")
    seen = []

    def ask(question, k, as_of=None):
        seen.append((question, as_of))
        return Answer(question, True, [])

    evaluate(ask, load_questions(path), ks=[1])
    assert seen == [("q1", "2024-01-05"), ("q2", None)]


def test_answering_as_of_today_restricts_nothing():
    from qa.filters import make_filters

    assert not make_filters(as_of="2030-01-01").restricts("2024-05-01")
    assert make_filters(as_of="2024-01-01").restricts("2024-05-01")
    assert not make_filters(as_of="2024-01-01").restricts(None)  # nothing is dated
    assert make_filters(source="voa", as_of="2030-01-01").restricts("2024-05-01")


def test_a_lead_counts_only_when_it_holds_some_of_the_question():
    """The lead prior lifts a news story's first passage among passages with evidence; a lead
    holding none of the question's words stays below one that holds some."""
    profile = analyse("Which city was rocked by a bridge collapse?", ANALYZER)
    lead = dataclasses.replace(candidate("The bridge collapsed overnight.", id=1), lead=True)
    lead = features.sentence_evidence(profile, lambda term: 1.0, ANALYZER, lead, CONFIG)
    empty = dataclasses.replace(candidate("Markets rose on Monday.", id=2), lead=True)
    empty = features.sentence_evidence(profile, lambda term: 1.0, ANALYZER, empty, CONFIG)
    later = features.sentence_evidence(
        profile, lambda term: 1.0, ANALYZER, candidate("A bridge fell in Baltimore.", id=3),
        CONFIG)
    assert lead.sentence > 0 and empty.sentence == 0
    assert features.is_lead(lead, profile) == 1.0
    assert features.is_lead(empty, profile) == 0.0
    assert features.is_lead(later, profile) == 0.0
    scores = {c.id: score.weighted(c, profile, CONFIG, score.LEXICAL) for c in (empty, later)}
    assert scores[3] > scores[2]


@pytest.mark.parametrize("question, place", [
    ("Which US state became the first to put him on the ballot?", "state"),
    ("What African country did Biden visit?", "country"),
    ("Which nation won the most medals?", "country"),
    ("In which state did the storm land?", "state"),
    ("Which state-run firm was sold?", None),
    ("Which city was rocked by a bridge collapse?", None),
])
def test_which_country_or_state_questions_want_a_place(question, place):
    assert analyse(question, ANALYZER).place == place


def test_a_passage_naming_a_place_the_question_does_not_earns_the_place_feature():
    from qa.ranking import places

    assert places.named("Biden flew from the U.S. to Angola, then Kansas.", "country") == \
        {"U.S.", "Angola"}
    assert places.named("Voters in Utah and North Carolina.", "state") == \
        {"Utah", "North Carolina"}
    profile = analyse("Which African country did Biden visit after Nigeria?", ANALYZER)
    assert profile.places_given == {"Nigeria"}
    naming = candidate("Biden arrived in Angola on Monday.")
    given_only = candidate("Biden left Nigeria on Sunday.", id=1)
    assert features.names_wanted_place(naming, profile) == 1.0
    assert features.names_wanted_place(given_only, profile) == 0.0
    other = analyse("What did Biden say in Angola?", ANALYZER)
    assert other.place is None and features.names_wanted_place(naming, other) == 0.0


@pytest.mark.parametrize("question, kind", [
    ("How much did the Taji base cost to build?", "money"),
    ("How much money did the campaign raise?", "money"),
    ("How much rain fell on Sunday?", None),
    ("How tall is the wall around the compound?", "measure"),
    ("How long did the strike last?", "measure"),
    ("How old is the new prime minister?", "age"),
    ("What year was the club founded?", "year"),
    ("When was Kataib Hezbollah founded?", "year"),
    ("When did the ferry return?", "time"),
    ("How many drones does Iran own?", "count"),
    ("Who is the president of France?", None),
])
def test_answer_kind_is_what_a_passage_must_state(question, kind):
    assert analyse(question, ANALYZER).answer == kind


@pytest.mark.parametrize("question, text, states", [
    ("How much did the base cost?", "The base cost $2.5 billion to build.", True),
    ("How much did the base cost?", "The base cost a fortune, officials said.", False),
    ("How tall is the wall?", "The wall is 12 feet high.", True),
    ("How tall is the wall?", "The wall is very high.", False),
    ("How old is Khamenei?", "Khamenei, 80, spoke on Friday.", True),
    ("How old is Khamenei?", "Khamenei spoke on Friday.", False),
    ("When was the militia founded?", "The militia was founded in 2007.", True),
    ("When was the militia founded in 2007?", "The militia was founded in 2007.", False),
    ("How many troops remain?", "Troops will go from 3,000 to 2,500 by January.", True),
    ("How many troops remain?", "Troops remain. Officials counted 12 rockets.", False),
    ("When did the ferry return?", "The ferry returned on Monday.", True),
    ("When did the ferry return?", "The ferry returned.", False),
    ("Who leads the militia?", "Nobody said.", True),  # no kind asked: nothing to check
])
def test_states_answer_sees_the_kind_asked_for_in_a_sentence(question, text, states):
    sentences = [s + "." for s in text.rstrip(".").split(". ")]
    spans, at = [], 100
    for s in sentences:
        spans.append((at, at + len(s)))
        at += len(s) + 1
    c = candidate(" ".join(sentences), spans=tuple(spans))
    assert features.states_answer(analyse(question, ANALYZER), c, ANALYZER) is states


def test_closest_passages_that_never_state_the_kind_asked_for_cost_confidence():
    profile = analyse("How tall is the wall around the compound?", ANALYZER)
    vague = candidate("The wall around the compound is tall and thick.", dense=0.5, sentence=0.3)
    vague.score = 1.0
    config = dataclasses.replace(CONFIG, unstated=0.3, min_confidence=0.6)
    args = (lambda doc: {"wall", "compound", "tall"}, lambda t: 1.0, lambda t: True, ANALYZER)
    assert score.answers(profile, [vague], *args, config) == \
        (False, "none of the closest passages states a measure")
    assert score.answers(profile, [vague], *args, dataclasses.replace(config, unstated=0.0)) \
        == (True, None)
    stated = candidate("The wall around the compound is 12 feet tall.", dense=0.5, sentence=0.3)
    stated.score = 1.0
    assert score.answers(profile, [stated], *args, config) == (True, None)


def test_a_question_about_now_answered_only_from_old_articles_gets_a_note():
    config = RankingConfig()
    now = analyse("Who became prime minister this week?", ANALYZER, as_of="2024-03-29")
    old = candidate("Varadkar took office.", date="2017-06-14")
    older = candidate("Kenny stepped down.", id=1, doc=1, date="2016-01-01")
    undated = candidate("A prime minister spoke.", id=2, doc=2)
    note = passes.stale(now, [old, older, undated], config)
    assert note is not None and "2017-06-14" in note and "2,480 days before 2024-03-29" in note
    fresh = candidate("Montenegro was sworn in.", id=3, doc=3, date="2024-03-20")
    assert passes.stale(now, [old, fresh], config) is None  # a recent article is shown
    assert passes.stale(now, [undated], config) is None  # nothing dated to compare
    timeless = analyse("Who became prime minister in 2017?", ANALYZER, as_of="2024-03-29")
    assert passes.stale(timeless, [old], config) is None  # another time named
    plain = analyse("Who is the prime minister?", ANALYZER, as_of="2024-03-29")
    assert passes.stale(plain, [old], config) is None  # not about now
    assert passes.stale(now, [old], dataclasses.replace(config, stale_days=3000)) is None
