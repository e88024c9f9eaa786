"""Standing questions in Slack: ``/ask watch QUESTION`` adds one for the channel, ``/ask
watches`` lists the channel's with a Remove button each, and a new finding is posted with
``chat.postMessage`` as the answer to a mention is (Block Kit, 👍/👎 recorded in
``qa feedback``) under a line naming the standing question it answers.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from index.errors import QAError, QuestionError

from .blocks import SlackMessage, answer_message, escape, fit, fold, notice
from .watch import (
    DEFAULT_BACKOFF,
    Backoff,
    Destination,
    Finding,
    Undelivered,
    Watch,
    WatchError,
    Watches,
    Webhook,
)

if TYPE_CHECKING:
    from .feedback import Feedback

log = logging.getLogger("qa.slack")

REMOVE_WATCH_ACTION = "remove_watch"
_COMMAND = re.compile(r"^\s*watch(es)?(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)
# Slack errors worth trying again: its side, or too many calls.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
              "request_timeout"}
WATCH_USAGE = ("Usage: /ask watch QUESTION adds a standing question for this channel (a new "
               "article answering it is posted here); /ask watches lists them.")


def watch_command(text: str) -> tuple[str, str] | None:
    """("add", question) for ``watch QUESTION``, ("list", "") for ``watches``; None when the
    text is a question."""
    match = _COMMAND.match(text)
    if match is None:
        return None
    if match.group(1):
        return ("list", "") if not (match.group(2) or "").strip() else None
    return "add", (match.group(2) or "").strip()


def finding_message(finding: Finding, feedback: int | None = None) -> SlackMessage:
    """The finding as a mention's answer is shown, under the standing question it answers."""
    line = (f"A new article answers this channel's standing question #{finding.watch.id} "
            "(/ask watches lists them).")
    message = answer_message(finding.watch.question, finding.answer, 1, notes=[line],
                             feedback=feedback)
    text = fit(f"New finding for “{fold(finding.watch.question)}”: {message.text}", 3000)
    return SlackMessage(text, message.blocks)


def watches_message(watches: list[Watch], counts: dict[int, int]) -> SlackMessage:
    """A channel's standing questions, each with its Remove button."""
    from slack_sdk.models.blocks import ButtonElement, MarkdownTextObject, SectionBlock

    if not watches:
        return notice("This channel has no standing questions. " + WATCH_USAGE)
    blocks = []
    for watch in watches[:45]:
        found = counts.get(watch.id, 0)
        limits = ", ".join(f"{k} {v}" for k, v in (("source", watch.source),
                                                    ("since", watch.since)) if v)
        text = (f"*#{watch.id}* {escape(fold(watch.question))}"
                + (f" ({escape(limits)})" if limits else "")
                + f"\n_{found} finding{'s' if found != 1 else ''} so far_")
        button = ButtonElement(text="Remove", action_id=REMOVE_WATCH_ACTION,
                               value=json.dumps({"w": watch.id}))
        blocks.append(SectionBlock(text=MarkdownTextObject(text=fit(text)),
                                   accessory=button).to_dict())
    more = len(watches) - 45
    if more > 0:
        blocks.append(notice(f"… and {more} more (qa watch list shows them all)").blocks[0])
    return SlackMessage(f"This channel's standing questions: {len(watches)}", blocks)


class SlackPoster(Destination):
    """Posts findings to their channels with ``chat.postMessage``; a Slack error on its side
    (5xx, ratelimited) or a connection failure is tried again (``Backoff``)."""

    kind = "slack"

    def __init__(self, client: Any, feedback: Feedback | None = None,
                 backoff: Backoff = DEFAULT_BACKOFF):
        self.client, self.feedback, self.backoff = client, feedback, backoff

    def send(self, finding: Finding, target: str) -> None:
        shown = None
        if self.feedback is not None:
            try:
                shown = self.feedback.shown(finding.answer, user=None, channel=target,
                                            via="watch", version=finding.version)
            except QAError as error:  # a finding without buttons beats none
                log.warning("recording a finding for feedback failed: %s", error)
        payload = finding_message(finding, shown).payload()
        self.backoff.run(lambda: self._post(target, payload))

    def _post(self, channel: str, payload: dict[str, Any]) -> None:
        from slack_sdk.errors import SlackApiError

        try:
            self.client.chat_postMessage(channel=channel, unfurl_links=False,
                                         unfurl_media=False, **payload)
        except SlackApiError as error:
            reason = str(error.response.get("error") or error.response.status_code)
            status = int(error.response.status_code or 0)
            raise Undelivered(f"Slack said {reason}",
                              status >= 500 or status == 429 or reason in _TRANSIENT) from None
        except OSError as error:
            raise Undelivered(f"cannot reach Slack ({error})", True) from None


class WatchCommands:
    """``/ask watch``, ``/ask watches`` and the Remove button over the served index's
    watches (their database opened on first use)."""

    def __init__(self, service: Any, watches: Watches | None = None):
        self.service, self._watches = service, watches
        self._lock = threading.Lock()

    @property
    def watches(self) -> Watches:
        with self._lock:
            if self._watches is None:
                self._watches = Watches.of_index(self.service.index_dir)
            return self._watches

    def on_command(self, text: str, command: dict[str, Any],
                   respond: Callable[..., Any]) -> bool:
        """Handle ``text`` if it is a watch command (True), else leave it (False)."""
        parsed = watch_command(text)
        if parsed is None:
            return False
        channel, user = command.get("channel_id"), command.get("user_id")
        if parsed[0] == "list":
            message = watches_message(self.watches.all(slack=channel),
                                      self.watches.counts())
        else:
            message = self.add(parsed[1], channel, user)
        respond(response_type="ephemeral", **message.payload())
        return True

    def add(self, question: str, channel: str | None, user: str | None) -> SlackMessage:
        if not question:
            return notice(WATCH_USAGE)
        if not channel:
            return notice("Standing questions are added in a channel: try /ask watch there.")
        try:
            with self.service.leased() as engine:
                watch, answer = self.watches.add(question, slack=channel, user=user,
                                                 via="slack", engine=engine)
        except (QuestionError, WatchError) as error:
            return notice(str(error).replace("--slack ", "").replace("--", ""))
        now = ("The archive already answers it; only new findings will be posted."
               if answer is not None and answer.answered else
               "The archive does not answer it yet.")
        return notice(f"Standing question #{watch.id} added: “{watch.question}”. When a new "
                      f"article answers it, it is posted here. {now}")

    def on_remove(self, body: dict[str, Any], action: dict[str, Any],
                  respond: Callable[..., Any]) -> None:
        channel = (body.get("channel") or {}).get("id") or \
            (body.get("container") or {}).get("channel_id")
        try:
            watch = int(json.loads(action.get("value") or "")["w"])
        except (ValueError, KeyError, TypeError):
            respond(response_type="ephemeral", replace_original=False,
                    **notice("That button is broken; list them again with /ask watches.")
                    .payload())
            return
        try:
            removed = self.watches.remove(watch, slack=channel)
        except WatchError as error:
            respond(response_type="ephemeral", replace_original=False,
                    **notice(str(error)).payload())
            return
        message = watches_message(self.watches.all(slack=channel), self.watches.counts())
        respond(response_type="ephemeral", replace_original=True, **message.payload())
        respond(response_type="ephemeral", replace_original=False,
                **notice(f"Removed standing question #{removed.id}: “{removed.question}”.")
                .payload())


DEFAULT_API_URL = "https://slack.com/api/"


def api_base_url(url: str | None) -> str:
    """``SLACK_API_URL`` as slack_sdk wants it (ending in "/")."""
    url = (url or DEFAULT_API_URL).strip()
    return url if url.endswith("/") else url + "/"


def web_client(token: str, api_url: str | None = None) -> Any:
    """A slack_sdk ``WebClient`` for the Web API at ``api_url`` (default: Slack's)."""
    from slack_sdk import WebClient

    return WebClient(token=token, base_url=api_base_url(api_url))


def destinations(slack_token: str | None = None, slack_api_url: str | None = None,
                 feedback: Any = None) -> list[Destination]:
    """Where this process can tell: webhooks always, Slack with a bot token (without one,
    Slack's deliveries wait for a process that has it, such as ``qa slack``)."""
    found: list[Destination] = [Webhook()]
    if slack_token:
        found.append(SlackPoster(web_client(slack_token, slack_api_url), feedback))
    return found
