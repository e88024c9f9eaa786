"""One face for servers: ``qa serve`` (the HTTP API and search page) and ``qa slack`` start and
stop the same way, here.

A socket is bound before anything slow, so a busy port fails at once; binding beyond
loopback needs a token; log lines are timestamped on stderr with every secret replaced by
``[redacted]``; the index is opened (built first if need be) and served by a ``Service``;
the socket listens only once the service can answer, so neither a client nor a TCP health
probe mistakes a loading server for a ready one; an ASGI app over the service runs on it
(uvicorn), and the service is closed however the server stops.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.errors import QAError

from . import slack
from .engine import Engine
from .service import Service
from .watch import Runner
from .watch_slack import destinations

Say = Callable[[str], None]
OpenEngine = Callable[[], Engine]
# Questions each answering process answers at once: onnxruntime, FAISS and numpy release
# the GIL, so a second thread overlaps their parts; the Python parts take turns.
THREADS = 2


def cores() -> int:
    """The cores this process may run on (the default number of answering processes)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Listen:
    """Where a server listens."""

    host: str = "127.0.0.1"
    port: int = 8000


@dataclass(frozen=True)
class Load:
    """How a server's Service answers: ``processes`` answering processes (1: this one),
    ``threads`` questions each at once, at most ``queue`` more waiting, each question
    within ``timeout`` seconds."""

    processes: int = 1
    threads: int = THREADS
    queue: int = 16
    timeout: float = 30.0

    def service(self, engine: Engine) -> Service:
        return Service(engine, workers=self.threads, processes=self.processes,
                       queue=self.queue, timeout=self.timeout)


@dataclass(frozen=True)
class ApiOptions:
    """``max_body``: the largest request body; ``show_paths``: absolute server paths in
    responses; ``insecure_public``: serve beyond loopback without ``QA_API_TOKEN``."""

    max_body: int = 64 * 1024
    show_paths: bool = False
    insecure_public: bool = False


def require(extra: str, *modules: str) -> None:
    """QAError naming the pip extra to install when any of ``modules`` is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise QAError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
            f"run `pip install 'newsqa[{extra}]'`"
        )


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback."""
    import ipaddress

    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


def api_token(host: str, insecure_public: bool = False) -> str | None:
    """``QA_API_TOKEN`` (None when unset). Binding beyond loopback without one is refused
    unless ``insecure_public``."""
    token = os.environ.get("QA_API_TOKEN", "").strip() or None
    if not token and not insecure_public and not is_loopback(host):
        raise QAError(
            f"--host {host} accepts other machines: set QA_API_TOKEN (clients then send "
            "Authorization: Bearer TOKEN), or pass --insecure-public to serve without one"
        )
    return token


def bind(listen: Listen) -> socket.socket:
    """A socket bound before anything slow, so a busy port fails at once. It listens only
    once the server can answer (``serve``)."""
    try:
        infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        reason = error.strerror or str(error)
        raise QAError(f"cannot listen on {listen.host}:{listen.port} ({reason}): pick another "
                      "--port or --host") from None
    sock.set_inheritable(True)
    return sock


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


def redact_logs(secrets: Iterable[str | None]) -> None:
    """Install ``RedactSecrets`` on every handler of the root logger."""
    redactor = RedactSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)


def server_logging(secrets: Iterable[str | None] = ()) -> None:
    """Timestamped log lines on stderr, with any secret replaced by [redacted]."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # which SIMD build it picked
    redact_logs(secrets)


def serve(asgi: Any, sock: socket.socket, service: Service, ready: Say, message: str,
          runner: Runner | None = None) -> None:
    """Listen on ``sock`` (the service can answer now), say ``message`` and run ``asgi``
    on it with uvicorn until stopped; then close the standing questions' ``runner`` and the
    service."""
    import uvicorn

    try:
        sock.listen(128)  # ready: accept connections from now on
        ready(message.format(port=sock.getsockname()[1]))
        # log_config=None: uvicorn's loggers go through the root handler (and its redaction).
        config = uvicorn.Config(asgi, log_config=None, timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if runner is not None:
            runner.close()
        service.close()


def watching(service: Service, slack_token: str | None = None,
             slack_api_url: str | None = None) -> Runner:
    """The standing questions checked after each switch to a new version and their
    findings told (``qa.watch.Runner``): webhooks, and Slack with a bot token."""
    token = slack_token or os.environ.get("SLACK_BOT_TOKEN", "").strip() or None
    url = slack_api_url or os.environ.get("SLACK_API_URL") or None
    return Runner(service, destinations(token, url, service.feedback if token else None)).start()


def serve_api(open_engine: OpenEngine, listen: Listen, load: Load,
              options: ApiOptions | None = None, say: Say = print, warn: Say = print) -> None:
    """``qa serve``: the HTTP API and search page (``qa.api``) over the index
    ``open_engine`` opens, until stopped."""
    options = options or ApiOptions()
    require("serve", "fastapi", "uvicorn", "fastapi_offline")
    from .api import create_api  # FastAPI (the [serve] extra) is imported at its top

    token = api_token(listen.host, options.insecure_public)
    sock = bind(listen)
    service = load.service(open_engine())
    api = create_api(service, token=token, max_body=options.max_body,
                     show_paths=options.show_paths)
    runner = watching(service)
    server_logging([token])
    if options.insecure_public and not token:
        warn(f"serving {listen.host} without a token: anyone who can reach it may ask")
    answering = f"; {load.processes} answering processes" if load.processes > 1 else ""
    serve(api, sock, service, say,
          f"serving the API at http://{listen.host}:{{port}} (search page at /, OpenAPI docs "
          f"at /docs{answering}); Ctrl-C stops", runner)


@dataclass(frozen=True)
class BotOptions:
    """``top``: findings per answer; ``scopes``: the channel scopes file, if any."""

    top: int = 3
    scopes: Path | None = None


def serve_slack(open_engine: OpenEngine, http: Listen | None, load: Load,
                options: BotOptions | None = None, say: Say = print) -> None:
    """``qa slack``: the Slack bot over the index ``open_engine`` opens, in Socket Mode, or
    serving ``/slack/events`` at ``http``, until stopped. The token is checked with Slack
    before anything slow."""
    options = options or BotOptions()
    require("slack", "slack_bolt", "slack_sdk", *(("starlette", "uvicorn") if http else ()))
    settings = slack.settings(http is not None)
    scopes = slack.load_scopes(options.scopes) if options.scopes else None
    api_url = os.environ.get("SLACK_API_URL") or None
    identity = slack.verify_token(settings["SLACK_BOT_TOKEN"], api_url)
    sock = bind(http) if http else None
    server_logging(settings.values())
    service = load.service(open_engine())
    bolt = slack.create_app(service, bot_token=settings["SLACK_BOT_TOKEN"],
                            signing_secret=settings.get("SLACK_SIGNING_SECRET"),
                            api_url=api_url, top=options.top, scopes=scopes)
    runner = watching(service, settings["SLACK_BOT_TOKEN"], api_url)
    say(f"signed in to Slack as @{identity.get('user')} in {identity.get('team')}")
    if http is None or sock is None:
        say("connecting to Slack over Socket Mode; Ctrl-C stops")
        try:
            slack.run_socket_mode(bolt, settings["SLACK_APP_TOKEN"])
        finally:
            runner.close()
            service.close()
        return
    asgi = slack.create_http_app(bolt, health=service.health,
                                 signing_secret=settings["SLACK_SIGNING_SECRET"])
    serve(asgi, sock, service, say, f"Slack bot listening at http://{http.host}:{{port}}"
          f"{slack.EVENTS_PATH}; Ctrl-C stops", runner)
