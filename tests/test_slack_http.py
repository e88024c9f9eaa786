"""The Slack HTTP endpoint's gate, in process: unsigned, malformed or oversized requests are
refused before bolt parses them (401/413, nothing logged); signed ones reach bolt."""

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_mock import sign
from starlette.testclient import TestClient

from qa.slack import create_http_app

SECRET = "signing-secret-7f1e2d3c4b5a"


class Bolt:
    """Stands in for the bolt App: records what reaches it."""

    def __init__(self):
        self.dispatched = []

    def dispatch(self, request):
        from slack_bolt import BoltResponse

        self.dispatched.append(request.raw_body)
        return BoltResponse(status=200, body="ok")


@pytest.fixture(scope="module")
def gate():
    bolt = Bolt()
    client = TestClient(create_http_app(bolt, signing_secret=SECRET, max_body=4096))
    return bolt, client


ASCII = st.characters(min_codepoint=32, max_codepoint=126)
HEADERS = st.fixed_dictionaries({}, optional={
    "X-Slack-Request-Timestamp": st.one_of(st.text(ASCII, max_size=20), st.integers().map(str)),
    "X-Slack-Signature": st.one_of(st.text(ASCII, max_size=80), st.just("v0=" + "0" * 64)),
    "Content-Type": st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                     "text/plain"]),
})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode),
                      st.just(b'{"type": "event_callback", "event": {'),
                      st.just(b"payload=%7B%22type%22%3A"),
                      ),
       headers=HEADERS)
def test_unsigned_requests_are_401_and_never_reach_bolt(gate, caplog, body, headers):
    bolt, client = gate
    before = len(bolt.dispatched)
    with caplog.at_level(logging.INFO):
        response = client.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 401
    assert len(bolt.dispatched) == before
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_stale_or_wrongly_signed_request_is_401(gate):
    bolt, client = gate
    body = '{"type": "url_verification", "challenge": "x"}'
    stale = sign(SECRET, body, timestamp=1_000_000_000)
    assert client.post("/slack/events", content=body, headers=stale).status_code == 401
    wrong = sign("another-secret", body)
    assert client.post("/slack/events", content=body, headers=wrong).status_code == 401
    assert bolt.dispatched == []


def test_a_body_over_the_limit_is_413_before_the_signature(gate):
    bolt, client = gate
    body = "x" * 5000
    response = client.post("/slack/events", content=body, headers=sign(SECRET, body))
    assert response.status_code == 413 and bolt.dispatched == []


def test_a_signed_request_reaches_bolt(gate):
    bolt, client = gate
    body = '{"type": "url_verification", "challenge": "x"}'
    response = client.post("/slack/events", content=body,
                           headers={"Content-Type": "application/json", **sign(SECRET, body)})
    assert response.status_code == 200 and bolt.dispatched[-1] == body
