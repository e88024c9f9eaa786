"""`qa serve` as a real process (uvicorn on loopback), called over HTTP with httpx."""

import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import schemathesis
from conftest import start_cli, stop
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.slow

TAJI = "How many rockets landed at the Taji base?"
TAJI_SOURCE = "003_a6f98cea0e1f5c95"
QUESTIONS = [
    TAJI,
    "Who is McKenzie?",
    "What is the Quds Force?",
    "What did Khamenei say?",
    "Where is Taji Field Base?",
    "Who was killed in the attack?",
    "What did Esper say about Iran?",
    "How many troops were wounded?",
    "Who carried out the attack?",
    "What happened in Baghdad?",
]


@pytest.fixture(scope="module")
def server(real_index, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    process, url, _ = start_cli(["serve", "--port", "0", "--index", str(real_index[1])],
                                folder, r"API at (http://\S+) ")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        stop(process)


def test_ask_returns_the_contract_object(server, real_index):
    response = server.post("/ask", json={"question": TAJI, "k": 3})
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"question", "answered", "passages", "reason"}
    assert data["reason"] is None and data["answered"]
    assert data["question"] == TAJI and data["answered"] is True
    assert [p["rank"] for p in data["passages"]] == [1, 2, 3]
    assert TAJI_SOURCE in [p["citation"]["source"] for p in data["passages"]]
    top = next(p for p in data["passages"] if p["citation"]["source"] == TAJI_SOURCE)
    assert "18 rockets" in top["text"]
    assert set(top["citation"]) >= {"source", "path", "title", "date", "author", "publisher",
                                    "start", "end"}
    # the passage is the file's text at its offsets (whitespace folded); the path is
    # relative to the docs folder (no server paths in responses)
    c = top["citation"]
    assert c["path"] == f"{TAJI_SOURCE}.txt"
    text = open(real_index[0] / c["path"], encoding="utf-8").read()
    assert " ".join(text[c["start"]:c["end"]].split()) == " ".join(top["text"].split())


def test_k_defaults_to_five(server):
    assert len(server.post("/ask", json={"question": TAJI}).json()["passages"]) == 5


@pytest.mark.parametrize(
    "body, mentions",
    [
        ({}, "question: Field required"),
        ({"question": TAJI, "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"question": TAJI, "k": 101}, "k: Input should be less than or equal to 100"),
        ({"question": TAJI, "k": "many"}, "k: Input should be a valid integer"),
        ({"question": TAJI, "k": True}, "k: Input should be a valid integer"),
        ({"question": TAJI, "show_weak": 0}, "show_weak: Input should be a valid boolean"),
        ({"question": 42}, "question: Input should be a valid string"),
        ({"question": TAJI, "since": "last week"}, "since 'last week' is not a date"),
        ({"question": TAJI, "since": 0}, "since: Input should be a valid string"),
        ({"question": TAJI, "since": "2020-03-02", "until": "2020-01-01"}, "nothing can match"),
        ({"question": TAJI, "quesiton": "typo"}, "quesiton: Extra inputs are not permitted"),
    ],
)
def test_invalid_bodies_are_422_with_a_clear_message(server, body, mentions):
    response = server.post("/ask", json=body)
    assert response.status_code == 422
    assert mentions in response.json()["error"]


def test_malformed_json_is_422(server):
    response = server.post("/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "JSON" in response.json()["error"]


@pytest.mark.parametrize("question", ["", "   \t\n "])
def test_an_empty_question_is_400(server, question):
    response = server.post("/ask", json={"question": question})
    assert response.status_code == 400
    assert "question is empty" in response.json()["error"]


def test_filters_are_applied(server):
    response = server.post("/ask", json={"question": TAJI, "source": TAJI_SOURCE})
    assert response.status_code == 200
    sources = {p["citation"]["source"] for p in response.json()["passages"]}
    assert sources == {TAJI_SOURCE}
    # The CLI's date forms are accepted too, and validated the same way.
    assert server.post("/ask", json={"question": TAJI, "since": "2020"}).status_code == 200
    bad = server.post("/ask", json={"question": TAJI, "since": "2021", "until": "2020"})
    assert bad.status_code == 422 and "nothing can match" in bad.json()["error"]


def test_a_refused_answer_holds_no_passages_unless_show_weak(server):
    question = "What is the recipe for a chocolate cake?"
    refused = server.post("/ask", json={"question": question, "k": 3})
    assert refused.status_code == 200
    assert refused.json()["answered"] is False
    assert refused.json()["passages"] == []
    weak = server.post("/ask", json={"question": question, "k": 3, "show_weak": True}).json()
    assert weak["answered"] is False and len(weak["passages"]) == 3


def test_health_and_docs(server):
    health = server.get("/health").json()
    assert health["status"] == "ok" and health["index_loaded"] is True
    assert health["documents"] == 5 and health["passages"] > 5
    assert health["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert health["model_loaded"] is True
    docs = server.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = server.get("/openapi.json").json()
    assert "/ask" in spec["paths"] and "/health" in spec["paths"]


def test_ten_questions_load_the_model_once(server):
    for question in QUESTIONS:
        response = server.post("/ask", json={"question": question, "k": 1, "show_weak": True})
        assert response.status_code == 200
        assert response.json()["passages"]
    # One session of each encoder (questions fp32, re-ranked sentences int8), never more.
    assert server.get("/health").json()["model_loads"] == 2


def test_concurrent_requests_get_the_same_answers_as_sequential_ones(server):
    def ask(question):
        response = server.post("/ask", json={"question": question, "k": 3})
        assert response.status_code == 200
        return response.json()

    questions = QUESTIONS[:3]
    sequential = [ask(q) for q in questions]
    with ThreadPoolExecutor(3) as pool:
        concurrent = list(pool.map(ask, questions))
    assert concurrent == sequential


def test_warnings_come_back_in_a_header(server):
    response = server.post("/ask", json={"question": TAJI + " x" * 1200, "k": 1})
    assert response.status_code == 200
    assert "the question is longer than the model reads" in response.headers["X-QA-Warning"]
    assert "X-QA-Warning" not in server.post("/ask", json={"question": TAJI, "k": 1}).headers


def test_the_api_holds_to_its_schema_for_any_input(server):
    """schemathesis generates requests from the served OpenAPI schema: no 5xx, and every
    status code, header and body as the schema says. (Its pytest plugin reads a private
    pytest attribute that pytest 9 removed, so operations are driven with hypothesis here.)"""
    from hypothesis import given
    from schemathesis.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"POST /ask", "GET /health"}
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    # Negative data only where there is input to get wrong (GET /health takes none).
    runs = [(op, mode) for op in operations for mode in modes
            if op.method.lower() == "post" or mode is schemathesis.GenerationMode.POSITIVE]
    for operation, mode in runs:
        @given(operation.as_strategy(generation_mode=mode))
        @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)), deadline=None,
                  derandomize=bool(os.environ.get("CI")),
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            # Schema-valid dates can still be refused (2021-02-30, since after until): the
            # schema cannot say that, so "positive data accepted" is not checked.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        fuzz()


def test_what_the_probes_found_is_not_a_500(server):
    """scripts/probe_http.py found two 500s: a lone surrogate in the source filter (SQLite
    cannot encode it) and a watch id beyond SQLite's 64-bit integers."""
    body = b'{"question": "How many rockets landed?", "source": "\\ud800 Taji"}'
    response = server.post("/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["passages"] == []
    response = server.delete(f"/watches/{2**64}")
    assert response.status_code == 422 and "watch" in response.json()["error"]
    assert server.delete(f"/watches/{2**63 - 1}").status_code == 404
