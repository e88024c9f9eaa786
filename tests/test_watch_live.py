"""Two real `qa serve` processes over one index, the real model: a standing question added
over HTTP, an update publishing an article that answers it; both servers switch to the new
version, one of them checks it and the webhook receiver gets the finding once — also after
a server restarts."""

import shutil
import time

import httpx
import pytest
from conftest import NEW_ARTICLE_TEXT, start_cli, stop
from test_watch import QUESTION, Receiver

from index.ingest.pipeline import update_index

pytestmark = pytest.mark.slow

READY = r"API at (http://\S+) "


def _serve(docs, index, folder, name):
    return start_cli(["serve", "--port", "0", "--workers", "1", "--docs", str(docs),
                      "--index", str(index)], folder, READY, log_name=f"{name}.log")


def _wait(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_two_servers_switch_versions_and_post_a_finding_once(real_index, tmp_path):
    docs, index = tmp_path / "docs", tmp_path / "index"
    shutil.copytree(real_index[0], docs)
    shutil.copytree(real_index[1], index)
    receiver = Receiver()
    servers = [_serve(docs, index, tmp_path, name) for name in ("a", "b")]
    try:
        first, second = (httpx.Client(base_url=url, timeout=60) for _, url, _ in servers)
        added = first.post("/watches", json={"question": QUESTION, "webhook": receiver.url})
        assert added.status_code == 201, added.text
        assert added.json()["answered_now"] is False
        assert [w["question"] for w in second.get("/watches").json()["watches"]] == [QUESTION]
        before = first.get("/health").json()["version"]

        (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
        update_index(docs, index)  # publishes a new version; the servers follow it
        assert _wait(lambda: all(c.get("/health").json()["version"] != before
                                 for c in (first, second)))
        assert _wait(lambda: receiver.delivered())
        time.sleep(3)  # time enough for a second post, were there one
        [body] = receiver.delivered()
        assert body["watch"] == added.json()["watch"]["id"] and body["answered"] is True
        assert body["passages"][0]["citation"]["source"] == "zanzibar"
        assert "started running again" in body["passages"][0]["highlight"]["text"]
        checked = [log.read_text().count("checked 1 standing question(s)")
                   for _, _, log in servers]
        assert sorted(checked) == [0, 1]
        assert first.get("/watches").json()["watches"][0]["findings"] == 1

        stop(servers[1][0])  # a restart of one server posts nothing again
        servers[1] = _serve(docs, index, tmp_path, "b-again")
        time.sleep(3)
        assert len(receiver.posts) == 1
    finally:
        for process, _, _ in servers:
            stop(process)
        receiver.close()


def test_a_real_slack_bot_adds_a_watch_and_posts_its_finding(real_index, tmp_path):
    import json
    from urllib.parse import urlencode

    from slack_mock import SlackMock, sign

    secret, token = "signing-secret-7f1e2d3c4b5a", "xoxb-1234-5678-bottokenSECRET"
    docs, index = tmp_path / "docs", tmp_path / "index"
    shutil.copytree(real_index[0], docs)
    shutil.copytree(real_index[1], index)
    mock = SlackMock().start()
    process, url, log = start_cli(
        ["slack", "--http", "--port", "0", "--docs", str(docs), "--index", str(index)],
        tmp_path, r"listening at (http://\S+)/slack/events",
        env={"SLACK_BOT_TOKEN": token, "SLACK_SIGNING_SECRET": secret,
             "SLACK_API_URL": mock.api_url})
    try:
        body = urlencode({"token": "legacy", "team_id": "T0QA", "channel_id": "CWATCH",
                          "user_id": "UREPORTER", "command": "/ask",
                          "text": f"watch {QUESTION}", "trigger_id": "trig",
                          "response_url": mock.response_url("watch")})
        response = httpx.post(f"{url}/slack/events", content=body, timeout=30, headers={
            "Content-Type": "application/x-www-form-urlencoded", **sign(secret, body)})
        assert response.status_code == 200
        [reply] = mock.wait_for("response_url", path="/response/watch", timeout=60)
        assert "Standing question #1 added" in json.dumps(reply.body)
        (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
        update_index(docs, index)
        [post] = mock.wait_for("chat.postMessage", channel="CWATCH", timeout=60)
        blocks = json.dumps(post.body["blocks"], ensure_ascii=False)
        assert "standing question #1" in blocks and "started running again" in blocks
        assert "vote_answer" in blocks
        assert token not in log.read_text()
    finally:
        stop(process)
        mock.stop()
