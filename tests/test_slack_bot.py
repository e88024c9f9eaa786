"""`qa slack --http` as a real process on loopback, talking to a mock Slack Web API.

Slack's side is played here: events, slash commands and button clicks are signed with the
signing secret exactly as Slack signs them; the bot's replies are read back from the mock.
"""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from conftest import ROOT, stop
from slack_mock import BOT_ID, BOT_USER, SlackMock, event_body, sign

pytestmark = pytest.mark.slow

SECRET = "signing-secret-7f1e2d3c4b5a"
BOT_TOKEN = "xoxb-1234-5678-bottokenSECRET"
TAJI = "How many rockets landed at the Taji base?"
TAJI_SOURCE = "003_a6f98cea0e1f5c95"
_ids = itertools.count(1)


@dataclass
class Bot:
    url: str
    mock: SlackMock
    process: subprocess.Popen
    log: Path
    index: Path

    def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}/slack/events", content=body.encode(), headers=headers,
                          timeout=10)

    def event(self, event: dict, event_id: str | None = None, secret: str = SECRET,
              timestamp: int | None = None, extra: dict | None = None) -> httpx.Response:
        body = event_body(event, event_id or f"Ev{next(_ids):06d}")
        headers = {"Content-Type": "application/json", **sign(secret, body, timestamp),
                   **(extra or {})}
        return self.post(body, headers)

    def form(self, fields: dict[str, str]) -> httpx.Response:
        body = urlencode(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(SECRET, body)}
        return self.post(body, headers)

    def control(self) -> None:
        """A good mention whose reply is awaited: anything wrongly sent before it has had
        the same time to arrive, then a short extra poll."""
        channel = f"CCONTROL{next(_ids)}"
        assert self.event(mention(channel, TAJI)).status_code == 200
        self.mock.wait_for("chat.postMessage", channel=channel)
        time.sleep(0.5)


def mention(channel: str, question: str, ts: str | None = None, **extra) -> dict:
    ts = ts or f"1700000000.{next(_ids):06d}"
    return {"type": "app_mention", "user": "UASKER", "text": f"<@{BOT_USER}> {question}",
            "ts": ts, "channel": channel, "event_ts": ts, **extra}


def blocks_text(call) -> str:
    return json.dumps(call.body.get("blocks"), ensure_ascii=False)


@pytest.fixture(scope="module")
def bot(real_index, tmp_path_factory):
    mock = SlackMock().start()
    folder = tmp_path_factory.mktemp("slackbot")
    log = folder / "bot.log"
    scopes = folder / "scopes.toml"
    scopes.write_text('[channels.CSCOPED]\nsource = "voa"\nk = 2\n')
    index = folder / "index"  # a copy: the feedback database goes beside it
    shutil.copytree(real_index[1], index)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "QA_"))}
    env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SECRET,
               SLACK_API_URL=mock.api_url, HF_HUB_OFFLINE="1", QA_HOME=str(folder))
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "slack", "--http", "--port", "0",
             "--index", str(index), "--scopes", str(scopes)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None:
            found = re.search(r"listening at (http://\S+)/slack/events", log.read_text())
            if found:
                url = found.group(1)
            elif process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the bot did not start:\n{log.read_text()}")
            else:
                time.sleep(0.1)
        yield Bot(url, mock, process, log, index)
    finally:
        stop(process)
        mock.stop()


def test_token_is_verified_against_the_configured_api(bot):
    calls = bot.mock.find("auth.test")
    assert calls, "auth.test was never called"
    assert all(c.authorization == f"Bearer {BOT_TOKEN}" for c in calls)
    assert "WARNING" not in bot.log.read_text()  # a clean start
    health = httpx.get(f"{bot.url}/health", timeout=10).json()
    assert health["model_loads"] == 2 and health["passages"] > 0  # both encoders, once


def test_url_verification_challenge(bot):
    body = json.dumps({"token": "t", "challenge": "chal-123", "type": "url_verification"})
    response = bot.post(body, {"Content-Type": "application/json", **sign(SECRET, body)})
    assert response.status_code == 200
    assert "chal-123" in response.text


def test_mention_gets_exactly_one_threaded_reply_citing_the_source(bot):
    event = mention("CMENTION", TAJI, ts="1700000001.000100")
    response = bot.event(event, event_id="EvTAJI")
    assert response.status_code == 200
    (reply,) = bot.mock.wait_for("chat.postMessage", channel="CMENTION")
    assert reply.body["thread_ts"] == "1700000001.000100"
    assert TAJI_SOURCE in blocks_text(reply)
    assert reply.body["text"]  # the plain fallback is always set
    assert reply.authorization == f"Bearer {BOT_TOKEN}"

    # Slack redelivers (say, it did not see our 200): same event_id, X-Slack-Retry-Num set.
    again = bot.event(event, event_id="EvTAJI",
                      extra={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200
    bot.control()
    assert len(bot.mock.find("chat.postMessage", channel="CMENTION")) == 1


def test_reply_goes_into_the_existing_thread(bot):
    event = mention("CTHREAD", TAJI, ts="1700000002.000200", thread_ts="1700000002.000001")
    assert bot.event(event).status_code == 200
    (reply,) = bot.mock.wait_for("chat.postMessage", channel="CTHREAD")
    assert reply.body["thread_ts"] == "1700000002.000001"


def test_direct_message_is_answered_in_its_thread(bot):
    event = {"type": "message", "channel_type": "im", "channel": "DQA1", "user": "UASKER",
             "text": TAJI, "ts": "1700000003.000300", "event_ts": "1700000003.000300"}
    assert bot.event(event).status_code == 200
    (reply,) = bot.mock.wait_for("chat.postMessage", channel="DQA1")
    assert reply.body["thread_ts"] == "1700000003.000300"
    assert TAJI_SOURCE in blocks_text(reply)


def test_other_events_are_acknowledged_and_ignored(bot):
    event = {"type": "reaction_added", "user": "UASKER", "reaction": "eyes",
             "item": {"type": "message", "channel": "CREACT", "ts": "1700000007.000700"},
             "event_ts": "1700000007.000800"}
    assert bot.event(event).status_code == 200
    bot.control()
    assert bot.mock.find(channel="CREACT") == []


def test_mention_without_a_question_gets_a_hint(bot):
    assert bot.event(mention("CEMPTY", "")).status_code == 200
    (reply,) = bot.mock.wait_for("chat.postMessage", channel="CEMPTY")
    assert "Ask me a question" in reply.body["text"]


def test_bots_itself_and_other_messages_are_ignored(bot):
    ts = "1700000004.000400"
    ignored = {
        "DBOT": {"type": "message", "channel_type": "im", "channel": "DBOT", "bot_id": "BOTHER",
                 "subtype": "bot_message", "text": TAJI, "ts": ts},
        "DSELF": {"type": "message", "channel_type": "im", "channel": "DSELF", "user": BOT_USER,
                  "bot_id": BOT_ID, "text": TAJI, "ts": ts},
        "CBOTMENTION": {**mention("CBOTMENTION", TAJI), "bot_id": "BOTHER"},
        "CPLAIN": {"type": "message", "channel_type": "channel", "channel": "CPLAIN",
                   "user": "UASKER", "text": TAJI, "ts": ts},
        "DEDIT": {"type": "message", "channel_type": "im", "channel": "DEDIT",
                  "subtype": "message_changed", "message": {"text": TAJI}, "ts": ts},
    }
    for event in ignored.values():
        assert bot.event(event).status_code == 200
    bot.control()
    for channel in ignored:
        assert bot.mock.find(channel=channel) == [], channel


def test_forged_stale_and_unsigned_requests_are_rejected(bot):
    old = int(time.time()) - 6 * 60
    forged = bot.event(mention("CFORGED", TAJI), secret="not-the-secret")
    stale = bot.event(mention("CSTALE", TAJI), timestamp=old)
    unsigned = bot.post(event_body(mention("CUNSIGNED", TAJI), "EvUNSIGNED"),
                        {"Content-Type": "application/json"})
    body = event_body(mention("CTAMPER", "something harmless"), "EvTAMPER")
    tampered = bot.post(body.replace("something harmless", TAJI),
                        {"Content-Type": "application/json", **sign(SECRET, body)})
    command = urlencode({"command": "/ask", "text": TAJI, "channel_id": "CFORGEDCMD",
                         "user_id": "UASKER", "response_url": bot.mock.response_url("forged")})
    forged_command = bot.post(command, {"Content-Type": "application/x-www-form-urlencoded",
                                        **sign("wrong", command)})
    payload = json.dumps({
        "type": "block_actions", "user": {"id": "UASKER"}, "channel": {"id": "CFORGEDCLICK"},
        "response_url": bot.mock.response_url("forged-click"),
        "actions": [{"type": "button", "action_id": "share_answer",
                     "value": json.dumps({"q": TAJI, "k": 3})}]})
    click_body = urlencode({"payload": payload})
    forged_click = bot.post(click_body, {"Content-Type": "application/x-www-form-urlencoded",
                                         **sign("wrong", click_body)})
    for response in (forged, stale, unsigned, tampered, forged_command, forged_click):
        assert response.status_code == 401
    bot.control()
    for channel in ("CFORGED", "CSTALE", "CUNSIGNED", "CTAMPER", "CFORGEDCMD", "CFORGEDCLICK"):
        assert bot.mock.find(channel=channel) == [], channel
    assert bot.mock.find("response_url", path="/response/forged") == []
    assert bot.mock.find("response_url", path="/response/forged-click") == []


def test_a_retry_of_a_delivery_never_seen_is_answered_once(bot):
    # The first delivery was lost (say, the bot was restarting): the retry is the only copy.
    event = mention("CLOSTFIRST", TAJI)
    retry = {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"}
    assert bot.event(event, event_id="EvLOST", extra=retry).status_code == 200
    bot.mock.wait_for("chat.postMessage", channel="CLOSTFIRST")
    retry["X-Slack-Retry-Num"] = "3"
    assert bot.event(event, event_id="EvLOST", extra=retry).status_code == 200
    bot.control()
    assert len(bot.mock.find("chat.postMessage", channel="CLOSTFIRST")) == 1


def command(bot, name: str, text: str, channel: str = "CCMD") -> httpx.Response:
    return bot.form({
        "token": "legacy", "team_id": "T0QA", "channel_id": channel, "user_id": "UASKER",
        "command": "/ask", "text": text, "response_url": bot.mock.response_url(name),
        "trigger_id": "trig",
    })


def click(bot, name: str, value: str, channel: str, action_id: str = "share_answer",
          overflow: bool = False) -> httpx.Response:
    action = {"type": "button", "action_id": action_id, "block_id": "b", "value": value,
              "action_ts": "1700000005.000500"}
    if overflow:  # an overflow menu sends the option chosen, not a value
        action = {"type": "overflow", "action_id": action_id, "block_id": "b",
                  "selected_option": {"text": {"type": "plain_text", "text": "x"},
                                      "value": value}, "action_ts": "1700000005.000500"}
    payload = {
        "type": "block_actions", "user": {"id": "UASKER"}, "team": {"id": "T0QA"},
        "api_app_id": "A0QA", "trigger_id": "trig",
        "container": {"type": "message", "channel_id": channel, "is_ephemeral": True},
        "channel": {"id": channel}, "response_url": bot.mock.response_url(name),
        "actions": [action],
    }
    return bot.form({"payload": json.dumps(payload)})


def buttons(call, action_id: str) -> list[dict]:
    return [e for b in call.body["blocks"] if b["type"] == "actions" for e in b["elements"]
            if e["action_id"] == action_id]


def share_value(call) -> str:
    (button,) = buttons(call, "share_answer")
    return button["value"]


def test_slash_command_answers_privately_then_shares_in_channel(bot):
    response = command(bot, "cmd-1", TAJI, channel="CSHARE")
    assert response.status_code == 200
    (private,) = bot.mock.wait_for("response_url", path="/response/cmd-1")
    assert private.body["response_type"] == "ephemeral"
    assert TAJI_SOURCE in blocks_text(private)
    assert bot.mock.find("chat.postMessage", channel="CSHARE") == []  # nothing public yet

    assert click(bot, "act-1", share_value(private), "CSHARE").status_code == 200
    (public,) = bot.mock.wait_for("chat.postMessage", channel="CSHARE")
    assert TAJI_SOURCE in blocks_text(public)
    assert "<@UASKER>" in blocks_text(public)
    assert "thread_ts" not in public.body
    assert "share_answer" not in blocks_text(public)  # no button on the public copy
    bot.mock.wait_for("response_url", path="/response/act-1", delete_original=True)


def test_share_where_the_bot_is_not_a_member_uses_the_response_url(bot):
    bot.mock.failures[("chat.postMessage", "CPRIVATE")] = "not_in_channel"
    command(bot, "cmd-2", TAJI, channel="CPRIVATE")
    (private,) = bot.mock.wait_for("response_url", path="/response/cmd-2")
    click(bot, "act-2", share_value(private), "CPRIVATE")
    (public,) = bot.mock.wait_for("response_url", path="/response/act-2",
                                  response_type="in_channel")
    assert TAJI_SOURCE in blocks_text(public)


def test_slash_command_without_text_shows_usage_at_once(bot):
    response = command(bot, "cmd-empty", "   ")
    assert response.status_code == 200
    assert "Usage: /ask QUESTION" in response.text
    bot.control()
    assert bot.mock.find("response_url", path="/response/cmd-empty") == []


def test_failures_are_logged_without_secrets(bot):
    bot.mock.failures[("chat.postMessage", "CFAIL")] = "channel_not_found"
    bot.event(mention("CFAIL", TAJI))
    deadline = time.monotonic() + 30
    while "channel_not_found" not in bot.log.read_text():
        assert time.monotonic() < deadline, bot.log.read_text()
        time.sleep(0.1)
    log = bot.log.read_text()
    assert "Traceback" in log  # the failure is logged in full ...
    assert BOT_TOKEN not in log and SECRET not in log  # ... but never the secrets
    assert bot.process.poll() is None  # and the bot keeps serving


def test_a_dm_that_mentions_the_bot_is_answered_once(bot):
    # Slack sends such a message twice, as `message` (im) and as `app_mention`.
    ts = "1700000006.000600"
    dm = {"type": "message", "channel_type": "im", "channel": "DBOTH", "user": "UASKER",
          "text": f"<@{BOT_USER}> {TAJI}", "ts": ts, "event_ts": ts}
    assert bot.event(dm).status_code == 200
    assert bot.event(mention("DBOTH", TAJI, ts=ts)).status_code == 200
    bot.mock.wait_for("chat.postMessage", channel="DBOTH")
    bot.control()
    assert len(bot.mock.find("chat.postMessage", channel="DBOTH")) == 1


def test_filters_in_a_question_are_applied(bot):
    question = f"source:{TAJI_SOURCE} {TAJI}"
    assert bot.event(mention("CFILTER", question)).status_code == 200
    (reply,) = bot.mock.wait_for("chat.postMessage", channel="CFILTER")
    sources = re.findall(r"`(\d{3}_[0-9a-f]{16})`", blocks_text(reply))
    assert sources and set(sources) == {TAJI_SOURCE}


def test_a_thread_reply_without_a_mention_is_a_follow_up_with_the_threads_context(bot):
    first = bot.mock.said("CTHREAD", "1700000100.000100", f"<@{BOT_USER}> {TAJI}")
    bot.event({**first, "type": "app_mention"})
    bot.mock.wait_for("chat.postMessage", channel="CTHREAD", thread_ts=first["ts"])
    follow = bot.mock.said("CTHREAD", "1700000100.000200", "And how many were wounded?",
                           thread_ts=first["ts"])
    assert bot.event(follow).status_code == 200
    replies = bot.mock.wait_for("chat.postMessage", count=2, channel="CTHREAD",
                                thread_ts=first["ts"])
    answer = blocks_text(replies[1])
    assert "And how many were wounded?" in answer
    assert "Searched:" in answer and "rockets" in answer and "Taji" in answer
    assert "14 other troops wounded" in answer  # found with the thread's context
    bot.mock.wait_for("conversations.replies", channel="CTHREAD", ts=first["ts"])


def test_a_reply_in_a_thread_the_bot_never_answered_is_left_alone(bot):
    first = bot.mock.said("COTHER", "1700000200.000100", "Lunch at noon?")
    reply = bot.mock.said("COTHER", "1700000200.000200", "How many rockets landed?",
                          thread_ts=first["ts"])
    assert bot.event(reply).status_code == 200
    bot.control()
    assert bot.mock.find("chat.postMessage", channel="COTHER") == []


def test_votes_are_recorded_and_exported_for_qa_eval(bot):
    import json as jsonlib

    assert bot.event(mention("CVOTE", TAJI)).status_code == 200
    (reply,) = bot.mock.wait_for("chat.postMessage", channel="CVOTE")
    up, down = buttons(reply, "vote_answer")
    menus = [b["accessory"] for b in reply.body["blocks"]
             if b.get("accessory", {}).get("action_id") == "vote_finding"]
    assert len(menus) >= 2  # a 👍/👎 menu on each finding
    # 👎 on the whole answer asks which finding was right; the reader picks [2].
    click(bot, "vote-1", down["value"], "CVOTE", action_id="vote_answer")
    (which,) = bot.mock.wait_for("response_url", path="/response/vote-1")
    picks = {b["text"]["text"]: b["value"] for b in buttons(which, "right_finding")}
    assert "None of them" in picks and "[2]" in picks
    click(bot, "vote-2", picks["[2]"], "CVOTE", action_id="right_finding")
    bot.mock.wait_for("response_url", path="/response/vote-2")
    # 👍 on finding [1] from its menu.
    first_up = menus[0]["options"][0]["value"]
    click(bot, "vote-3", first_up, "CVOTE", action_id="vote_finding", overflow=True)
    bot.mock.wait_for("response_url", path="/response/vote-3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    done = subprocess.run([sys.executable, "-m", "cli", "feedback", "export", "--index",
                           str(bot.index)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    exported = [jsonlib.loads(line) for line in done.stdout.splitlines()]
    mine = [e for e in exported if e["question"] == TAJI]
    assert len(mine) == 1 and len(mine[0]["sources"]) == 2 and mine[0]["answers"]
    # ... and qa eval runs the exported file.
    judged = bot.index.parent / "judged.jsonl"
    judged.write_text(done.stdout)
    evaluated = subprocess.run([sys.executable, "-m", "cli", "eval", str(judged), "--json",
                                "--index", str(bot.index)], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr
    assert jsonlib.loads(evaluated.stdout)["answerable"] == len(
        [e for e in exported if e["sources"]])
    listed = subprocess.run([sys.executable, "-m", "cli", "feedback", "list", "--json",
                             "--index", str(bot.index)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    rows = [jsonlib.loads(line) for line in listed.stdout.splitlines()]
    assert {(r["verdict"], r["rank"], r["channel"], r["via"]) for r in rows} >= {
        ("down", None, "CVOTE", "slack"), ("up", 2, "CVOTE", "slack"),
        ("up", 1, "CVOTE", "slack")}


def test_a_scoped_channel_applies_its_filters_and_says_so(bot):
    question = "What did Esper say about Iran?"
    assert bot.event(mention("CSCOPED", question)).status_code == 200
    (reply,) = bot.mock.wait_for("chat.postMessage", channel="CSCOPED")
    text = blocks_text(reply)
    assert "This channel's scope: source voa, 2 findings" in text
    sources = re.findall(r"`(\d{3}_[0-9a-f]{16})`", text)
    assert sources and set(sources) == {"001_ff616514b17d0e93"}
    assert "[3]" not in text  # k = 2
    # A question's own filter wins over the scope's.
    bot.event(mention("CSCOPED", f"source:{TAJI_SOURCE} {TAJI}"))
    replies = bot.mock.wait_for("chat.postMessage", count=2, channel="CSCOPED")
    assert set(re.findall(r"`(\d{3}_[0-9a-f]{16})`", blocks_text(replies[1]))) == {TAJI_SOURCE}
