"""`qa eval`, grouping, filters and refusal with the real model over the seed articles."""

import json

import pytest
from conftest import DATA
from typer.testing import CliRunner

from cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def _ask(real_index, *args):
    docs, index = real_index
    result = runner.invoke(app, ["ask", *args, "--docs", str(docs), "--index", str(index)])
    assert result.exit_code == 0, result.stderr
    return result


def test_eval_over_the_seed_questions(real_index):
    docs, index = real_index
    result = runner.invoke(app, ["eval", str(DATA / "seed_questions.jsonl"), "--docs", str(docs),
                                 "--index", str(index), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["questions"] == 31 and report["answerable"] == 28
    assert report["hit"]["5"] >= 0.93
    assert report["hit"]["1"] <= report["hit"]["5"] <= report["hit"]["10"]
    assert report["refused_correctly"] == 3 and report["answered_offtopic"] == 0
    assert report["refused_wrongly"] == 0
    assert {m["id"] for m in report["missed"]} <= {f"p{i:02d}" for i in range(1, 29)}


def test_eval_table_and_stage(real_index):
    docs, index = real_index
    result = runner.invoke(app, ["eval", str(DATA / "seed_questions.jsonl"), "--docs", str(docs),
                                 "--index", str(index), "--stage", "bm25", "-k", "1,3"])
    assert result.exit_code == 0, result.stderr
    assert "answer-hit@3" in result.stdout and "stage bm25" in result.stdout
    assert "n/a" in result.stdout  # a single stage does not decide refusals
    bad = runner.invoke(app, ["eval", str(DATA / "seed_questions.jsonl"), "--stage", "magic"])
    assert bad.exit_code != 0


def test_buzz_saw_quote_from_two_outlets_is_one_finding(real_index):
    result = _ask(real_index, "Who said anyone attempting to overrun the embassy would run into "
                  "a buzz saw?", "--json", "-k", "3")
    answer = json.loads(result.stdout)
    assert answer["answered"]
    first = answer["passages"][0]
    sources = {first["citation"]["source"]} | {c["source"] for c in first["also"]}
    assert sources == {"001_ff616514b17d0e93", "002_a3394f1d188f29c5"}
    assert "buzz saw" in first["text"] and "buzz saw" in first["highlight"]["text"]
    assert not any("buzz saw" in p["text"] for p in answer["passages"][1:])
    terminal = _ask(real_index, "Who said anyone attempting to overrun the embassy would run "
                    "into a buzz saw?", "-k", "1")
    assert "also reported by" in terminal.stdout


def test_since_keeps_only_later_articles_and_marks_inferred_dates(real_index):
    answer = json.loads(_ask(real_index, "What happened to the US embassy in Baghdad?",
                             "--since", "2020-06-01", "--json", "--show-weak").stdout)
    assert answer["passages"]
    for passage in answer["passages"]:
        for cite in [passage["citation"], *passage["also"]]:
            assert cite["date"] >= "2020-06-01"
            assert cite["source"] == "004_c31d4bc7025f9123" and cite["date_inferred"] is True
    until = json.loads(_ask(real_index, "What happened to the US embassy in Baghdad?",
                            "--until", "2020-01-31", "--json", "-k", "10").stdout)
    dates = {c["date"] for p in until["passages"] for c in [p["citation"], *p["also"]]}
    assert dates == {"2020-01-02"}


def test_byline_answers_who_wrote_an_article(real_index):
    answer = json.loads(_ask(real_index, "Who is the author of the VOA story on Esper's "
                             "preemptive action?", "--json", "-k", "3").stdout)
    first = answer["passages"][0]
    assert first["citation"]["source"] == "001_ff616514b17d0e93"
    assert first["highlight"]["text"] == "By Carla Babb"


@pytest.mark.parametrize(("question", "source", "byline"), [
    ("Who wrote the VOA article?", "001_ff616514b17d0e93", "By Carla Babb"),
    ("Who wrote the story in Epoch Times?", "002_a3394f1d188f29c5", "By Zachary Stieber"),
])
def test_a_question_naming_only_the_outlet_is_answered_by_its_byline(real_index, question,
                                                                     source, byline):
    answer = json.loads(_ask(real_index, question, "--json", "-k", "3").stdout)
    assert answer["answered"] is True
    first = answer["passages"][0]
    assert first["citation"]["source"] == source and first["highlight"]["text"] == byline
    # An outlet the archive does not have answers nothing.
    other = json.loads(_ask(real_index, "Who wrote the BBC article?", "--json").stdout)
    assert other["answered"] is False


@pytest.mark.parametrize("question", [
    "Who is the president of France?",  # "who" and "president" occur, France does not
    "How many goals did Messi score in 2012?",
    "What did Putin say about the attack?",  # attacks abound; Putin is never named
    "How many US soldiers are stationed in Germany?",
])
def test_off_topic_questions_sharing_common_words_are_refused(real_index, question):
    assert json.loads(_ask(real_index, question, "--json").stdout)["answered"] is False


def test_refusal_in_terminal_and_json(real_index):
    question = "What is the population of Tokyo?"
    terminal = _ask(real_index, question)
    assert "No confident answer in the archive" in terminal.stdout
    assert "chars " not in terminal.stdout
    weak = _ask(real_index, question, "--show-weak", "-k", "2")
    assert "No confident answer" in weak.stdout and "chars " in weak.stdout
    data = json.loads(_ask(real_index, question, "--json").stdout)
    assert data["answered"] is False and data["passages"] == []
    shown = json.loads(_ask(real_index, question, "--json", "--show-weak", "-k", "2").stdout)
    assert shown["answered"] is False and len(shown["passages"]) == 2
    assert set(shown["passages"][0]) >= {"rank", "score", "text", "highlight", "citation", "also"}


def test_a_question_whose_kind_of_answer_no_close_passage_states_is_refused_saying_so(
    real_index,
):
    # The seeds describe the Taji base and its attack, and never measure anything there.
    data = json.loads(_ask(real_index, "How tall is the Taji base fence?", "--json").stdout)
    assert data["answered"] is False
    assert data["reason"] == "none of the closest passages states a measure"
    terminal = _ask(real_index, "How tall is the Taji base fence?")
    assert "none of the closest passages states a measure" in " ".join(terminal.stdout.split())
    # The same kind of question that a passage answers with a number is answered.
    assert json.loads(_ask(real_index, "How many rockets landed at the Taji base?",
                           "--json").stdout)["answered"] is True
