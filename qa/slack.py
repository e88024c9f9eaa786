"""The Slack bot: slack-bolt handlers over one warm ``Service``.

Mentions and direct messages are answered in the question's thread; a reply in a thread the
bot answered in is a follow-up (no mention needed) and is searched with the thread's earlier
questions as context. ``/ask`` answers privately through the command's ``response_url`` with
a "Share in channel" button. Answers carry 👍/👎 buttons whose verdicts go to the feedback
database (``qa.feedback``); a channel's scope (``load_scopes``) sets its default filters.
Every listener acknowledges at once and looks the answer up in a lazy listener (a worker
thread), so Slack's 3-second deadline never waits for retrieval. Request signatures are
checked by bolt (401 for a missing, wrong or stale one); deliveries Slack repeats are
answered once.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.errors import QAError, QuestionError

from .blocks import (
    MAX_VALUE,
    RIGHT_ONE_ACTION,
    SHARE_ACTION,
    VOTE_ACTION,
    VOTE_FINDING_ACTION,
    SlackMessage,
    answer_message,
    fold,
    notice,
    which_was_right,
)
from .feedback import FeedbackError
from .filters import make_filters
from .ranking.profile import QUESTION_WORDS
from .service import Busy, Service, TimedOut
from .watch_slack import REMOVE_WATCH_ACTION, WatchCommands, web_client

if TYPE_CHECKING:
    from slack_bolt import App, BoltRequest, BoltResponse
    from slack_sdk import WebClient

log = logging.getLogger("qa.slack")

EVENTS_PATH = "/slack/events"
USAGE = (
    "Ask me a question, e.g. “How many rockets landed at the Taji base?”; narrow it with "
    "source:NAME, since:YYYY-MM-DD or until:YYYY-MM-DD."
)
FAILED = (
    "Sorry, something went wrong while searching the archive; the details are in the bot's log."
)
# Message subtypes that are people writing something new (edits, joins, bots and the like are not).
ANSWERED_SUBTYPES = {None, "thread_broadcast", "file_share"}


class SlackSetupError(QAError):
    """The bot cannot start: a missing or rejected token, or an unreachable Slack API."""


SLACK_APP_PAGE = "your Slack app's settings (https://api.slack.com/apps)"
SLACK_WHERE = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-…) under OAuth & Permissions",
    "SLACK_APP_TOKEN": "an app-level token (xapp-…) with connections:write under Basic Information",
    "SLACK_SIGNING_SECRET": "the Signing Secret under Basic Information → App Credentials",
}


def settings(http: bool) -> dict[str, str]:
    """The tokens the bot needs from the environment (SLACK_BOT_TOKEN, and SLACK_APP_TOKEN
    for Socket Mode or SLACK_SIGNING_SECRET for HTTP mode); SlackSetupError naming what is
    missing and where to find it."""
    import os

    names = ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET" if http else "SLACK_APP_TOKEN"]
    missing = [name for name in names if not os.environ.get(name, "").strip()]
    if missing:
        where = "; ".join(f"{name}: {SLACK_WHERE[name]}" for name in missing)
        mode = "HTTP mode" if http else "Socket Mode"
        one = len(missing) == 1
        raise SlackSetupError(
            f"{' and '.join(missing)} {'is' if one else 'are'} not set ({mode} needs "
            f"{' and '.join(names)}): export {'it' if one else 'them'} from {SLACK_APP_PAGE} — "
            f"{where}"
        )
    found = {name: os.environ[name].strip() for name in names}
    if not http and not found["SLACK_APP_TOKEN"].startswith("xapp-"):
        raise SlackSetupError(
            "SLACK_APP_TOKEN is not an app-level token (those start with xapp-): "
            f"create one with connections:write under Basic Information in {SLACK_APP_PAGE}"
        )
    return found


class Seen:
    """A bounded, thread-safe memory of keys already handled (oldest forgotten first)."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, key: str) -> bool:
        """True the first time ``key`` is offered, False afterwards."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return False
            self._keys[key] = None
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)
            return True


_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_SPECIAL = re.compile(r"<!([^<>|]+)(?:\|([^<>]*))?>")
_LINK = re.compile(r"<([#@]?)([^<>|]+)(?:\|([^<>]*))?>")


def question_text(text: str, bot_user_id: str | None = None) -> str:
    """The question in a Slack message: the bot's mention removed, links and channel
    references as their labels, Slack's ``&amp;``/``&lt;``/``&gt;`` escapes undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>", " ", text)
    else:
        text = re.sub(rf"^\s*(?:{_MENTION.pattern}\s*)+", " ", text)
    text = _SPECIAL.sub(lambda m: m.group(2) or "", text)
    text = _LINK.sub(
        lambda m: (m.group(1) if m.group(1) == "#" else "") + (m.group(3) or m.group(2)), text
    )
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


_FILTER = re.compile(r"(?<!\S)(source|since|until|as-of):(\S+)", re.IGNORECASE)


def split_filters(question: str) -> tuple[str, dict[str, str]]:
    """``source:NAME``, ``since:DATE`` and ``until:DATE`` words taken out of a question."""
    filters: dict[str, str] = {}

    def take(match: re.Match[str]) -> str:
        filters[match.group(1).lower()] = match.group(2)
        return " "

    rest = _FILTER.sub(take, question)
    return " ".join(rest.split()), filters


@dataclass(frozen=True)
class Scope:
    """A channel's default filters and number of findings (questions may override them)."""

    source: str | None = None
    since: str | None = None
    until: str | None = None
    k: int | None = None

    def describe(self, overridden: set[str]) -> str:
        parts = [f"{key} {value}" for key, value in
                 (("source", self.source), ("since", self.since), ("until", self.until))
                 if value and key not in overridden]
        if self.k:
            parts.append(f"{self.k} findings")
        return "This channel's scope: " + ", ".join(parts) if parts else ""


SCOPE_KEYS = {"source", "since", "until", "k"}


def load_scopes(path: Path) -> dict[str, Scope]:
    """Channel scopes from a TOML file: a ``[channels.ID]`` table per channel (its ID, as in
    the channel's URL: C0123ABCD) with any of ``source``, ``since``, ``until`` (dates as
    ``qa ask`` takes them) and ``k``. QAError, naming the file, for anything else."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise QAError(f"cannot read the channel scopes {path} ({error.strerror}): check "
                      "--scopes or QA_SLACK_SCOPES") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise QAError(f"{path} is not valid TOML ({error}): fix the channel scopes") from None
    channels = data.get("channels")
    if set(data) - {"channels"} or not isinstance(channels, dict):
        raise QAError(f"{path}: put each channel's scope in a [channels.ID] table")
    scopes = {}
    for channel, values in channels.items():
        if not isinstance(values, dict) or set(values) - SCOPE_KEYS:
            raise QAError(f"{path}: [channels.{channel}] takes only "
                          f"{', '.join(sorted(SCOPE_KEYS))}")
        k = values.get("k")
        if k is not None and (not isinstance(k, int) or not 1 <= k <= 10):
            raise QAError(f"{path}: [channels.{channel}] k must be a whole number from 1 to 10")
        texts = {key: values.get(key) for key in ("source", "since", "until")}
        if any(v is not None and not isinstance(v, str) for v in texts.values()):
            raise QAError(f"{path}: [channels.{channel}] source, since and until are strings")
        try:
            make_filters(texts["source"], texts["since"], texts["until"])
        except QuestionError as error:
            raise QAError(f"{path}: [channels.{channel}] {error}") from None
        scopes[str(channel)] = Scope(texts["source"], texts["since"], texts["until"], k)
    return scopes


_WORD = re.compile(r"[^\W_][\w'’-]*")


def with_context(question: str, earlier: list[str], stopwords: frozenset[str]) -> str:
    """A follow-up ("And Canada?") with the salient words of the thread's last two earlier
    questions after it ("… retaliatory tariffs goods"): no stop or question words, none the
    follow-up already has. Retrieval weighs them below the follow-up's own words, which
    come first and (in ``Bot``) twice."""
    skip = stopwords | {w.lower() for w in QUESTION_WORDS}
    have = {w.lower() for w in _WORD.findall(question)}
    keep: list[str] = []
    for text in earlier[-2:]:
        for word in _WORD.findall(text):
            low = word.lower()
            if len(low) < 3 or low in skip or low in have:
                continue
            have.add(low)
            keep.append(word)
    return f"{question} {' '.join(keep)}" if keep else question


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class Bot:
    """The handlers; kept apart from bolt wiring so each reads as what it does."""

    THREAD_TTL = 10.0  # seconds a thread's history is reused

    def __init__(self, service: Service, top: int = 3, feedback: bool = True,
                 scopes: dict[str, Scope] | None = None):
        self.service = service
        self.top = top
        self.seen = Seen()
        self.feedback = feedback
        self.scopes = scopes or {}
        self.watching = WatchCommands(service)  # /ask watch, /ask watches, Remove
        self._threads: OrderedDict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = \
            OrderedDict()
        self._threads_lock = threading.Lock()

    def message_for(self, question: str, top: int | None = None, *, channel: str | None = None,
                    user: str | None = None, earlier: list[str] | None = None,
                    **extra: Any) -> SlackMessage:
        """The answer as a Slack message; a user error as one sentence; a failure logged.
        ``channel`` applies its scope; ``earlier`` (a thread's earlier questions) is the
        context of a follow-up; ``user`` is recorded with the answer for feedback."""
        text, filters = split_filters(question)
        if not text:
            return notice(USAGE)
        notes = []
        scope = self.scopes.get(channel or "")
        if scope is not None:
            described = scope.describe(set(filters))
            for key in ("source", "since", "until"):
                if getattr(scope, key) and key not in filters:
                    filters[key] = getattr(scope, key)
            if described:
                notes.append(described)
        top = top or (scope.k if scope and scope.k else None) or self.top
        search = text
        if earlier:
            search = with_context(text, earlier, self.service.stopwords)
            if search != text:
                notes.insert(0, f"Searched: “{fold(search)}” (a follow-up: words from this "
                                "thread's earlier questions added)")
                # The follow-up's own words count twice: context weighs less.
                search = f"{text} {search}"
        try:
            answer = self.service.ask(
                search, k=top, source=filters.get("source"), since=filters.get("since"),
                until=filters.get("until"), as_of=filters.get("as-of"),
            )
        except (QuestionError, Busy, TimedOut) as error:
            return notice(str(error))
        except QAError as error:  # the index: details (and server paths) stay in the log
            log.error("answering a Slack question failed: %s", error)
            return notice(FAILED)
        except Exception:
            log.exception("answering a Slack question failed")
            return notice(FAILED)
        shown = None
        if self.feedback:
            try:
                shown = self.service.record_shown(
                    replace(answer, question=question), as_of=filters.get("as-of"), user=user,
                    channel=channel, via="slack")
            except Exception:  # an answer without buttons beats no answer
                log.exception("recording a Slack answer for feedback failed")
        return answer_message(question, answer, top, notes=notes, feedback=shown, **extra)

    def thread_questions(self, client: WebClient, event: dict[str, Any],
                         bot_user_id: str | None) -> list[str] | None:
        """The questions asked before ``event`` in its thread, or None when it is not in a
        thread or the bot never answered there (history from ``conversations.replies``,
        reused for ``THREAD_TTL`` seconds)."""
        import time

        from slack_sdk.errors import SlackApiError

        thread, channel = event.get("thread_ts"), event.get("channel")
        if not thread or thread == event.get("ts") or not channel:
            return None
        key = (channel, thread)
        with self._threads_lock:
            cached = self._threads.get(key)
        if cached is None or time.monotonic() - cached[0] > self.THREAD_TTL:
            try:
                reply = client.conversations_replies(channel=channel, ts=thread, limit=100)
            except SlackApiError as error:
                log.warning("cannot read the thread %s in %s (%s): answering without its "
                            "context", thread, channel, error.response.get("error"))
                return None
            messages = list(reply.get("messages") or [])
            with self._threads_lock:
                self._threads[key] = (time.monotonic(), messages)
                while len(self._threads) > 1000:
                    self._threads.popitem(last=False)
        else:
            messages = cached[1]

        def by_bot(message: dict[str, Any]) -> bool:
            return bool(message.get("bot_id")) or message.get("user") == bot_user_id

        if not any(by_bot(m) for m in messages):
            return None
        earlier = [question_text(m.get("text") or "", bot_user_id) for m in messages
                   if not by_bot(m) and float(m.get("ts") or 0) < float(event.get("ts") or 0)]
        return [text for text in earlier if text]

    # --- middleware -----------------------------------------------------------------------

    def skip_repeats(
        self, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        """Acknowledge, and drop, events already seen or written by bots."""
        from slack_bolt import BoltResponse

        body = req.body
        if req.lazy_only or body.get("type") != "event_callback":
            return next()
        event = body.get("event") or {}
        retries = req.headers.get("x-slack-retry-num") or []
        retry = retries[0] if retries else None
        if event.get("bot_id") or event.get("subtype") == "bot_message":
            return BoltResponse(status=200, body="")
        keys = [f"event:{body.get('event_id')}"] if body.get("event_id") else []
        if event.get("channel") and event.get("ts"):
            # A DM that mentions the bot arrives as both `message` and `app_mention`.
            keys.append(f"message:{event['channel']}:{event['ts']}")
        fresh = [self.seen.first(key) for key in keys]
        if not all(fresh):
            log.info("ignored a repeated delivery of event %s (retry %s)",
                     body.get("event_id"), retry or "none")
            return BoltResponse(status=200, body="")
        if retry:
            log.info("answering retry %s of event %s: the first delivery never arrived here",
                     retry, body.get("event_id"))
        return next()

    # --- listeners ------------------------------------------------------------------------

    def on_mention(self, event: dict[str, Any], client: WebClient, context: Any) -> None:
        question = question_text(event.get("text") or "", context.bot_user_id)
        earlier = self.thread_questions(client, event, context.bot_user_id)
        self.reply_in_thread(client, event, question, earlier)

    def on_message(self, event: dict[str, Any], client: WebClient, context: Any) -> None:
        if event.get("subtype") not in ANSWERED_SUBTYPES:
            return
        if event.get("user") in (None, context.bot_user_id):
            return
        text = event.get("text") or ""
        if event.get("channel_type") != "im":
            # In a channel: only a reply in a thread the bot answered in, without a mention
            # (a mention is answered as an app_mention).
            if context.bot_user_id and f"<@{context.bot_user_id}" in text:
                return
            earlier = self.thread_questions(client, event, context.bot_user_id)
            if earlier is None:
                return
        else:
            earlier = self.thread_questions(client, event, context.bot_user_id)
        self.reply_in_thread(client, event, question_text(text, context.bot_user_id), earlier)

    def reply_in_thread(self, client: WebClient, event: dict[str, Any], question: str,
                        earlier: list[str] | None = None) -> None:
        message = self.message_for(question, channel=event.get("channel"),
                                   user=event.get("user"), earlier=earlier)
        client.chat_postMessage(
            channel=event["channel"],
            thread_ts=event.get("thread_ts") or event["ts"],
            unfurl_links=False,
            unfurl_media=False,
            **message.payload(),
        )

    def ack_command(self, ack: Callable[..., Any], command: dict[str, Any]) -> None:
        if question_text(command.get("text") or ""):
            ack()
        else:
            ack(text=f"Usage: {command.get('command') or '/ask'} QUESTION. {USAGE}")

    def on_command(self, command: dict[str, Any], respond: Callable[..., Any]) -> None:
        question = question_text(command.get("text") or "")
        if not question or self.watching.on_command(question, command, respond):
            return
        message = self.message_for(question, share_value=share_value(question, self.top),
                                   channel=command.get("channel_id"),
                                   user=command.get("user_id"))
        respond(response_type="ephemeral", **message.payload())

    def on_share(
        self, body: dict[str, Any], action: dict[str, Any], client: WebClient,
        respond: Callable[..., Any],
    ) -> None:
        from slack_sdk.errors import SlackApiError

        try:
            value = json.loads(action.get("value") or "")
            question, top = str(value["q"]), min(max(int(value.get("k", self.top)), 1), 20)
        except (ValueError, KeyError, TypeError):
            respond(response_type="ephemeral", replace_original=False,
                    **notice("That button is broken; ask again with /ask.").payload())
            return
        user = (body.get("user") or {}).get("id")
        channel = str((body.get("channel") or {}).get("id")
                      or (body.get("container") or {}).get("channel_id"))
        message = self.message_for(question, top, shared_by=user, channel=channel, user=user)
        try:
            client.chat_postMessage(channel=channel, unfurl_links=False, **message.payload())
        except SlackApiError as error:
            if error.response.get("error") not in ("not_in_channel", "channel_not_found"):
                raise
            # The bot is not a member (a private channel, a DM between people): the command's
            # response_url can still post there.
            respond(response_type="in_channel", replace_original=False, **message.payload())
        respond(delete_original=True)


    def on_vote(self, body: dict[str, Any], action: dict[str, Any],
                respond: Callable[..., Any]) -> None:
        """A 👍/👎 on an answer or a finding (or, after a 👎, the finding that would have
        been right): recorded; a 👎 on the whole answer asks which finding was right."""
        value = action.get("value") or (action.get("selected_option") or {}).get("value")
        try:
            vote = json.loads(value or "")
            answer, verdict, rank = int(vote["a"]), str(vote["v"]), vote.get("r")
        except (ValueError, KeyError, TypeError):
            respond(response_type="ephemeral", replace_original=False,
                    **notice("That button is broken; ask again.").payload())
            return
        if not self.feedback:
            return
        user = (body.get("user") or {}).get("id")
        try:
            if verdict != "none":  # "none of them": the 👎 before it says it all
                self.service.judge(answer, verdict, rank=rank, user=user)
        except FeedbackError as error:
            respond(response_type="ephemeral", replace_original=False,
                    **notice(str(error)).payload())
            return
        if action.get("action_id") == VOTE_ACTION and verdict == "down":
            ranks = [f["rank"] for f in self.service.findings(answer)]
            message = which_was_right(answer, ranks)
        else:
            message = notice("Thanks, recorded: it helps us measure the answers.")
        respond(response_type="ephemeral", replace_original=False, **message.payload())


def share_value(question: str, top: int) -> str:
    """The Share button's value: the question and how many findings, within Slack's limit
    (a very long question is shortened, as the button cannot carry it whole)."""
    keep = len(question)
    while True:
        value = json.dumps({"q": question[:keep], "k": top}, ensure_ascii=False)
        if len(value) <= MAX_VALUE:
            return value
        keep -= max(1, len(value) - MAX_VALUE)


def _rejected(reason: str) -> SlackSetupError:
    return SlackSetupError(
        f"Slack rejected SLACK_BOT_TOKEN ({reason}): copy the Bot User OAuth Token (xoxb-…) "
        "from your app's OAuth & Permissions page"
    )


@contextmanager
def _setup_errors(client: WebClient) -> Iterator[None]:
    try:
        yield
    except OSError as error:  # URLError, connection refused, DNS
        raise SlackSetupError(
            f"cannot reach the Slack Web API at {client.base_url} "
            f"({getattr(error, 'reason', error)}): check the network or SLACK_API_URL"
        ) from None


def verify_token(bot_token: str, api_url: str | None = None) -> dict[str, Any]:
    """``auth.test`` for ``bot_token``: the bot's identity, or SlackSetupError saying why not."""
    from slack_sdk.errors import SlackApiError

    client = web_client(bot_token, api_url)
    with _setup_errors(client):
        try:
            return dict(client.auth_test().data)  # type: ignore[arg-type]
        except SlackApiError as error:
            raise _rejected(str(error.response.get("error"))) from None


def _ack(ack: Callable[..., Any]) -> None:
    ack()


def _logged(listener: Callable[..., None]) -> Callable[..., None]:
    """Bolt logs a failing lazy listener in one line; keep the traceback (secrets redacted)."""

    @functools.wraps(listener)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            listener(*args, **kwargs)
        except Exception:
            log.exception("the Slack listener %s failed", listener.__name__)

    return run


def create_app(
    service: Service,
    *,
    bot_token: str,
    signing_secret: str | None = None,
    api_url: str | None = None,
    top: int = 3,
    token_verification: bool = True,
    feedback: bool = True,
    scopes: dict[str, Scope] | None = None,
) -> App:
    """A bolt ``App`` answering from ``service`` (loaded once, shared by all requests).

    ``signing_secret`` is needed to serve HTTP; Socket Mode does without. ``api_url`` is the
    Slack Web API base URL (default Slack's). ``feedback``: answers carry 👍/👎 buttons and
    the service records them and the verdicts; ``scopes`` maps channel IDs to their scope. Raises
    SlackSetupError when the token is rejected or the API cannot be reached.
    """
    from slack_bolt import App
    from slack_bolt.error import BoltError

    bot = Bot(service, top=top, feedback=feedback, scopes=scopes)
    client = web_client(bot_token, api_url)
    # Bolt also reads SLACK_BOT_TOKEN itself and warns that the client's token wins: it is
    # the same token, so the warning is noise.
    bolt_log = logging.getLogger("slack_bolt.App")
    same_token = _DropMessage("`token` will be unused")
    bolt_log.addFilter(same_token)
    with _setup_errors(client):
        try:
            app = App(
                signing_secret=signing_secret or "",
                client=client,
                token_verification_enabled=token_verification,
                request_verification_enabled=True,
                name="qa",
            )
        except BoltError as error:
            reason = re.search(r"'error': '([^']+)'", str(error))
            raise _rejected(reason.group(1) if reason else "auth.test failed") from None
        finally:
            bolt_log.removeFilter(same_token)
    app.middleware(bot.skip_repeats)
    app.event("app_mention")(ack=_ack, lazy=[_logged(bot.on_mention)])
    app.event("message")(ack=_ack, lazy=[_logged(bot.on_message)])
    app.command("/ask")(ack=bot.ack_command, lazy=[_logged(bot.on_command)])
    app.action(SHARE_ACTION)(ack=_ack, lazy=[_logged(bot.on_share)])
    app.action(REMOVE_WATCH_ACTION)(ack=_ack, lazy=[_logged(bot.watching.on_remove)])
    for vote in (VOTE_ACTION, VOTE_FINDING_ACTION, RIGHT_ONE_ACTION):
        app.action(vote)(ack=_ack, lazy=[_logged(bot.on_vote)])
    # Other subscribed events get a 200 too: a 404 would make Slack retry them, and after
    # enough failures switch the app's event subscriptions off.
    app.event(re.compile(".*"))(_ack)

    @app.error
    def log_error(error: Exception) -> None:
        log.error("a Slack listener failed", exc_info=error)

    return app


MAX_BODY = 1024 * 1024  # Slack's payloads are a few kB; larger is not Slack


def create_http_app(
    app: App,
    health: Callable[[], dict[str, Any]] | None = None,
    path: str = EVENTS_PATH,
    signing_secret: str | None = None,
    max_body: int = MAX_BODY,
) -> Any:
    """An ASGI app serving ``app`` at ``path`` (events, commands, interactivity) and
    ``GET /health``. Before bolt sees a request, the body is read only up to ``max_body``
    (413 past it) and its Slack signature is checked with ``signing_secret`` (401 and nothing
    logged when missing, wrong or stale); bolt's dispatch then runs in a worker thread."""
    from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
    from slack_sdk.signature import SignatureVerifier
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def events(request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body:
            return JSONResponse({"error": "request body too large"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return JSONResponse({"error": "request body too large"}, status_code=413)
        if verifier is not None and not _signed(verifier, bytes(body), request.headers):
            return JSONResponse({"error": "invalid request signature"}, status_code=401)
        response = await run_in_threadpool(app.dispatch, to_bolt_request(request, bytes(body)))
        return to_starlette_response(response)

    async def healthcheck(request: Request) -> Response:
        # On the event loop, never behind questions.
        return JSONResponse(health() if health else {"status": "ok"})

    return Starlette(routes=[
        Route(path, events, methods=["POST"]),
        Route("/health", healthcheck, methods=["GET"]),
    ])


def _signed(verifier: Any, body: bytes, headers: Any) -> bool:
    """Whether Slack signed ``body``: a numeric timestamp within five minutes and the
    matching HMAC; any malformed header is simply unsigned."""
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not timestamp.isdigit() or not signature:
        return False
    try:
        return bool(verifier.is_valid(body=body, timestamp=timestamp, signature=signature))
    except (ValueError, TypeError):
        return False


def run_socket_mode(app: App, app_token: str) -> None:
    """Connect to Slack over Socket Mode and serve until interrupted (the client reconnects
    by itself when the connection drops). SlackSetupError when Slack refuses the app token."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    handler = SocketModeHandler(app, app_token)
    with _setup_errors(app.client):
        try:
            handler.connect()
        except SlackApiError as error:
            raise SlackSetupError(
                f"Slack refused SLACK_APP_TOKEN ({error.response.get('error')}): turn Socket Mode "
                "on and create an app-level token (xapp-…) with connections:write under Basic "
                "Information"
            ) from None
    log.info("connected to Slack over Socket Mode")
    try:
        threading.Event().wait()
    finally:
        handler.close()
