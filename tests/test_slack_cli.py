"""The Slack and HTTP commands' setup errors, and the bot's small pure helpers."""

import io
import json
import logging
import socket
import subprocess
import sys

import pytest
from conftest import ROOT
from slack_mock import SlackMock
from typer.testing import CliRunner

from cli import app
from qa.serving import RedactSecrets
from qa.slack import (
    Seen,
    question_text,
    share_value,
    split_filters,
)
from qa.watch_slack import api_base_url

runner = CliRunner()


@pytest.fixture
def no_slack_env(monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "args, env, expected",
    [
        (["slack", "--http"], {"SLACK_BOT_TOKEN": "xoxb-bot-value-1"}, "SLACK_SIGNING_SECRET is not set"),
        (["slack", "--http"], {"SLACK_SIGNING_SECRET": "signing-value-9"}, "SLACK_BOT_TOKEN is not set"),
        (["slack", "--http"], {}, "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not set"),
        (["slack"], {"SLACK_BOT_TOKEN": "xoxb-bot-value-1"}, "SLACK_APP_TOKEN is not set"),
        (["slack"], {"SLACK_APP_TOKEN": "xapp-app-value-1"}, "SLACK_BOT_TOKEN is not set"),
        (["slack"], {"SLACK_APP_TOKEN": "  ", "SLACK_BOT_TOKEN": "xoxb-bot-value-1"},
         "SLACK_APP_TOKEN is not set"),
        (["slack"], {"SLACK_APP_TOKEN": "xoxb-oops-value", "SLACK_BOT_TOKEN": "xoxb-bot-value-1"},
         "SLACK_APP_TOKEN is not an app-level token"),
    ],
)
def test_missing_tokens_are_named_in_one_line(no_slack_env, args, env, expected):
    for name, value in env.items():
        no_slack_env.setenv(name, value)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    for value in env.values():
        if value.strip():
            assert value not in result.stderr.replace(expected, "")


def test_a_rejected_bot_token_is_one_line_without_the_token(no_slack_env):
    mock = SlackMock().start()
    mock.failures[("auth.test", "*")] = "invalid_auth"
    try:
        no_slack_env.setenv("SLACK_BOT_TOKEN", "xoxb-secret-bot-token")
        no_slack_env.setenv("SLACK_SIGNING_SECRET", "secret-signing")
        no_slack_env.setenv("SLACK_API_URL", mock.api_url)
        result = runner.invoke(app, ["slack", "--http", "--port", "0"])
    finally:
        mock.stop()
    assert result.exit_code == 1, result.output
    assert "Slack rejected SLACK_BOT_TOKEN (invalid_auth)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "xoxb-secret-bot-token" not in result.output
    assert [c.method for c in mock.calls] == ["auth.test"]


def test_an_unreachable_slack_api_is_one_line(no_slack_env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    no_slack_env.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    no_slack_env.setenv("SLACK_APP_TOKEN", "xapp-1")
    no_slack_env.setenv("SLACK_API_URL", f"http://127.0.0.1:{port}/api")
    result = runner.invoke(app, ["slack"])
    assert result.exit_code == 1, result.output
    assert f"cannot reach the Slack Web API at http://127.0.0.1:{port}/api/" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_on_a_busy_port_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["serve", "slack"])
def test_server_commands_have_help_with_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"Example: qa {command}" in result.stdout


@pytest.mark.parametrize(
    "text, bot, expected",
    [
        ("<@UQABOT> How many rockets?", "UQABOT", "How many rockets?"),
        ("<@UQABOT|qa>   what   did\nEsper say?", "UQABOT", "what did Esper say?"),
        ("Hey <@UQABOT>, who is McKenzie?", "UQABOT", "Hey , who is McKenzie?"),
        ("<@UQABOT> what about <#C123|general> and <https://x.org/a|this link>?", "UQABOT",
         "what about #general and this link?"),
        ("<@UQABOT> <https://x.org/a> says?", "UQABOT", "https://x.org/a says?"),
        ("<@UQABOT> <!here> AT&amp;T &lt;profits&gt;?", "UQABOT", "AT&T <profits>?"),
        ("<@UOTHER> <@UQABOT> who?", None, "who?"),
        ("<@UQABOT>", "UQABOT", ""),
    ],
)
def test_question_text(text, bot, expected):
    assert question_text(text, bot) == expected


def test_seen_remembers_a_bounded_number_of_keys():
    seen = Seen(size=2)
    assert seen.first("a") and seen.first("b")
    assert not seen.first("a")
    assert seen.first("c")  # evicts b, the least recently seen
    assert seen.first("b") and not seen.first("c")


def test_api_base_url():
    assert api_base_url(None) == "https://slack.com/api/"
    assert api_base_url("http://127.0.0.1:9/api") == "http://127.0.0.1:9/api/"


def test_secrets_are_redacted_from_messages_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(["xoxb-top-secret", "signing-secret", None]))
    logger = logging.getLogger("test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token is %s", "xoxb-top-secret")
        try:
            raise RuntimeError("failed with signing-secret")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "token is [redacted]" in out
    assert "RuntimeError: failed with [redacted]" in out
    assert "xoxb-top-secret" not in out and "signing-secret" not in out


def test_the_cli_imports_no_server_framework_until_a_server_starts():
    code = (
        "import sys, cli; heavy = [m for m in ('slack_bolt', 'slack_sdk', 'fastapi', 'uvicorn',"
        " 'starlette') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    "question, expected",
    [
        ("Who is McKenzie?", ("Who is McKenzie?", {})),
        ("source:voa since:2020-01-01 Who is McKenzie?",
         ("Who is McKenzie?", {"source": "voa", "since": "2020-01-01"})),
        ("Who is McKenzie? Until:2020-02-01", ("Who is McKenzie?", {"until": "2020-02-01"})),
        ("What is the time:zone of Iraq?", ("What is the time:zone of Iraq?", {})),
        ("source:voa", ("", {"source": "voa"})),
        ("As-of:2024-01-05 Who won this week?", ("Who won this week?", {"as-of": "2024-01-05"})),
    ],
)
def test_split_filters(question, expected):
    assert split_filters(question) == expected


@pytest.mark.parametrize("question", ["Who is McKenzie?", '"' * 1999, "é" * 1999, "a\\" * 1500])
def test_share_value_fits_the_button_and_round_trips(question):
    value = share_value(question, 3)
    assert len(value) <= 2000
    decoded = json.loads(value)
    assert question.startswith(decoded["q"]) and decoded["k"] == 3
    if len(question) < 100:
        assert decoded["q"] == question


def test_the_front_end_modules_do_not_import_typer():
    code = "import sys, qa.slack, qa.api, qa.blocks, qa.app; print('typer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_the_app_manifest_has_every_scope_and_event_the_bot_uses():
    import yaml
    from conftest import ROOT

    manifest = yaml.safe_load((ROOT / "slack" / "manifest.yml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # chat.postMessage, mentions, /ask, DMs and conversations.replies in every kind of thread
    assert scopes >= {"chat:write", "app_mentions:read", "commands", "im:history",
                      "channels:history", "groups:history"}
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert events >= {"app_mention", "message.im", "message.channels", "message.groups"}
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/ask"]
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True


@pytest.mark.parametrize("content, message", [
    ('[channels.C1]\nsorce = "voa"\n', "takes only k, since, source, until"),
    ('[channels.C1]\nk = 0\n', "k must be a whole number from 1 to 10"),
    ('[channels.C1]\nsince = "last week"\n', "is not a date"),
    ('[channels.C1]\nsince = 2020\n', "are strings"),
    ('[C1]\nsource = "voa"\n', "[channels.ID] table"),
    ("not toml = = =\n", "is not valid TOML"),
])
def test_bad_channel_scopes_are_one_clear_error(tmp_path, content, message):
    from index.errors import QAError
    from qa.slack import load_scopes

    path = tmp_path / "scopes.toml"
    path.write_text(content)
    with pytest.raises(QAError) as error:
        load_scopes(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_channel_scopes_load_and_describe_what_applies(tmp_path):
    from qa.slack import Scope, load_scopes

    path = tmp_path / "scopes.toml"
    path.write_text('[channels.C1]\nsource = "voa"\nsince = "2020-01"\nk = 2\n')
    scopes = load_scopes(path)
    assert scopes == {"C1": Scope("voa", "2020-01", None, 2)}
    assert scopes["C1"].describe(set()) == \
        "This channel's scope: source voa, since 2020-01, 2 findings"
    assert scopes["C1"].describe({"source"}) == "This channel's scope: since 2020-01, 2 findings"


def test_a_follow_up_gets_the_threads_salient_words_after_its_own():
    from qa.slack import with_context

    stop = frozenset({"the", "of", "on", "a"})
    earlier = ["Which country slapped retaliatory tariffs on US goods?"]
    assert with_context("And Canada?", earlier, stop) == \
        "And Canada? country slapped retaliatory tariffs goods"
    # Nothing to add: the follow-up as asked.
    assert with_context("Which country slapped tariffs?", ["Which country slapped tariffs?"],
                        stop) == "Which country slapped tariffs?"
