"""The Slack bot: slack-bolt handlers over one warm ``Service``.

Mentions and direct messages are answered in the question's thread; ``/ask`` answers privately
through the command's ``response_url`` with a "Share in channel" button. Every listener
acknowledges at once and looks the answer up in a lazy listener (a worker thread), so Slack's
3-second deadline never waits for retrieval. Request signatures are checked by bolt (401 for
a missing, wrong or stale one); deliveries Slack repeats are answered once.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from index.errors import QAError, QuestionError

from .app import Busy, Service, TimedOut
from .blocks import MAX_VALUE, SHARE_ACTION, SlackMessage, answer_message, notice

if TYPE_CHECKING:
    from slack_bolt import App, BoltRequest, BoltResponse
    from slack_sdk import WebClient

log = logging.getLogger("qa.slack")

DEFAULT_API_URL = "https://slack.com/api/"
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


def api_base_url(url: str | None) -> str:
    """``SLACK_API_URL`` as slack_sdk wants it (ending in "/")."""
    url = (url or DEFAULT_API_URL).strip()
    return url if url.endswith("/") else url + "/"


def web_client(token: str, api_url: str | None = None) -> WebClient:
    from slack_sdk import WebClient

    return WebClient(token=token, base_url=api_base_url(api_url))


class RedactSecrets(logging.Filter):
    """Replaces the given secrets in log records (message, arguments and traceback)."""

    def __init__(self, secrets: Iterable[str | None]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def redact_logs(secrets: Iterable[str | None]) -> None:
    """Install ``RedactSecrets`` on every handler of the root logger."""
    redactor = RedactSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)


class Bot:
    """The handlers; kept apart from bolt wiring so each reads as what it does."""

    def __init__(self, service: Service, top: int = 3):
        self.service = service
        self.top = top
        self.seen = Seen()

    def message_for(self, question: str, top: int | None = None, **extra: Any) -> SlackMessage:
        """The answer as a Slack message; a user error as one sentence; a failure logged."""
        top = top or self.top
        text, filters = split_filters(question)
        if not text:
            return notice(USAGE)
        try:
            answer = self.service.ask(
                text, k=top, source=filters.get("source"), since=filters.get("since"),
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
        return answer_message(question, answer, top, **extra)

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
        self.reply_in_thread(client, event, question)

    def on_message(self, event: dict[str, Any], client: WebClient, context: Any) -> None:
        if event.get("channel_type") != "im" or event.get("subtype") not in ANSWERED_SUBTYPES:
            return
        if event.get("user") in (None, context.bot_user_id):
            return
        question = question_text(event.get("text") or "", context.bot_user_id)
        self.reply_in_thread(client, event, question)

    def reply_in_thread(self, client: WebClient, event: dict[str, Any], question: str) -> None:
        message = self.message_for(question)
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
        if not question:
            return
        message = self.message_for(question, share_value=share_value(question, self.top))
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
        message = self.message_for(question, top, shared_by=user)
        try:
            client.chat_postMessage(channel=channel, unfurl_links=False, **message.payload())
        except SlackApiError as error:
            if error.response.get("error") not in ("not_in_channel", "channel_not_found"):
                raise
            # The bot is not a member (a private channel, a DM between people): the command's
            # response_url can still post there.
            respond(response_type="in_channel", replace_original=False, **message.payload())
        respond(delete_original=True)


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
) -> App:
    """A bolt ``App`` answering from ``service`` (loaded once, shared by all requests).

    ``signing_secret`` is needed to serve HTTP; Socket Mode does without. ``api_url`` is the
    Slack Web API base URL (default Slack's). Raises SlackSetupError when the token is
    rejected or the API cannot be reached.
    """
    from slack_bolt import App
    from slack_bolt.error import BoltError

    bot = Bot(service, top=top)
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
