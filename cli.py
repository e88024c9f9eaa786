"""`qa`: ask a news archive questions and get cited passages back."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from qa.app import Builder, Paths
    from qa.engine import Engine
    from qa.results import Answer, Citation

app = typer.Typer(
    no_args_is_help=True,
    help="Ask a news archive questions; get passages with citations you can check.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
index_app = typer.Typer(no_args_is_help=True, help="Build, update and inspect the index.")
app.add_typer(index_app, name="index")
feedback_app = typer.Typer(
    no_args_is_help=True,
    help="Readers' 👍/👎 verdicts on answers (Slack, the web page, POST /feedback), kept "
    "beside the index; export them as qa eval questions.",
)
app.add_typer(feedback_app, name="feedback")
watch_app = typer.Typer(
    no_args_is_help=True,
    help="Standing questions: after every index update they are asked over the new articles, "
    "and a new finding is posted to Slack, a webhook or printed.",
)
app.add_typer(watch_app, name="watch")

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

    class Stdout(Console):
        def on_broken_pipe(self) -> None:
            _quiet_exit()

    return Stdout(highlight=False)


def _quiet_exit() -> None:
    """The reader went away (`qa ask … | head -1`): it has what it wanted, so exit 0. stdout
    points at /dev/null first, so the final flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(0)


# Control characters a terminal would act on (ESC sequences, OSC titles, carriage returns,
# bidi overrides) and that article text or file names may hold: shown as escapes, never sent.
# Newlines and tabs are layout. JSON output keeps the text exact; only terminals get this.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """``text`` with terminal control characters shown as ``\\xNN``/``\\uNNNN`` escapes."""
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], text)


def _line(label: str, style: str, message: str) -> Any:
    from rich.text import Text

    return Text.assemble((label, style), " ", safe(message))


def warn(message: str) -> None:
    _stderr().print(_line("warning:", "yellow", message), soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and exit code 1."""
    from index.errors import QAError

    try:
        yield
    except QAError as error:
        _stderr().print(_line("error:", "red", str(error)), soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # print() to a closed pipe (JSON output)
        _quiet_exit()


def _paths(docs: Path | None, index: Path | None) -> Paths:
    from qa.app import Paths

    return Paths.resolve(docs, index)


RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray", metavar="ADDRESS",
        help="Chunk and embed on a Ray cluster: its address (HEAD:6379), or 'auto' for the one "
        "`ray start` made here. Needs pip install 'newsqa\\[ray]' on every node.",
    ),
]
ShardsOption = Annotated[
    Path | None,
    typer.Option(
        "--shards", metavar="DIR",
        help="With --ray: the nodes write what they embed to DIR as Parquet shards and this "
        "machine assembles the index from them. DIR must be the same folder on every node (a "
        "shared file system). A build that stops keeps its shards, and the next one with the "
        "same DIR embeds only what they lack; a finished build removes them.",
    ),
]
RetrainOption = Annotated[
    bool,
    typer.Option(
        "--retrain",
        help="Train the vector index afresh (when `qa index status` says its training is "
        "stale); the vectors of unchanged passages are kept, nothing is re-embedded.",
    ),
]
FieldOption = Annotated[
    list[str] | None,
    typer.Option(
        "--field", help="An export's column for an article field, e.g. --field text=story_body "
        "(fields: text, title, url, date, author, publisher, id, language; dots reach nested "
        "keys: publisher=source.name). Repeatable; kept for later updates."
    ),
]
FIELD_NAMES = ("text", "title", "url", "date", "author", "publisher", "id", "language")


def _fields(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    fields = {}
    for value in values:
        name, _, column = value.partition("=")
        if name.strip() not in FIELD_NAMES or not column.strip():
            raise typer.BadParameter(
                f"--field {value!r}: use NAME=COLUMN with NAME one of {', '.join(FIELD_NAMES)}"
            )
        fields[name.strip()] = column.strip()
    return fields


def _builder(ctx: typer.Context, progress: Any = None) -> Builder:
    """How this command builds an index. ``ctx.obj`` may pass an ``embedder`` and a
    ``count_tokens`` in (tests run the CLI over a small fake model that way)."""
    from qa.app import Builder

    deps = ctx.obj if isinstance(ctx.obj, dict) else {}
    return Builder(
        embedder=deps.get("embedder"),
        count_tokens=deps.get("count_tokens"),
        progress=progress or (lambda stage, done, total: None),
        warn=warn,
        notice=lambda message: _stderr().print(safe(message), soft_wrap=True, markup=False),
    )


@contextmanager
def progress_bars() -> Iterator[Any]:
    """A progress callback drawing one bar per stage on stderr, from its first report on."""
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
        if not tasks:
            bars.start()
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bars.stop()


@index_app.command("build")
def index_build(
    ctx: typer.Context, docs: DocsOption = None, index: IndexOption = None,
    field: FieldOption = None, ray: RayOption = None, retrain: RetrainOption = False,
    shards: ShardsOption = None,
) -> None:
    """Build the index from scratch over every article in DOCS (a folder, or one file).

    Reads .txt/.md, HTML pages, JSON Lines/CSV exports, RSS/Atom feeds and WARC crawls (and
    their .gz); the same article met twice (same canonical URL, near-identical text) is
    indexed once.

    The old index keeps answering until the new one is complete, even if the build is killed.

    Unusable files are skipped with a warning. Fails if another qa is writing the same index.

    With --retrain only the vector index's training is redone (when `qa index status` says it
    is stale): the vectors of unchanged passages are kept.

    Example: qa index build --docs seeds/   (on a Ray cluster: --ray HEAD:6379, and
    --shards /mnt/shared/qa-shards to keep what the nodes embed if the build stops)
    """
    with user_errors(), progress_bars() as progress:
        paths = _paths(docs, index)
        builder = _builder(ctx, progress)
        builder.fields = _fields(field)
        builder.ray = ray
        builder.shards = shards
        builder.retrain = retrain
        report = builder.run(paths.docs, paths.index)
    _report_nodes(report)
    _stderr().print(
        f"indexed {report.documents} documents, {report.passages} passages "
        f"({report.embedded} embedded) into {paths.index}"
        + (f"; skipped {len(report.skipped)} unusable file(s)" if report.skipped else ""),
        soft_wrap=True,
    )


def _report_nodes(report: Any) -> None:
    """Which Ray nodes embedded how many passages."""
    if report.nodes:
        counts = ", ".join(f"node {node[:8]}: {n}" for node, n in sorted(report.nodes.items()))
        _stderr().print(f"embedded on {len(report.nodes)} Ray node(s): {counts}",
                        soft_wrap=True, markup=False)
    if report.from_shards:
        _stderr().print(f"{report.from_shards} passage(s) came from the shards of a build that "
                        "stopped", soft_wrap=True, markup=False)


@index_app.command("update")
def index_update(
    ctx: typer.Context, docs: DocsOption = None, index: IndexOption = None,
    field: FieldOption = None, ray: RayOption = None, retrain: RetrainOption = False,
    shards: ShardsOption = None,
) -> None:
    """Bring the index in line with DOCS, embedding only new or changed passages.

    Builds the index when there is none. An index built with another model cannot be updated.

    Example: qa index update --docs seeds/
    """
    with user_errors(), progress_bars() as progress:
        paths = _paths(docs, index)
        builder = _builder(ctx, progress)
        builder.fields = _fields(field)
        builder.ray = ray
        builder.shards = shards
        builder.retrain = retrain
        report = builder.run(paths.indexed_docs(), paths.index, update=True)
    _report_nodes(report)
    out = _stderr()
    for label, names in (("added", report.added), ("changed", report.changed),
                         ("removed", report.removed), ("skipped", report.skipped)):
        if label == "skipped" and not names:
            continue
        more = f", … {len(names) - 10} more" if len(names) > 10 else ""
        listed = f" ({', '.join(names[:10])}{more})" if names else ""
        out.print(safe(f"{label}: {len(names)} file(s){listed}"), soft_wrap=True, markup=False)
    out.print(
        f"embedded {report.embedded} new passage(s); index has {report.documents} documents,"
        f" {report.passages} passages"
    )
    _after_update(ctx, docs, index)


@index_app.command("status")
def index_status(
    ctx: typer.Context,
    docs: DocsOption = None,
    index: IndexOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Skip hashing the index files (sizes still checked).")
    ] = False,
) -> None:
    """Show what the index holds and whether the docs changed since it was built.

    Every file is checked against the digest recorded when it was written (--quick: sizes).
    Example: qa index status
    """
    from rich.table import Table
    from rich.text import Text

    from qa.app import status as index_state

    with user_errors():
        state = index_state(_paths(docs, index), embedder=_builder(ctx).embedder,
                            verify=not quick)
    if json_out:
        print(json.dumps(state))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in ("index", "docs", "documents", "passages", "model", "vector_index", "built",
                "updated"):
        table.add_row(key, Text(safe(str(state[key]))))
    changed = state["added"] or state["changed"] or state["removed"]
    if changed:
        table.add_row(
            "articles",
            f"changed since the index was built — {len(state['added'])} added, "
            f"{len(state['changed'])} changed, {len(state['removed'])} removed: "
            "run `qa index update`",
        )
    else:
        table.add_row("articles", "unchanged since the index was built")
    reader = state["reader"]
    if reader["index"] != reader["this_qa"]:
        table.add_row("reading", f"this qa reads articles differently (reader {reader['this_qa']}"
                      f", the index's {reader['index'] or 'older'}): run `qa index update` to "
                      "re-read them; passages that come out the same keep their vectors")
    training = state["vector_training"]
    if training and training["stale"]:
        table.add_row("vector index", f"stale: trained on {training['trained_on']:,} passages, "
                      f"the archive has {state['passages']:,}: run `qa index build --retrain`")
    delta = state["delta"]
    if delta:
        table.add_row("since the last build", (
            f"updates added {delta['articles']:,} article(s) ({delta['passages']:,} passages) "
            f"and removed {delta['removed_articles']:,}, kept beside the last build; the update "
            f"that takes these past {delta['bound']:,} passages rebuilds whole"))
    if state["being_written"]:
        table.add_row("writer", "another qa process is building or updating this index now")
    if state["duplicates"]:
        counts = ", ".join(f"{n} {why}" for why, n in sorted(state["duplicates"].items()))
        table.add_row("duplicates", Text(f"dropped as already indexed: {counts}"))
    if state["bad_records"]:
        first = state["bad_record_examples"][0]
        table.add_row("bad input", Text(safe(f"{state['bad_records']} problems inside files "
                                             "(records skipped, breaks, guessed charsets), "
                                             f"e.g. {first}")))
    if state["skipped"]:
        table.add_row("skipped", Text(safe(f"{len(state['skipped'])} unusable file(s) not "
                                           "indexed: " + ", ".join(state["skipped"][:10]))))
    _stdout().print(table)


def open_engine(
    ctx: typer.Context, docs: Path | None, index: Path | None, refresh: bool = False,
    ranking: Any = None,
) -> Engine:
    """The engine for DOCS (built first, with progress bars, when there is no index)."""
    from qa.app import open_engine as open_archive

    with progress_bars() as progress:
        return open_archive(_paths(docs, index), refresh=refresh,
                            builder=_builder(ctx, progress), ranking=ranking)


def render(answer: Answer, console: Console, show_weak: bool = False) -> None:
    """A readable terminal answer: rank, score, passage with the answer marked, citation.

    A refused answer prints only "No confident answer in the archive" and why, unless
    ``show_weak``."""
    from rich.text import Text

    for message in answer.warnings:
        warn(message)
    if not answer.answered:
        why = f": {answer.reason}" if answer.reason else ""
        console.print(Text.assemble(("No confident answer in the archive", "bold"),
                                    safe(why) + "."))
        if not show_weak:
            if answer.passages:
                console.print("[dim](--show-weak, or :weak in chat, shows the closest passages)[/]")
            console.print()
            return
        if answer.passages:
            console.print("[dim]Closest passages:[/]")
    for passage in answer.passages:
        body = Text()
        text, start = passage.text, passage.citation.start
        if passage.highlight:
            a, b = passage.highlight.start - start, passage.highlight.end - start
            # Without colour (a pipe, NO_COLOR) the answering sentence is marked with » «.
            plain = console.no_color or not console.is_terminal
            body.append(safe(text[:a]))
            body.append(safe(f"»{text[a:b]}«" if plain else text[a:b]), style="bold yellow")
            body.append(safe(text[b:]))
        else:
            body.append(safe(text))
        console.print(Text(f"[{passage.rank}] score {passage.score:.3f}", style="bold cyan"))
        _print_wrapped(console, body)
        _print_wrapped(console, _cited(citation_line(passage.rank, passage.citation),
                                       passage.citation))
        for other in passage.also:
            _print_wrapped(console, _cited("    also reported by " + citation_line(None, other),
                                           other))
        console.print()


def _print_wrapped(console: Console, text: Any) -> None:
    """``text`` wrapped at word boundaries to the console's width, without the space rich
    leaves at the end of each wrapped line (it would be copied along with the passage)."""
    for line in text.wrap(console, console.width):
        line.rstrip()
        console.print(line, soft_wrap=True)


def _cited(line: str, c: Citation) -> Any:
    """A citation line; on terminals that support it, a link to the article's URL."""
    from rich.style import Style
    from rich.text import Text

    http = bool(c.url and re.match(r"https?://\S+$", c.url))
    return Text(line, style=Style(dim=True, link=c.url if http else None))


def citation_line(rank: int | None, c: Citation) -> str:
    from qa.cite import citation_text

    where = f"{c.url} " if c.url else ""
    return safe(f"{citation_text(rank, c)} ({where}{c.source}, chars {c.start}–{c.end})")


SourceOption = Annotated[
    str | None,
    typer.Option("--source", help="Only articles whose file name or outlet contains this."),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only articles dated on/after (YYYY-MM-DD).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Only articles dated on/before (YYYY-MM-DD).")
]
AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", help="Answer as of this date (YYYY[-MM[-DD]]): later articles are "
                 "not used and recent ones near it are favoured (default: today)."),
]


ShowWeakOption = Annotated[
    bool,
    typer.Option(
        "--show-weak", help="Show the closest passages even when there is no confident answer."
    ),
]


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help='The question, or "-" to read one per line.')],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="Passages to show.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per question.")] = False,
    docs: DocsOption = None,
    index: IndexOption = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Update the index first if the docs changed "
                     "(or this qa reads them differently).")
    ] = False,
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    show_weak: ShowWeakOption = False,
    as_of: AsOfOption = None,
) -> None:
    """Answer QUESTION with the best passages from the archive, each with its citation.

    The same fact reported by several outlets is one result ("also reported by …"). When the
    archive does not answer, says "No confident answer in the archive" (JSON: "answered":
    false and no passages unless --show-weak).

    Example: qa ask "How many rockets landed at the Taji base?" -k 3 --since 2020-01-01
    """
    from index.errors import QuestionError
    from qa.filters import make_filters, today

    with user_errors():
        filters = make_filters(source, since, until, as_of or today())
        if question != "-":
            from qa.engine import clean_question

            clean_question(question)  # fail fast, before loading anything
        engine = open_engine(ctx, docs, index, refresh)
        questions = _stdin_text() if question == "-" else [question]
        out = _stdout()
        for line in questions:
            if question == "-" and not line.strip():
                continue
            try:
                answer = engine.ask(line.rstrip("\n"), k=k, filters=filters)
            except QuestionError as error:
                if question != "-":
                    raise
                warn(str(error))
                continue
            if json_out:
                for message in answer.warnings:
                    warn(message)
                print(json.dumps(answer.to_dict(show_weak), ensure_ascii=False), flush=True)
            else:
                if question == "-":
                    out.print(_line("Q:", "bold", answer.question))
                render(answer, out, show_weak)


@app.command()
def fetch(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="Page URLs (with --feed: feed URLs).")],
    docs: Annotated[
        Path | None,
        typer.Option("--docs", envvar="QA_DOCS", help="Folder to save the pages in (required)."),
    ] = None,
    index: IndexOption = None,
    feed: Annotated[
        bool, typer.Option("--feed", help="The URLs are RSS/Atom feeds: fetch their items.")
    ] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1,
        help="Seconds per URL in all: robots.txt, redirects and the whole download.")] = 20,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1024, help="Largest page accepted.")
    ] = 10 * 1024 * 1024,
) -> None:
    """Download pages into DOCS as .html (with a .fetch.json of where they came from), then
    update the index. robots.txt is honoured; a URL that fails is reported, the rest kept.

    Example: qa fetch https://example.com/news/story.html --docs archive/
    """
    from index.errors import QAError
    from index.fetch import Fetcher
    from index.fetch import fetch as download

    with user_errors():
        if docs is None:
            raise QAError("pass --docs DIR: the folder to save the pages in (and index)")
        results = download(urls, docs, feed=feed, warn=warn,
                           fetcher=Fetcher(timeout=timeout, max_bytes=max_bytes))
        saved = [r for r in results if r.path]
        _stderr().print(safe(f"fetched {len(saved)} of {len(results)} page(s) into {docs}"),
                        soft_wrap=True, markup=False)
        with progress_bars() as progress:
            paths = _paths(docs, index)
            report = _builder(ctx, progress).run(paths.docs, paths.index, update=True)
        _stderr().print(f"embedded {report.embedded} new passage(s); index has "
                        f"{report.documents} documents, {report.passages} passages")
    _after_update(ctx, docs, index)


@app.command()
def show(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The article's source name, as citations give.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    span: Annotated[
        str | None, typer.Option("--span", help="START:END characters to mark (a citation's).")
    ] = None,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """Print an article as citations refer to it: metadata and the text whose offsets they
    give, so text[start:end] can be checked (the stored article text for HTML, exports, feeds
    and web archives; the file's text for .txt/.md).

    Example: qa show 003_a6f98cea0e1f5c95 --span 842:1643
    """
    from index.errors import QAError
    from qa.app import show as find

    with user_errors():
        article, warnings = find(_paths(docs, index).index, source,
                                 embedder=_builder(ctx).embedder)
        for message in warnings:
            warn(message)
        text = article["text"]
        start, end = _span(span) if span else (0, len(text))
        if end > len(text):
            raise QAError(f"--span {span} is outside the article ({len(text):,} characters)")
        if json_out:
            if span:
                article["span"] = {"start": start, "end": end, "text": text[start:end]}
            print(json.dumps(article, ensure_ascii=False))
            return
        out = _stdout()
        for key in ("title", "publisher", "date", "author", "language", "url", "source", "path"):
            if article[key]:
                out.print(_line(f"{key + ':':11}", "bold", str(article[key])), soft_wrap=True)
        out.print()
        if span:
            from rich.text import Text

            plain = out.no_color or not out.is_terminal
            body = Text(safe(text[:start]))
            body.append(safe(f"»{text[start:end]}«" if plain else text[start:end]),
                        style="bold yellow")
            body.append(safe(text[end:]))
            _print_wrapped(out, body)
        else:
            _print_wrapped(out, _line("", "", text))


def _span(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", value)
    if not match or int(match[1]) > int(match[2]):
        raise typer.BadParameter("--span takes START:END, e.g. --span 842:1643")
    return int(match[1]), int(match[2])


def _ks(value: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1 or ks[-1] > 100:
        raise typer.BadParameter("use a comma-separated list of ranks from 1 to 100, e.g. 1,5,10")
    return ks


def _judged(docs: Path | None, index: Path | None, since: str | None) -> list[Any]:
    from qa.feedback import Feedback, feedback_path
    from qa.filters import parse_date

    paths = _paths(docs, index)
    if since:
        since = parse_date(since, "--since")
    if not feedback_path(paths.index).exists():
        return []
    db = Feedback.of_index(paths.index)
    try:
        return list(db.judged(since))
    finally:
        db.close()


@feedback_app.command("list")
def feedback_list(
    since: Annotated[str | None, typer.Option("--since", help="Only verdicts on or after "
                                              "this date (YYYY[-MM[-DD]]).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON Lines, one verdict a line.")]
    = False,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """List the verdicts readers gave, newest last: when, 👍/👎, on which finding, the
    question, who and where.

    Example: qa feedback list --since 2026-11-01
    """
    with user_errors():
        judged = _judged(docs, index, since)
        if json_out:
            for item in judged:
                print(json.dumps(item.to_dict(), ensure_ascii=False))
            return
        if not judged:
            _stdout().print("No feedback recorded yet.")
            return
        from rich.table import Table

        table = Table("time", "verdict", "finding", "question", "by", "via")
        for item in judged:
            finding = f"[{item.rank}] {item.source}" if item.rank else "whole answer"
            table.add_row(item.time.replace("T", " ")[:16], "👍" if item.verdict == "up"
                          else "👎", safe(finding), safe(item.question),
                          safe(item.user or ""), safe(item.via or ""))
        _stdout().print(table)


@feedback_app.command("export")
def feedback_export(
    since: Annotated[str | None, typer.Option("--since", help="Only verdicts on or after "
                                              "this date (YYYY[-MM[-DD]]).")] = None,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """Write the judged questions as qa eval JSON Lines on stdout: findings marked right are
    gold sources, their highlighted sentences the answers; "none was right" makes a question
    to refuse. Real use becomes a regression set.

    Example: qa feedback export > judged.jsonl && qa eval judged.jsonl
    """
    from qa.feedback import to_eval

    with user_errors():
        for entry in to_eval(_judged(docs, index, since)):
            print(json.dumps(entry, ensure_ascii=False))


@app.command("eval")
def eval_command(
    ctx: typer.Context,
    questions: Annotated[
        Path, typer.Argument(help="JSONL file: {id, question, answers, sources} per line.")
    ],
    docs: Annotated[
        Path | None,
        typer.Option(
            "--docs", envvar="QA_DOCS",
            help="Article folder (default: docs/ next to QUESTIONS if present, else seeds/).",
        ),
    ] = None,
    index: IndexOption = None,
    ks: Annotated[str, typer.Option("-k", help="Ranks to score, comma-separated.")] = "1,5,10",
    stage: Annotated[
        str,
        typer.Option(
            "--stage",
            help="Ordering to measure: dense, bm25, fused (the score blend in use), rrf "
            "(reciprocal-rank fusion, for comparison) or final (everything).",
        ),
    ] = "final",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    details: Annotated[
        bool, typer.Option("--details", help="With --json: every question's outcome.")
    ] = False,
    show_missed: Annotated[
        int, typer.Option("--missed", min=0, help="Missed questions to list (table view).")
    ] = 20,
    sample_size: Annotated[
        int | None,
        typer.Option("--sample", min=1, help="Ask only N questions, spread evenly over the file."),
    ] = None,
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Answer every question as of this date (default: each "
                     "question's own \"date\", none for questions without one)."),
    ] = None,
    ranking_file: Annotated[
        Path | None,
        typer.Option(
            "--ranking", help="TOML file of ranking weights and thresholds to use instead of "
            "the defaults (any subset of the keys `qa eval --json` reports under \"ranking\")."
        ),
    ] = None,
) -> None:
    """Measure answer quality on QUESTIONS: answer-hit@k, MRR, source-hit@k, refusals,
    latency, and the questions missed at rank 1 with what came first.

    A question is answered at k when one of the top k results comes from a listed source and
    contains a listed answer (case-insensitive, whitespace folded); questions with no answers
    should be refused.

    Example: qa eval ../shared/bench/squad-a/questions.jsonl --stage fused --ranking sweep.toml
    """
    from qa.evaluate import asker, evaluate, load_questions, sample, source_age
    from qa.filters import make_filters
    from qa.ranking import RankingConfig
    from qa.search import STAGES

    with user_errors():
        depths = _ks(ks)
        if stage not in STAGES:
            raise typer.BadParameter(f"--stage must be one of {', '.join(STAGES)}")
        ranking = RankingConfig.load(ranking_file) if ranking_file else RankingConfig()
        filters = make_filters(source, since, until, as_of)
        items = sample(load_questions(questions), sample_size)
        if docs is None and (questions.parent / "docs").is_dir():
            docs = questions.parent / "docs"
        engine = open_engine(ctx, docs, index, ranking=ranking)
        with _eval_progress(len(items)) as progress:
            report = evaluate(asker(engine, stage, filters), items, depths, stage=stage,
                              progress=progress, age=lambda q: source_age(engine, q))
        report.ranking = ranking.to_dict()
        if json_out:
            print(json.dumps(report.to_dict(details), ensure_ascii=False))
            return
        _print_report(report, show_missed)


def _print_by_age(report: Any) -> None:
    """Dated questions by the age of the newest article holding their answer."""
    from rich.table import Table

    from qa.evaluate import FRESH_DAYS

    if not report.by_source_age:
        return
    labels = {"fresh": f"≤ {FRESH_DAYS} days old", "older": f"only older than {FRESH_DAYS} days",
              "none": "in no dated source"}
    table = Table(title="dated questions by the newest listed source holding the answer")
    table.add_column("answer in an article")
    table.add_column("questions", justify="right")
    for k in report.ks:
        table.add_column(f"hit@{k}", justify="right")
    table.add_column("MRR", justify="right")
    for key, group in report.by_source_age.items():
        table.add_row(labels[key], str(group["questions"]),
                      *(f"{group['hit'][k]:.3f}" for k in report.ks), f"{group['mrr']:.3f}")
    _stdout().print(table)


@contextmanager
def _eval_progress(total: int) -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.elapsed:.0f}s"), console=_stderr(), transient=True,
    )
    task = bar.add_task("asking", total=total)
    with bar:
        yield lambda done, _total: bar.update(task, completed=done)


def _print_report(report: Any, show_missed: int) -> None:
    from rich.table import Table

    out = _stdout()
    table = Table(title=f"qa eval — stage {report.stage}, {report.questions} questions "
                        f"({report.answerable} answerable)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in report.ks:
        table.add_row(f"answer-hit@{k}", f"{report.hit[k]:.3f}")
    table.add_row("MRR", f"{report.mrr:.3f}")
    for k in report.ks:
        table.add_row(f"source-hit@{k}", f"{report.source_hit[k]:.3f}")
    for k in report.ks:
        table.add_row(f"any-source answer-hit@{k}", f"{report.any_source_hit[k]:.3f}")
    if report.refused_correctly is None:
        table.add_row("refusals", "n/a (stage only)")
    else:
        table.add_row("off-topic refused", f"{report.refused_correctly}/{report.offtopic}")
        table.add_row("answerable refused", f"{report.refused_wrongly}/{report.answerable}")
    if report.highlight_hit is not None:
        table.add_row("highlight holds answer", f"{report.highlight_hit:.3f}")
    table.add_row("latency p50", f"{report.latency_p50_ms:.1f} ms")
    table.add_row("latency p95", f"{report.latency_p95_ms:.1f} ms")
    out.print(table)
    _print_by_age(report)
    if report.missed and show_missed:
        out.print(f"[bold]Not first ({len(report.missed)}):[/]")
        for o in report.missed[:show_missed]:
            where = f"rank {o.rank}" if o.rank else "not in top results"
            out.print(safe(f"  {o.id} ({where}) {o.question}"), soft_wrap=True, markup=False)
            out.print(safe(f"      first: {o.first}"), soft_wrap=True, markup=False, style="dim")
        if len(report.missed) > show_missed:
            out.print(f"  … and {len(report.missed) - show_missed} more (--missed N, --json)")


def _stdin_text() -> Any:
    """stdin as text; undecodable bytes become lone surrogates, which the question cleaner
    turns into spaces (as it does for undecodable bytes in arguments)."""
    stream = sys.stdin
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="surrogateescape")
    return stream


@app.command()
def chat(
    ctx: typer.Context,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="Passages to show.")] = 5,
    docs: DocsOption = None,
    index: IndexOption = None,
    as_of: AsOfOption = None,
) -> None:
    """An interactive session: the index is loaded once, then ask away.

    Commands: :k N (passages per answer), :json (toggle JSON), :help, :quit.
    Example: qa chat --docs seeds/
    """
    with user_errors():
        from qa.filters import make_filters, today

        filters = make_filters(as_of=as_of or today())
        engine = open_engine(ctx, docs, index)
        run_chat(engine, k, filters)


def run_chat(engine: Engine, k: int, filters: Any = None) -> None:
    from index.errors import QuestionError

    out = _stdout()
    as_json = show_weak = False
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
                out.print(f"[dim]showing {k} passage{'' if k == 1 else 's'}[/]")
            elif command == "json":
                as_json = not as_json
                out.print(f"[dim]JSON output {'on' if as_json else 'off'}[/]")
            elif command == "weak":
                show_weak = not show_weak
                out.print(f"[dim]weak answers {'shown' if show_weak else 'hidden'}[/]")
            else:
                out.print(
                    "[dim]:k N (1–100) passages, :json toggle JSON, :weak toggle weak answers, "
                    ":quit to leave[/]"
                )
            continue
        try:
            answer = engine.ask(line, k=k, filters=filters)
        except QuestionError as error:
            warn(str(error))
            continue
        if as_json:
            print(json.dumps(answer.to_dict(show_weak), ensure_ascii=False), flush=True)
        else:
            render(answer, out, show_weak)


def chat_history(folder: Path) -> Path:
    """The chat history file, readable by its owner only (questions can be private)."""
    history = folder / "chat_history"
    history.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(history, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
    os.chmod(history, 0o600)
    return history


def _line_reader() -> Any:
    """prompt_toolkit (line editing, history) on a terminal; plain lines otherwise."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        from qa.app import cache_root

        history = chat_history(cache_root())
        session: PromptSession[str] = PromptSession(history=FileHistory(str(history)))
        return lambda: session.prompt("? ")

    stream = _stdin_text()

    def read() -> str:
        line = stream.readline()
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
QueueOption = Annotated[
    int, typer.Option("--queue", min=0, max=10_000,
                      help="Questions that may wait for a worker; beyond that: 503 at once.")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds a question may wait and run.")
]


def _say(message: str) -> None:
    _stderr().print(message, soft_wrap=True, markup=False)


@app.command()
def serve(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
    ] = 8000,
    docs: DocsOption = None,
    index: IndexOption = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, help="Processes answering "
                                 "questions, two at a time each (default: the machine's cores).")
    ] = None,
    queue: QueueOption = 16,
    timeout: TimeoutOption = 30.0,
    max_body: Annotated[
        int, typer.Option("--max-body", min=256, help="Largest request body in bytes.")
    ] = 64 * 1024,
    insecure_public: Annotated[
        bool, typer.Option("--insecure-public",
                           help="Serve beyond loopback without QA_API_TOKEN (anyone may ask).")
    ] = False,
    show_paths: Annotated[
        bool, typer.Option("--show-paths", help="Put absolute server paths in responses.")
    ] = False,
) -> None:
    """Serve the search page at / and the HTTP API: POST /ask (the `ask --json` object),
    POST /feedback, GET /health, docs at /docs.

    The index and model are loaded once per answering process (--workers of them, each
    answering two questions at a time) with at most --queue waiting (503 with Retry-After
    beyond). Index updates are picked up while it runs. Beyond loopback, requests need
    `Authorization: Bearer $QA_API_TOKEN` (QA_API_TOKEN=secret qa serve --host 0.0.0.0).
    Example: qa serve --port 8000 --workers 2
    """
    with user_errors():
        from qa import serving

        load = serving.Load(processes=workers or serving.cores(), queue=queue, timeout=timeout)
        serving.serve_api(lambda: open_engine(ctx, docs, index), serving.Listen(host, port),
                          load, serving.ApiOptions(max_body, show_paths, insecure_public),
                          say=_say, warn=warn)


@app.command()
def slack(
    ctx: typer.Context,
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
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Questions answered at once.")
    ] = 2,
    queue: QueueOption = 16,
    timeout: TimeoutOption = 30.0,
    scopes: Annotated[
        Path | None,
        typer.Option("--scopes", envvar="QA_SLACK_SCOPES", help="A TOML file of channel "
                     "scopes: [channels.C0123ABCD] with source, since, until and k, used in "
                     "that channel unless a question says otherwise."),
    ] = None,
) -> None:
    """Run the Slack bot: answers @mentions and DMs in their thread (and follow-ups in a
    thread it answered in, with the thread's earlier questions as context), /ask privately;
    every answer has 👍/👎 buttons (see `qa feedback`).

    Socket Mode (the default) needs SLACK_APP_TOKEN and SLACK_BOT_TOKEN.
    --http serves /slack/events (events, /ask, interactivity); it needs SLACK_SIGNING_SECRET.
    SLACK_API_URL overrides the Slack Web API base URL (a proxy, a test server).
    Example: qa slack --http --port 3000
    """
    with user_errors():
        from qa import serving

        if not http and (host, port) != ("127.0.0.1", 3000):
            warn("--host and --port only apply with --http; Socket Mode connects out to Slack")
        load = serving.Load(threads=workers, queue=queue, timeout=timeout)
        serving.serve_slack(lambda: open_engine(ctx, docs, index),
                            serving.Listen(host, port) if http else None, load,
                            serving.BotOptions(top, scopes), say=_say)


WatchJsonOption = Annotated[bool, typer.Option("--json", help="JSON output (JSON Lines for "
                                                               "several).")]


def _watches(docs: Path | None, index: Path | None) -> Any:
    from qa.watch import Watches

    return Watches.of_index(_paths(docs, index).index)


def tell_watches(engine: Engine, dry_run: bool = False, json_out: bool = False) -> None:
    """Check the standing questions over what an update added, send what is pending and
    print the new findings (the terminal is every watch's destination here)."""
    from qa.feedback import Feedback
    from qa.watch import Watches, destinations, run

    if not Watches.exists_for(engine.index_dir):
        return
    token = os.environ.get("SLACK_BOT_TOKEN", "").strip() or None
    watches = Watches.of_index(engine.index_dir)
    try:
        tell = destinations(token, os.environ.get("SLACK_API_URL") or None,
                            Feedback.of_index(engine.index_dir) if token else None)
        done = run(engine, watches, tell, dry_run=dry_run)
    finally:
        watches.close()
    out, checked = _stdout(), done.check
    for finding in checked.findings:
        if json_out:
            print(json.dumps(finding.to_dict(), ensure_ascii=False), flush=True)
            continue
        what = "would be reported" if dry_run else "a new finding"
        out.print(_line(f"Standing question #{finding.watch.id}:", "bold magenta",
                        f"{finding.watch.question} — {what}"), soft_wrap=True)
        render(finding.answer, out)
    if checked.skipped in ("checked", "claimed", "no watches"):
        note = {"checked": "no new or changed articles since the last check",
                "claimed": "another qa process is checking this version",
                "no watches": "no standing questions"}[checked.skipped]
        _stderr().print(f"standing questions: {note}", soft_wrap=True)
        return
    sent = sum(t.status == "sent" for t in done.told)
    failed = [t for t in done.told if t.status == "failed"]
    _stderr().print(
        f"checked {checked.watches} standing question(s) over {checked.articles} new or changed"
        f" article(s): {len(checked.findings)} new finding(s)"
        + (f"; told {sent}" if done.told else "")
        + (f", {len(failed)} failed (see the log)" if failed else "")
        + (f"; {done.waiting} waiting for a process with SLACK_BOT_TOKEN (qa slack)"
           if done.waiting else ""), soft_wrap=True, markup=False)


@watch_app.command("add")
def watch_add(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The standing question.")],
    slack: Annotated[str | None, typer.Option("--slack", metavar="CHANNEL", help="Post "
                     "findings to this Slack channel (its ID, C0123ABCD, or #name).")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", metavar="URL", help="POST each "
                       "finding to this URL as JSON.")] = None,
    since: SinceOption = None,
    source: SourceOption = None,
    json_out: WatchJsonOption = False,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """Add a standing question. After every index update it is asked over the new and
    changed articles; a new finding is posted to --slack, POSTed to --webhook and printed by
    `qa watch run` and `qa index update`.

    Example: qa watch add "Who is the new commander of the Quds Force?" --slack C0123ABCD
    """
    from qa.filters import make_filters
    from qa.watch import check_channel, check_webhook, standing_question

    with user_errors():
        standing_question(question)  # fail fast, before loading anything
        make_filters(source, since)
        check_channel(slack)
        check_webhook(webhook)
        engine = open_engine(ctx, docs, index)
        watches = _watches(docs, index)
        try:
            watch, answer = watches.add(question, slack=slack, webhook=webhook, since=since,
                                        source=source, via="cli", engine=engine)
        finally:
            watches.close()
            engine.close()
    if json_out:
        print(json.dumps({"watch": watch.to_dict(), "answered_now": answer.answered},
                         ensure_ascii=False))
        return
    now = ("the archive answers it now: only new findings will be reported" if answer.answered
           else "the archive does not answer it yet")
    _stdout().print(safe(f"added standing question #{watch.id}: “{watch.question}” ({now})"),
                    soft_wrap=True, markup=False)


@watch_app.command("list")
def watch_list(json_out: WatchJsonOption = False, docs: DocsOption = None,
               index: IndexOption = None) -> None:
    """List the standing questions: where each tells and how many findings it reported.

    Example: qa watch list --json
    """
    with user_errors():
        watches = _watches(docs, index)
        try:
            rows, counts = watches.all(), watches.counts()
        finally:
            watches.close()
    if json_out:
        for watch in rows:
            print(json.dumps({**watch.to_dict(), "findings": counts.get(watch.id, 0)},
                             ensure_ascii=False))
        return
    if not rows:
        _stdout().print("No standing questions (add one with qa watch add QUESTION).")
        return
    from rich.table import Table

    table = Table("id", "question", "tells", "findings")
    for w in rows:
        tells = ", ".join(t for t in (w.slack and f"slack {w.slack}",
                                      w.webhook and f"webhook {w.webhook}") if t) or "terminal"
        table.add_row(str(w.id), safe(w.question), safe(tells), str(counts.get(w.id, 0)))
    _stdout().print(table)


@watch_app.command("remove")
def watch_remove(watch: Annotated[int, typer.Argument(help="The watch's id.")],
                 docs: DocsOption = None, index: IndexOption = None) -> None:
    """Remove a standing question (and what was recorded for it).

    Example: qa watch remove 3
    """
    with user_errors():
        watches = _watches(docs, index)
        try:
            removed = watches.remove(watch)
        finally:
            watches.close()
    _stdout().print(safe(f"removed standing question #{removed.id}: “{removed.question}”"),
                    soft_wrap=True, markup=False)


@watch_app.command("run")
def watch_run(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be reported; "
                                          "record and send nothing.")] = False,
    json_out: WatchJsonOption = False,
    docs: DocsOption = None,
    index: IndexOption = None,
) -> None:
    """Ask the standing questions over the articles new or changed since their last check,
    print the new findings and send them (Slack needs SLACK_BOT_TOKEN; else `qa slack`
    posts them). `qa index update` and running servers do this after every update.

    Example: qa watch run --dry-run
    """
    from qa.watch import Watches

    with user_errors():
        if not Watches.exists_for(_paths(docs, index).index):
            _stderr().print("standing questions: none (add one with qa watch add)")
            return
        engine = open_engine(ctx, docs, index)
        try:
            tell_watches(engine, dry_run, json_out)
        finally:
            engine.close()


def _after_update(ctx: typer.Context, docs: Path | None, index: Path | None) -> None:
    """The standing questions checked over what an update added; a failure is a warning
    (the update is done)."""
    from index.errors import QAError
    from qa.watch import Watches

    if not Watches.exists_for(_paths(docs, index).index):
        return
    try:
        engine = open_engine(ctx, docs, index)
        try:
            tell_watches(engine)
        finally:
            engine.close()
    except QAError as error:
        warn(f"the index is updated, but checking the standing questions failed: {error}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
