"""Standing questions in the servers, in process: the HTTP routes, the Slack bot's commands
and button against the suite's Slack Web API mock, and a Runner that checks each version
the Service switches to and tells a webhook receiver on loopback and Slack."""

import json
import time
from urllib.parse import urlencode

import pytest
from conftest import NEW_ARTICLE_TEXT, FakeEmbedder, fake_index, word_count
from slack_mock import SlackMock, sign
from starlette.testclient import TestClient
from test_watch import QUESTION, Receiver

from index.ingest.job import BuildOptions
from index.ingest.pipeline import update_index
from qa.engine import Engine
from qa.service import Service
from qa.watch import Backoff, Runner, Watches, Webhook

SECRET = "signing-secret-7f1e2d3c4b5a"
TOKEN = "xoxb-1234-5678-bottokenSECRET"


@pytest.fixture
def served(tmp_path):
    """(docs, index, service, update): the seeds (fake embedder) served by a Service that
    follows updates every 0.1 s."""
    docs, index = fake_index(tmp_path)
    embedder = FakeEmbedder()
    service = Service(Engine(index, embedder=embedder), workers=1, reload_every=0.1)

    def update(name="zanzibar.txt", text=NEW_ARTICLE_TEXT):
        (docs / name).write_text(text)
        update_index(docs, index, BuildOptions(embedder=embedder, count_tokens=word_count))
        deadline = time.monotonic() + 10
        while not service.current() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.current()

    yield docs, index, service, update
    service.close()


def _wait(condition, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_http_routes_add_list_and_remove(served):
    from qa.api import create_api

    docs, index, service, _ = served
    client = TestClient(create_api(service, token="t0ken"))
    auth = {"Authorization": "Bearer t0ken"}
    assert client.get("/watches").status_code == 401  # the token rules of /ask
    added = client.post("/watches", json={"question": QUESTION, "webhook": "http://x.test/h"},
                        headers=auth)
    assert added.status_code == 201, added.text
    watch = added.json()["watch"]
    assert watch["question"] == QUESTION and added.json()["answered_now"] is False
    for body, error in (({"question": "  "}, "question is empty"),
                        ({"question": "Who?", "webhook": "gopher://x"}, "not an http(s) URL"),
                        ({"question": "Who?", "since": "later"}, "is not a date")):
        bad = client.post("/watches", json=body, headers=auth)
        assert bad.status_code == 400 and error in bad.json()["error"], bad.text
    assert client.post("/watches", json={"question": "Who?", "k": 3},
                       headers=auth).status_code == 422
    listed = client.get("/watches", headers=auth).json()["watches"]
    assert [(w["id"], w["findings"], w["via"]) for w in listed] == [(watch["id"], 0, "api")]
    assert client.delete(f"/watches/{watch['id']}", headers=auth).status_code == 200
    gone = client.delete(f"/watches/{watch['id']}", headers=auth)
    assert gone.status_code == 404 and "no standing question" in gone.json()["error"]
    assert client.get("/watches", headers=auth).json() == {"watches": []}


def test_a_runner_checks_each_new_version_and_tells_once(served):
    docs, index, service, update = served
    receiver = Receiver(statuses=[502])  # the first POST fails: tried again
    runner = Runner(service, [Webhook(timeout=2, backoff=Backoff(3, 0.05))], every=0.1)
    try:
        watches = Watches.of_index(index)
        with service.leased() as engine:
            watches.add(QUESTION, webhook=receiver.url, engine=engine)
        runner.start()
        update()
        assert _wait(lambda: receiver.delivered())
        [body] = receiver.delivered()
        assert body["passages"][0]["citation"]["source"] == "zanzibar"
        update("unrelated.txt", "Bakery Wins\n\nMay 2, 2021\n\nA bakery won a prize.\n")
        assert _wait(lambda: runner.checks == 2)
        time.sleep(0.3)
        assert len(receiver.delivered()) == 1 and len(receiver.posts) == 2
        watches.close()
    finally:
        runner.close()
        receiver.close()


def _signed_form(client, fields):
    body = urlencode(fields)
    return client.post("/slack/events", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", **sign(SECRET, body)})


def test_slack_commands_and_a_finding_posted_with_votes(served):
    from qa.slack import create_app, create_http_app
    from qa.watch_slack import destinations

    docs, index, service, update = served
    mock = SlackMock().start()
    runner = None
    try:
        bolt = create_app(service, bot_token=TOKEN, signing_secret=SECRET,
                          api_url=mock.api_url)
        client = TestClient(create_http_app(bolt, signing_secret=SECRET))

        def command(name, text, channel="CNEWS"):
            response = _signed_form(client, {
                "command": "/ask", "text": text, "response_url": mock.response_url(name),
                "channel_id": channel, "user_id": "UREPORTER", "team_id": "T0QA",
                "trigger_id": "1.2.3"})
            assert response.status_code == 200
            [reply] = mock.wait_for("response_url", path=f"/response/{name}")
            return reply.body

        added = command("add", f"watch {QUESTION}")
        assert "Standing question #1 added" in json.dumps(added)
        assert "does not answer it yet" in json.dumps(added)
        assert "question is empty" in json.dumps(command("empty", "watch \x07"))
        listed = command("list", "watches")
        assert QUESTION in json.dumps(listed) and listed["response_type"] == "ephemeral"
        [remove] = [b["accessory"] for b in listed["blocks"] if b.get("accessory")]
        assert remove["action_id"] == "remove_watch"
        assert "no standing questions" in json.dumps(command("other", "watches", "COTHER"))

        runner = Runner(service, destinations(TOKEN, mock.api_url, service.feedback),
                        every=0.1).start()
        update()
        [post] = mock.wait_for("chat.postMessage", channel="CNEWS")
        blocks = json.dumps(post.body["blocks"], ensure_ascii=False)
        assert "standing question #1" in blocks and "started running again" in blocks
        assert post.body["text"].startswith("New finding for “When did the Zanzibar")
        votes = [e for b in post.body["blocks"] if b["type"] == "actions"
                 for e in b["elements"]]
        assert [v["action_id"] for v in votes] == ["vote_answer", "vote_answer"]
        # A 👍 on the posted finding lands in qa feedback.
        vote = {"type": "block_actions", "user": {"id": "UREADER"},
                "channel": {"id": "CNEWS"}, "team": {"id": "T0QA"},
                "response_url": mock.response_url("vote"), "trigger_id": "1.2.3",
                "actions": [{**votes[0], "action_ts": "1"}], "container": {}}
        assert _signed_form(client, {"payload": json.dumps(vote)}).status_code == 200
        mock.wait_for("response_url", path="/response/vote")
        [judged] = list(service.feedback.judged())
        assert judged.verdict == "up" and judged.via == "watch" and judged.channel == "CNEWS"

        # The Remove button removes it (only from its own channel).
        click = {"type": "block_actions", "user": {"id": "UREPORTER"},
                 "channel": {"id": "CNEWS"}, "team": {"id": "T0QA"},
                 "response_url": mock.response_url("remove"), "trigger_id": "1.2.3",
                 "actions": [{**remove, "action_ts": "2"}], "container": {}}
        assert _signed_form(client, {"payload": json.dumps(click)}).status_code == 200
        mock.wait_for("response_url", count=2, path="/response/remove")
        assert Watches.of_index(index).all() == []
    finally:
        if runner is not None:
            runner.close()
        mock.stop()
