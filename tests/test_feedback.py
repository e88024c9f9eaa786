"""Feedback as evaluation data: verdicts recorded beside the index (POST /feedback, the web
page's buttons), listed and exported by `qa feedback` in the format `qa eval` runs."""

import json

import pytest
from conftest import FakeCli, FakeEmbedder
from fastapi.testclient import TestClient

from qa.api import create_api
from qa.app import Service
from qa.engine import Engine
from qa.feedback import Feedback, FeedbackError, feedback_path, to_eval

TAJI = "How many rockets landed at the Taji base?"


@pytest.fixture
def served(seeds):
    docs, index = seeds
    service = Service(Engine(index, embedder=FakeEmbedder()), reload_every=None)
    yield docs, index, service, TestClient(create_api(service))
    service.close()


def test_feedback_lives_beside_the_index_not_inside(tmp_path):
    index = tmp_path / "idx"
    assert feedback_path(index) == (tmp_path / "idx.feedback.sqlite").resolve()


def test_post_feedback_is_recorded_and_exported_for_qa_eval(served):
    docs, index, service, client = served
    answer = service.ask(TAJI, k=5)
    right = answer.passages[1]
    response = client.post("/feedback", json={"question": TAJI, "verdict": "up",
                                              "rank": right.rank})
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"id", "answer"}
    wrong = client.post("/feedback", json={"question": "What is the recipe for a chocolate "
                                                       "cake?", "verdict": "down"})
    assert wrong.status_code == 201
    run = FakeCli(docs, index)
    exported = run(["feedback", "export"])
    assert exported.exit_code == 0, exported.output
    questions = [json.loads(line) for line in exported.stdout.splitlines()]
    assert questions[0]["question"] == TAJI
    assert questions[0]["sources"] == [right.citation.source]
    assert questions[0]["answers"] == [right.highlight.text]
    assert questions[1]["sources"] == [] and questions[1]["answers"] == []  # to be refused
    # What it exports, qa eval runs.
    path = index.parent / "judged.jsonl"
    path.write_text(exported.stdout)
    evaluated = run(["eval", str(path), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["answerable"] == 1 and report["offtopic"] == 1
    listed = run(["feedback", "list", "--json"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["verdict"], r["rank"], r["via"]) for r in rows] == [
        ("up", right.rank, "api"), ("down", None, "api")]
    assert rows[0]["version"] == service.engine.store.version.name
    assert rows[0]["findings"][right.rank - 1]["source"] == right.citation.source


def test_bad_feedback_is_a_clear_400_or_422(served):
    _, _, _, client = served
    assert client.post("/feedback", json={"question": TAJI, "verdict": "meh"}).status_code \
        == 422
    no_such = client.post("/feedback", json={"question": TAJI, "verdict": "up", "rank": 99})
    assert no_such.status_code == 400 and "no finding" in no_such.json()["error"]


def test_a_thumbs_down_then_the_right_finding_exports_that_finding(tmp_path):
    from qa.results import Answer, Citation, Highlight, Passage

    def passage(rank, source):
        cite = Citation(source, f"{source}.txt", None, None, None, None, None, 0, 10)
        return Passage(rank, 1.0, "x" * 10, Highlight(f"sentence {rank}", 0, 10), cite)

    db = Feedback(tmp_path / "f.sqlite")
    shown = db.shown(Answer("Q?", True, [passage(1, "a"), passage(2, "b")]), as_of="2024-01-05")
    db.judge(shown, "down")
    db.judge(shown, "up", rank=2)
    with pytest.raises(FeedbackError):
        db.judge(shown, "sideways")
    with pytest.raises(FeedbackError):
        db.judge(shown + 1, "up")
    [entry] = to_eval(list(db.judged()))
    assert entry == {"id": f"feedback-{shown}", "question": "Q?", "answers": ["sentence 2"],
                     "sources": ["b"], "date": "2024-01-05"}
    # A later 👎 on that finding takes it back: nothing right, so nothing to export.
    db.judge(shown, "down", source="b")
    assert to_eval(list(db.judged())) == [{"id": f"feedback-{shown}", "question": "Q?",
                                           "answers": [], "sources": [], "date": "2024-01-05"}]


def test_feedback_list_without_any_feedback(seeds):
    docs, index = seeds
    result = FakeCli(docs, index)(["feedback", "list"])
    assert result.exit_code == 0 and "No feedback recorded yet." in result.stdout


def test_the_search_page_answers_with_citations_and_permalinks(served):
    _, _, service, client = served
    assert "<form" in client.get("/").text
    page = client.get("/", params={"q": TAJI})
    assert page.status_code == 200
    answer = service.ask(TAJI, k=5)
    top = answer.passages[0]
    assert "<mark>" in page.text and top.citation.source.split("_")[0] in page.text
    assert f'value="{TAJI}"' in page.text  # the permalink's question fills the box again
    # No URL in the seeds: the citation opens the stored text with the span marked.
    link = f"/show?source={top.citation.source}&amp;span={top.citation.start}%3A" \
           f"{top.citation.end}#cited"
    assert link in page.text
    shown = client.get("/show", params={"source": top.citation.source,
                                        "span": f"{top.citation.start}:{top.citation.end}"})
    assert shown.status_code == 200 and '<mark id="cited">' in shown.text


def test_the_search_page_refuses_with_its_reason_and_offers_the_closest(served):
    _, _, _, client = served
    page = client.get("/", params={"q": "What did Angela Merkel say about the rockets?"})
    assert "No confident answer in the archive: the archive never mentions Angela Merkel" \
        in page.text
    assert "Show the closest passages anyway" in page.text and "<mark>" not in page.text
    weak = client.get("/", params={"q": "What did Angela Merkel say about the rockets?",
                                   "weak": "1"})
    assert "Closest passages" in weak.text and "<li>" in weak.text


def test_the_search_page_reports_a_bad_filter_in_the_page(served):
    _, _, _, client = served
    page = client.get("/", params={"q": TAJI, "since": "last tuesday"})
    assert page.status_code == 400 and 'role="alert"' in page.text
    assert "since" in page.text
