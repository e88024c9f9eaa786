"""`qa slack` in Socket Mode (the default) as a real process: it opens the connection with the
app token through SLACK_API_URL, acknowledges envelopes and answers in the thread."""

import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, stop
from slack_mock import SlackMock, SocketModeServer, event_body

pytestmark = pytest.mark.slow

APP_TOKEN = "xapp-1-A0QA-socket-SECRET"
BOT_TOKEN = "xoxb-socket-bot-SECRET"


def test_socket_mode_answers_a_mention_in_its_thread(real_index, tmp_path):
    mock = SlackMock().start()
    sockets = SocketModeServer()
    mock.socket_url = sockets.url
    log = tmp_path / "bot.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "QA_"))}
    env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=mock.api_url,
               HF_HUB_OFFLINE="1", QA_HOME=str(tmp_path))
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "slack", "--index", str(real_index[1])],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while not sockets.connections:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the bot did not connect:\n{log.read_text()}")
            time.sleep(0.1)
        (opened,) = mock.find("apps.connections.open")
        assert opened.authorization == f"Bearer {APP_TOKEN}"

        ts = "1700000010.000100"
        event = {"type": "app_mention", "user": "UASKER", "channel": "CSOCKET", "ts": ts,
                 "event_ts": ts, "text": "<@UQABOT> How many rockets landed at the Taji base?"}
        sockets.send_event(event_body(event, "EvSOCKET"), envelope_id="env-1")
        (reply,) = mock.wait_for("chat.postMessage", channel="CSOCKET")
        assert reply.body["thread_ts"] == ts
        assert "003_a6f98cea0e1f5c95" in str(reply.body["blocks"])
        assert reply.authorization == f"Bearer {BOT_TOKEN}"
        assert "env-1" in sockets.acks

        text = log.read_text()
        assert APP_TOKEN not in text and BOT_TOKEN not in text
    finally:
        stop(process)
        sockets.stop()
        mock.stop()


def test_a_refused_app_token_stops_with_one_error_line(real_index, tmp_path):
    mock = SlackMock().start()
    mock.failures[("apps.connections.open", "*")] = "invalid_auth"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "QA_"))}
    env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=mock.api_url,
               HF_HUB_OFFLINE="1", QA_HOME=str(tmp_path))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "slack", "--index", str(real_index[1])],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120,
        )
    finally:
        mock.stop()
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "Slack refused SLACK_APP_TOKEN (invalid_auth)" in errors[0]
    assert "Traceback" not in done.stderr
    assert APP_TOKEN not in done.stderr and BOT_TOKEN not in done.stderr
