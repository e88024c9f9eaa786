"""`qa`: ask a news archive questions and get cited passages back."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from qa.engine import Engine
    from qa.results import Answer

app = typer.Typer(
    no_args_is_help=True,
    help="Ask a news archive questions; get passages with citations you can check.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
index_app = typer.Typer(no_args_is_help=True, help="Build, update and inspect the index.")
app.add_typer(index_app, name="index")

PROJECT_SEEDS = Path(__file__).resolve().parent / "seeds"

DocsOption = Annotated[
    Path | None,
    typer.Option(
        "--docs", envvar="QA_DOCS", help="Folder of article files (default: the project's seeds/)."
    ),
]
IndexOption = Annotated[
    Path | None,
    typer.Option(
        "--index", envvar="QA_INDEX", help="Index directory (default: a cache folder per docs)."
    ),
]


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def warn(message: str) -> None:
    _stderr().print(f"[yellow]warning:[/] {message}", markup=True, highlight=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and exit code 1."""
    from index.errors import QAError

    try:
        yield
    except QAError as error:
        _stderr().print(f"[red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        raise typer.Exit(130) from None


def cache_root() -> Path:
    base = os.environ.get("QA_HOME") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "newsqa" if base else Path.home() / ".cache" / "newsqa"


def default_docs() -> Path:
    return PROJECT_SEEDS if PROJECT_SEEDS.is_dir() else Path.cwd() / "seeds"


def resolve_paths(docs: Path | None, index: Path | None) -> tuple[Path, Path, bool]:
    """(docs, index, docs_given). Without --index the index lives in the cache, one per docs."""
    given = docs is not None
    docs = (docs or default_docs()).expanduser()
    if index is None:
        resolved = str(docs.resolve())
        tag = hashlib.sha256(resolved.encode()).hexdigest()[:10]
        index = cache_root() / "indexes" / f"{docs.resolve().name}-{tag}"
    return docs, index.expanduser(), given


@contextmanager
def progress_bars() -> Iterator[Any]:
    """A progress callback drawing one bar per stage on stderr."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bars = Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_stderr(),
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield update


def _build(docs: Path, index: Path, update: bool = False) -> Any:
    from index.pipeline import build_index, update_index

    with progress_bars() as progress:
        run = update_index if update else build_index
        return run(docs, index, progress=progress, warn=warn)


@index_app.command("build")
def index_build(docs: DocsOption = None, index: IndexOption = None) -> None:
    """Build the index from scratch over every .txt/.md article in DOCS.

    Example: qa index build --docs seeds/
    """
    with user_errors():
        docs, index, _ = resolve_paths(docs, index)
        report = _build(docs, index)
        _stderr().print(
            f"indexed {report.documents} documents, {report.passages} passages "
            f"({report.embedded} embedded) into {index}"
        )


@index_app.command("update")
def index_update(docs: DocsOption = None, index: IndexOption = None) -> None:
    """Bring the index in line with DOCS, embedding only new or changed passages.

    Example: qa index update --docs seeds/
    """
    with user_errors():
        docs, index, given = resolve_paths(docs, index)
        docs = _indexed_docs(docs, index, given)
        report = _build(docs, index, update=True)
        out = _stderr()
        for label, names in (("added", report.added), ("changed", report.changed),
                             ("removed", report.removed)):
            out.print(f"{label}: {len(names)} file(s)" + (f" ({', '.join(names[:10])})"
                                                          if names else ""))
        out.print(
            f"embedded {report.embedded} new passage(s); index has {report.documents} documents,"
            f" {report.passages} passages"
        )


def _indexed_docs(docs: Path, index: Path, given: bool) -> Path:
    """Without --docs, an existing index answers for the folder it was built from."""
    if given:
        return docs
    from index.errors import QAError
    from index.store import read_manifest

    try:
        return Path(read_manifest(index).get("docs_dir") or docs)
    except QAError:
        return docs


@index_app.command("status")
def index_status(
    docs: DocsOption = None,
    index: IndexOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what the index holds and whether the docs changed since it was built.

    Example: qa index status
    """
    from index.pipeline import docs_changes
    from index.store import read_manifest

    with user_errors():
        docs, index, given = resolve_paths(docs, index)
        manifest = read_manifest(index)
        docs = _indexed_docs(docs, index, given)
        changes = docs_changes(docs, manifest)
        status = {
            "index": str(index),
            "docs": str(docs),
            "documents": manifest["counts"]["documents"],
            "passages": manifest["counts"]["passages"],
            "model": manifest["model"]["name"],
            "vector_index": manifest.get("vector_index", {}).get("kind"),
            "built": manifest.get("created"),
            "updated": manifest.get("updated"),
            "up_to_date": not changes,
            "added": changes.added,
            "changed": changes.changed,
            "removed": changes.removed,
        }
        if json_out:
            print(json.dumps(status))
            return
        out = _stdout()
        for key in ("index", "docs", "documents", "passages", "model", "vector_index", "built",
                    "updated"):
            out.print(f"{key + ':':14} {status[key]}")
        if changes:
            out.print(
                f"{'docs:':14} changed since the index was built — {len(changes.added)} added, "
                f"{len(changes.changed)} changed, {len(changes.removed)} removed: "
                "run `qa index update`"
            )
        else:
            out.print(f"{'docs:':14} unchanged since the index was built")


def open_engine(docs: Path | None, index: Path | None, refresh: bool = False) -> Engine:
    """Load the index for DOCS, building it first when there is none."""
    from index.errors import IndexMissing
    from index.pipeline import docs_changes
    from qa.engine import Engine

    docs, index, given = resolve_paths(docs, index)
    try:
        engine = Engine(index)
    except IndexMissing:
        from index.pipeline import check_docs

        check_docs(docs)
        _stderr().print(f"no index yet for {docs}: building it at {index}", soft_wrap=True)
        _build(docs, index)
        return Engine(index)
    docs = _indexed_docs(docs, index, given)
    changes = docs_changes(docs, engine.store.manifest)
    if changes and refresh:
        engine.close()
        _build(docs, index, update=True)
        return Engine(index)
    if changes:
        warn(
            f"docs in {docs} changed since the index was built ({len(changes.added)} added,"
            f" {len(changes.changed)} changed, {len(changes.removed)} removed): answering from"
            " the index as it is; run `qa index update` or pass --refresh"
        )
    return engine


def render(answer: Answer, console: Console) -> None:
    """A readable terminal answer: rank, score, passage with the answer marked, citation."""
    from rich.text import Text

    for message in answer.warnings:
        warn(message)
    if not answer.answered:
        console.print("[bold]No confident answer in the archive.[/]")
        if answer.passages:
            console.print("[dim]Closest passages:[/]")
    for passage in answer.passages:
        body = Text()
        text, start = passage.text, passage.citation.start
        if passage.highlight:
            a, b = passage.highlight.start - start, passage.highlight.end - start
            # Without colour (a pipe, NO_COLOR) the answering sentence is marked with » «.
            plain = console.no_color or not console.is_terminal
            body.append(text[:a])
            body.append(f"»{text[a:b]}«" if plain else text[a:b], style="bold yellow")
            body.append(text[b:])
        else:
            body.append(text)
        console.print(Text(f"[{passage.rank}] score {passage.score:.3f}", style="bold cyan"))
        console.print(body)
        console.print(Text(citation_line(passage.rank, passage.citation), style="dim"))
        for other in passage.also:
            console.print(Text("    also reported by " + citation_line(None, other), style="dim"))
        console.print()


def citation_line(rank: int | None, c: Any) -> str:
    date = c.date or "undated"
    if c.date and getattr(c, "date_inferred", False):
        date += " (inferred)"
    head = f"[{rank}] " if rank is not None else ""
    return (
        f"{head}{c.title or c.source} — {c.publisher or 'unknown outlet'}, {date} "
        f"({c.source}, chars {c.start}–{c.end})"
    )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help='The question, or "-" to read one per line.')],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="Passages to show.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per question.")] = False,
    docs: DocsOption = None,
    index: IndexOption = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Update the index first if the docs changed.")
    ] = False,
) -> None:
    """Answer QUESTION with the best passages from the archive, each with its citation.

    Example: qa ask "How many rockets landed at the Taji base?" -k 3
    """
    from index.errors import QuestionError

    with user_errors():
        if question != "-":
            from qa.engine import clean_question

            clean_question(question)  # fail fast, before loading anything
        engine = open_engine(docs, index, refresh)
        questions = sys.stdin if question == "-" else [question]
        out = _stdout()
        for line in questions:
            if question == "-" and not line.strip():
                continue
            try:
                answer = engine.ask(line.rstrip("\n"), k=k)
            except QuestionError as error:
                if question != "-":
                    raise
                warn(str(error))
                continue
            if json_out:
                for message in answer.warnings:
                    warn(message)
                print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
            else:
                if question == "-":
                    out.print(f"[bold]Q: {answer.question}[/]")
                render(answer, out)


@app.command()
def chat(
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="Passages to show.")] = 5,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """An interactive session: the index is loaded once, then ask away.

    Commands: :k N (passages per answer), :json (toggle JSON), :help, :quit.
    Example: qa chat --docs seeds/
    """
    with user_errors():
        engine = open_engine(docs, index)
        run_chat(engine, k)


def run_chat(engine: Engine, k: int) -> None:
    from index.errors import QuestionError

    out = _stdout()
    as_json = False
    read = _line_reader()
    out.print("[dim]Ask a question. :k N sets passages, :json toggles JSON, :quit leaves.[/]")
    while True:
        try:
            line = read()
        except (EOFError, KeyboardInterrupt):
            break
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            command, _, arg = line[1:].partition(" ")
            if command in ("q", "quit", "exit"):
                break
            if command == "k" and arg.strip().isdigit() and 1 <= int(arg) <= 100:
                k = int(arg)
                out.print(f"[dim]showing {k} passages[/]")
            elif command == "json":
                as_json = not as_json
                out.print(f"[dim]JSON output {'on' if as_json else 'off'}[/]")
            else:
                out.print("[dim]:k N (1–100) passages, :json toggle JSON, :quit to leave[/]")
            continue
        try:
            answer = engine.ask(line, k=k)
        except QuestionError as error:
            warn(str(error))
            continue
        if as_json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
        else:
            render(answer, out)


def _line_reader() -> Any:
    """prompt_toolkit (line editing, history) on a terminal; plain lines otherwise."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        cache_root().mkdir(parents=True, exist_ok=True)
        session: PromptSession[str] = PromptSession(
            history=FileHistory(str(cache_root() / "chat_history"))
        )
        return lambda: session.prompt("? ")

    def read() -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read


HostOption = Annotated[
    str,
    typer.Option(
        "--host", help="Interface to listen on: 127.0.0.1 is this machine only, 0.0.0.0 everyone."
    ),
]


def _listen(host: str, port: int) -> Any:
    """A listening socket, bound before anything slow so a busy port fails at once."""
    import socket

    from index.errors import QAError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        reason = error.strerror or str(error)
        raise QAError(
            f"cannot listen on {host}:{port} ({reason}): pick another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


def _require(extra: str, *modules: str) -> None:
    import importlib.util

    from index.errors import QAError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise QAError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
            f"run `pip install 'newsqa[{extra}]'`"
        )


def _server_logging(secrets: tuple[str | None, ...] = ()) -> None:
    """Timestamped log lines on stderr, with any secret replaced by [redacted]."""
    import logging

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # which SIMD build it picked
    if secrets:
        from qa.slack import redact_logs

        redact_logs(secrets)


def _uvicorn(asgi: Any, sock: Any) -> None:
    import uvicorn

    # log_config=None: uvicorn's loggers go through the root handler (and its redaction).
    config = uvicorn.Config(asgi, log_config=None, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


@app.command()
def serve(
    host: HostOption = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
    ] = 8000,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """Serve the HTTP API: POST /ask (the `ask --json` object), GET /health, docs at /docs.

    The index and model are loaded once; requests share them.
    Example: qa serve --port 8000
    """
    with user_errors():
        _require("serve", "fastapi", "uvicorn")
        sock = _listen(host, port)
        engine = open_engine(docs, index)
        from qa.api import create_api
        from qa.service import Service

        api = create_api(Service(engine))
        _server_logging()
        bound = sock.getsockname()[1]
        _stderr().print(
            f"serving the API at http://{host}:{bound} (OpenAPI docs at /docs); Ctrl-C stops",
            soft_wrap=True,
        )
        _uvicorn(api, sock)


SLACK_APP_PAGE = "your Slack app's settings (https://api.slack.com/apps)"
SLACK_WHERE = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-…) under OAuth & Permissions",
    "SLACK_APP_TOKEN": "an app-level token (xapp-…) with connections:write under Basic Information",
    "SLACK_SIGNING_SECRET": "the Signing Secret under Basic Information → App Credentials",
}


def _slack_settings(http: bool) -> dict[str, str]:
    from qa.slack import SlackSetupError

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
    settings = {name: os.environ[name].strip() for name in names}
    if not http and not settings["SLACK_APP_TOKEN"].startswith("xapp-"):
        raise SlackSetupError(
            "SLACK_APP_TOKEN is not an app-level token (those start with xapp-): "
            f"create one with connections:write under Basic Information in {SLACK_APP_PAGE}"
        )
    return settings


@app.command()
def slack(
    http: Annotated[
        bool, typer.Option("--http", help="Serve /slack/events over HTTP instead of Socket Mode.")
    ] = False,
    host: HostOption = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port for --http (0: any free port).")
    ] = 3000,
    top: Annotated[
        int, typer.Option("-k", "--top", min=1, max=10, help="Findings per answer.")
    ] = 3,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """Run the Slack bot: answers @mentions and DMs in their thread, /ask privately.

    Socket Mode (the default) needs SLACK_APP_TOKEN and SLACK_BOT_TOKEN.
    --http serves /slack/events (events, /ask, interactivity); it needs SLACK_SIGNING_SECRET.
    SLACK_API_URL overrides the Slack Web API base URL (a proxy, a test server).
    Example: qa slack --http --port 3000
    """
    with user_errors():
        _require("slack", "slack_bolt", "slack_sdk", *(("starlette", "uvicorn") if http else ()))
        settings = _slack_settings(http)
        if not http and (host, port) != ("127.0.0.1", 3000):
            warn("--host and --port only apply with --http; Socket Mode connects out to Slack")
        from qa.service import Service
        from qa.slack import create_app, create_http_app, run_socket_mode, verify_token

        api_url = os.environ.get("SLACK_API_URL") or None
        identity = verify_token(settings["SLACK_BOT_TOKEN"], api_url)  # before any slow loading
        sock = _listen(host, port) if http else None
        _server_logging(tuple(settings.values()))
        engine = open_engine(docs, index)

        service = Service(engine)
        bolt = create_app(
            service,
            bot_token=settings["SLACK_BOT_TOKEN"],
            signing_secret=settings.get("SLACK_SIGNING_SECRET"),
            api_url=api_url,
            top=top,
        )
        _stderr().print(
            f"signed in to Slack as @{identity.get('user')} in {identity.get('team')}",
            soft_wrap=True,
        )
        if sock is None:
            _stderr().print("connecting to Slack over Socket Mode; Ctrl-C stops")
            run_socket_mode(bolt, settings["SLACK_APP_TOKEN"])
            return
        bound = sock.getsockname()[1]
        _stderr().print(
            f"Slack bot listening at http://{host}:{bound}/slack/events; Ctrl-C stops",
            soft_wrap=True,
        )
        _uvicorn(create_http_app(bolt, health=service.health), sock)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
