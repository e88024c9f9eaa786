"""`qa`: ask a news archive questions and get cited passages back.

Argument parsing and rendering only: each command checks its arguments, calls the library
(``qa.app``, ``qa.serving``, ``qa.chat``, ``qa.evaluate``) and prints with ``qa.terminal``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from index.errors import QAError
from qa import terminal
from qa.processes import Terminated, sigterm_raises
from qa.terminal import labelled, progress_bars, quiet_exit, say, stderr, stdout, warn

if TYPE_CHECKING:
    from index.ingest.builder import Builder
    from qa.app import Paths
    from qa.engine import Engine
    from qa.filters import Filters

app = typer.Typer(no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Ask a news archive questions; get passages with citations you can check.")
index_app = typer.Typer(no_args_is_help=True, help="Build, update and inspect the index.")
app.add_typer(index_app, name="index")
feedback_app = typer.Typer(no_args_is_help=True, help="Readers' 👍/👎 verdicts on answers "
                           "(Slack, the web page, POST /feedback), kept beside the index; "
                           "export them as qa eval questions.")
app.add_typer(feedback_app, name="feedback")
watch_app = typer.Typer(no_args_is_help=True, help="Standing questions: after every index update "
                        "they are asked over the new articles, and a new finding is posted to "
                        "Slack, a webhook or printed.")
app.add_typer(watch_app, name="watch")

DocsOption = Annotated[Path | None, typer.Option(
    "--docs", envvar="QA_DOCS", help="Folder of article files (default: the project's seeds/).")]
IndexOption = Annotated[Path | None, typer.Option(
    "--index", envvar="QA_INDEX", help="Index directory (default: a cache folder per docs).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and exit code 1. Ctrl-C (130) and SIGTERM
    (143) end the command the same way, its cleanup run: a build stops its embedding worker
    processes and leaves the index as it was."""
    try:
        with sigterm_raises():
            yield
    except QAError as error:
        stderr().print(labelled("error:", "red", str(error)), soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        stderr().print("interrupted")
        raise typer.Exit(130) from None
    except Terminated:
        stderr().print("terminated")
        raise typer.Exit(143) from None
    except BrokenPipeError:  # print() to a closed pipe (JSON output)
        quiet_exit()


def grouped(command: Callable[..., Any]) -> Callable[..., Any]:
    """Typer reads a command's options off its signature. A parameter typed as an option
    group (a dataclass of options, below) stands for the group's options: they become the
    command's own, in its place, and the command is called with the group filled in."""
    hints = get_type_hints(command, include_extras=True)
    params, groups = [], {}
    for param in inspect.signature(command).parameters.values():
        kind = hints.get(param.name, param.annotation)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            groups[param.name] = kind
            options = get_type_hints(kind, include_extras=True)
            params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                         default=f.default, annotation=options[f.name])
                       for f in dataclasses.fields(kind)]
        else:
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=kind))

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        for name, kind in groups.items():
            values[name] = kind(**{f.name: values.pop(f.name) for f in dataclasses.fields(kind)})
        return command(**values)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def command(group: typer.Typer, name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Register a command of ``group``: its option groups unpacked (``grouped``), each run
    within ``user_errors``."""
    return lambda function: group.command(name)(grouped(user_errors()(function)))


def _paths(docs: Path | None, index: Path | None) -> Paths:
    from qa.app import Paths

    return Paths.resolve(docs, index)


@dataclass
class Where:
    """--docs and --index."""

    docs: DocsOption = None
    index: IndexOption = None


@dataclass
class BuildFlags:
    """How an index is built: --field, --ray, --retrain, --shards."""

    field: Annotated[list[str] | None, typer.Option(
        "--field", help="An export's column for an article field, e.g. --field text=story_body "
        "(fields: text, title, url, date, author, publisher, id, language; dots reach nested "
        "keys: publisher=source.name). Repeatable; kept for later updates.")] = None
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS",
        help="Chunk and embed on a Ray cluster: its address (HEAD:6379), or 'auto' for the one "
        "`ray start` made here. Needs pip install 'newsqa\\[ray]' on every node.")] = None
    retrain: Annotated[bool, typer.Option(
        "--retrain", help="Train the vector index afresh (when `qa index status` says its "
        "training is stale); the vectors of unchanged passages are kept, nothing is "
        "re-embedded.")] = False
    shards: Annotated[Path | None, typer.Option(
        "--shards", metavar="DIR",
        help="With --ray: the nodes write what they embed to DIR as Parquet shards and this "
        "machine assembles the index from them. DIR must be the same folder on every node (a "
        "shared file system). A build that stops keeps its shards, and the next one with the "
        "same DIR embeds only what they lack; a finished build removes them.")] = None


def _builder(ctx: typer.Context, progress: Any = None, flags: BuildFlags | None = None,
             model: str | None = None) -> Builder:
    """How this command builds an index (``model``: the sentence-transformers model to build
    with, a folder or a hub name). ``ctx.obj`` may pass an ``embedder`` and a
    ``count_tokens`` in (tests run the CLI over a small fake model that way)."""
    from index.ingest.builder import make_builder
    from qa.app import cache_root

    deps, flags = ctx.obj if isinstance(ctx.obj, dict) else {}, flags or BuildFlags()
    try:
        return make_builder(say, model, flags.field, ray=flags.ray, retrain=flags.retrain,
                            shards=flags.shards, embedder=deps.get("embedder"),
                            count_tokens=deps.get("count_tokens"), warn=warn,
                            progress=progress or (lambda stage, done, total: None),
                            model_cache=cache_root() / "models")
    except ValueError as error:  # --field
        raise typer.BadParameter(str(error)) from None


ModelOption = Annotated[str | None, typer.Option(
    "--model", metavar="NAME_OR_PATH",
    help="The sentence-transformers model to embed with: a local folder, or a Hugging Face "
    "hub name (downloaded where there is a network). Default: all-MiniLM-L6-v2, installed "
    "with qa. The index records it; questions and updates use it.")]


@command(index_app, "build")
def index_build(ctx: typer.Context, where: Where, flags: BuildFlags,
                model: ModelOption = None) -> None:
    """Build the index from scratch over every article in DOCS (a folder, or one file).

    Reads .txt/.md, HTML pages, JSON Lines/CSV exports, RSS/Atom feeds and WARC crawls (and
    their .gz); the same article met twice (same canonical URL, near-identical text) is
    indexed once.

    The old index keeps answering until the new one is complete, even if the build is killed.

    Unusable files are skipped with a warning. Fails if another qa is writing the same index.

    With --retrain only the vector index's training is redone (when `qa index status` says it
    is stale): the vectors of unchanged passages are kept.

    With --model the articles are embedded by another sentence-transformers model (a folder,
    or a hub name); the index names it, and questions and updates use it.

    Example: qa index build --docs seeds/   (on a Ray cluster: --ray HEAD:6379, and
    --shards /mnt/shared/qa-shards to keep what the nodes embed if the build stops)
    """
    with progress_bars() as progress:
        paths = _paths(where.docs, where.index)
        report = _builder(ctx, progress, flags, model).run(paths.docs, paths.index)
    terminal.print_built(report, paths.index)


@command(index_app, "update")
def index_update(ctx: typer.Context, where: Where, flags: BuildFlags) -> None:
    """Bring the index in line with DOCS, embedding only new or changed passages.

    Builds the index when there is none. The index keeps the model it was built with.

    Example: qa index update --docs seeds/
    """
    with progress_bars() as progress:
        paths = _paths(where.docs, where.index)
        report = _builder(ctx, progress, flags).run(paths.indexed_docs(), paths.index, update=True)
    terminal.print_updated(report)
    _after_update(ctx, where.docs, where.index)


@command(index_app, "status")
def index_status(
    ctx: typer.Context, docs: DocsOption = None, index: IndexOption = None,
    json_out: JsonOption = False,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Skip hashing the index files (sizes still checked).")] = False,
) -> None:
    """Show what the index holds and whether the docs changed since it was built.

    Every file is checked against the digest recorded when it was written (--quick: sizes).
    Example: qa index status
    """
    from qa.app import status

    state = status(_paths(docs, index), embedder=_builder(ctx).embedder, verify=not quick)
    terminal.print_status(state, json_out)


def open_engine(ctx: typer.Context, docs: Path | None, index: Path | None, refresh: bool = False,
                ranking: Any = None) -> Engine:
    """The engine for DOCS (built first, with progress bars, when there is no index)."""
    from qa.app import open_engine as open_archive

    with progress_bars() as progress:
        return open_archive(_paths(docs, index), _builder(ctx, progress), refresh=refresh,
                            ranking=ranking)


SourceOption = Annotated[str | None, typer.Option(
    "--source", help="Only articles whose file name or outlet contains this.")]
SinceOption = Annotated[str | None, typer.Option(
    "--since", help="Only articles dated on/after (YYYY-MM-DD).")]
UntilOption = Annotated[str | None, typer.Option(
    "--until", help="Only articles dated on/before (YYYY-MM-DD).")]
AsOfOption = Annotated[str | None, typer.Option(
    "--as-of", help="Answer as of this date (YYYY[-MM[-DD]]): later articles are not used and "
    "recent ones near it are favoured (default: today).")]


@dataclass
class Narrow:
    """Which articles answer: --source, --since, --until, --as-of (default: today)."""

    source: SourceOption = None
    since: SinceOption = None
    until: UntilOption = None
    as_of: AsOfOption = None

    def filters(self) -> Filters:
        from qa.filters import make_filters, today

        return make_filters(self.source, self.since, self.until, self.as_of or today())


TopOption = Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="Passages to show.")]


@command(app)
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help='The question, or "-" to read one per line.')],
    k: TopOption = 5,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per question.")] = False,
    where: Where = Where(),  # noqa: B008 (an option group: grouped() unpacks it)
    refresh: Annotated[bool, typer.Option("--refresh", help="Update the index first if the "
                       "docs changed (or this qa reads them differently).")] = False,
    narrow: Narrow = Narrow(),  # noqa: B008
    show_weak: Annotated[bool, typer.Option("--show-weak", help="Show the closest passages "
                         "even when there is no confident answer.")] = False,
) -> None:
    """Answer QUESTION with the best passages from the archive, each with its citation.

    The same fact reported by several outlets is one result ("also reported by …"). When the
    archive does not answer, says "No confident answer in the archive" (JSON: "answered":
    false and no passages unless --show-weak).

    Example: qa ask "How many rockets landed at the Taji base?" -k 3 --since 2020-01-01
    """
    from qa.chat import answers

    filters, out = narrow.filters(), stdout()
    for answer in answers(lambda: open_engine(ctx, where.docs, where.index, refresh),
                          question, k, filters):
        terminal.print_answer(answer, out, json_out, show_weak, with_question=question == "-")


@command(app)
def fetch(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="Page URLs (with --feed: feed URLs).")],
    docs: Annotated[Path | None, typer.Option(
        "--docs", envvar="QA_DOCS", help="Folder to save the pages in (required).")] = None,
    index: IndexOption = None,
    feed: Annotated[bool, typer.Option(
        "--feed", help="The URLs are RSS/Atom feeds: fetch their items.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds per URL in all: "
                       "robots.txt, redirects and the whole download.")] = 20,
    max_bytes: Annotated[int, typer.Option(
        "--max-bytes", min=1024, help="Largest page accepted.")] = 10 * 1024 * 1024,
) -> None:
    """Download pages into DOCS as .html (with a .fetch.json of where they came from), then
    update the index. robots.txt is honoured; a URL that fails is reported, the rest kept.

    Example: qa fetch https://example.com/news/story.html --docs archive/
    """
    from index.ingest.fetch import Fetcher

    if docs is None:
        raise QAError("pass --docs DIR: the folder to save the pages in (and index)")
    with progress_bars() as progress:
        paths = _paths(docs, index)
        _, report = _builder(ctx, progress).fetch(
            urls, paths.docs, paths.index, feed=feed,
            fetcher=Fetcher(timeout=timeout, max_bytes=max_bytes))
    terminal.print_embedded(report)
    _after_update(ctx, docs, index)


@command(app)
def show(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The article's source name, as citations give.")],
    json_out: JsonOption = False,
    span: Annotated[str | None, typer.Option(
        "--span", help="START:END characters to mark (a citation's).")] = None,
    docs: DocsOption = None, index: IndexOption = None,
) -> None:
    """Print an article as citations refer to it: metadata and the text whose offsets they
    give, so text[start:end] can be checked (the stored article text for HTML, exports, feeds
    and web archives; the file's text for .txt/.md).

    Example: qa show 003_a6f98cea0e1f5c95 --span 842:1643
    """
    from qa.app import show as find

    article, warnings = find(_paths(docs, index).index, source, embedder=_builder(ctx).embedder)
    for message in warnings:
        warn(message)
    marked = _span(span, len(article["text"])) if span else None
    terminal.print_article(article, marked, json_out)


def _span(value: str, length: int) -> tuple[int, int]:
    """--span START:END, inside an article of ``length`` characters."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", value)
    if not match or int(match[1]) > int(match[2]):
        raise typer.BadParameter("--span takes START:END, e.g. --span 842:1643")
    if int(match[2]) > length:
        raise QAError(f"--span {value} is outside the article ({length:,} characters)")
    return int(match[1]), int(match[2])


def _ks(value: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1 or ks[-1] > 100:
        raise typer.BadParameter("use a comma-separated list of ranks from 1 to 100, e.g. 1,5,10")
    return ks


FeedbackSinceOption = Annotated[str | None, typer.Option(
    "--since", help="Only verdicts on or after this date (YYYY[-MM[-DD]]).")]


@command(feedback_app, "list")
def feedback_list(
    since: FeedbackSinceOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON Lines, one verdict a line.")]
    = False,
    docs: DocsOption = None, index: IndexOption = None,
) -> None:
    """List the verdicts readers gave, newest last: when, 👍/👎, on which finding, the
    question, who and where.

    Example: qa feedback list --since 2026-11-01
    """
    from qa.app import judged

    terminal.print_judged(judged(_paths(docs, index), since), json_out)


@command(feedback_app, "export")
def feedback_export(since: FeedbackSinceOption = None, docs: DocsOption = None,
                    index: IndexOption = None) -> None:
    """Write the judged questions as qa eval JSON Lines on stdout: findings marked right are
    gold sources, their highlighted sentences the answers; "none was right" makes a question
    to refuse. Real use becomes a regression set.

    Example: qa feedback export > judged.jsonl && qa eval judged.jsonl
    """
    from qa.app import judged
    from qa.feedback import to_eval

    terminal.print_json_lines(to_eval(judged(_paths(docs, index), since)))


@dataclass
class EvalRun:
    """What is scored and how the report is shown: -k, --stage, --json, --details, --missed."""

    ks: Annotated[str, typer.Option("-k", help="Ranks to score, comma-separated.")] = "1,5,10"
    stage: Annotated[str, typer.Option(
        "--stage", help="Ordering to measure: dense, bm25, fused (the score blend in use), rrf "
        "(reciprocal-rank fusion, for comparison) or final (everything).")] = "final"
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False
    details: Annotated[bool, typer.Option(
        "--details", help="With --json: every question's outcome.")] = False
    show_missed: Annotated[int, typer.Option(
        "--missed", min=0, help="Missed questions to list (table view).")] = 20


@dataclass
class EvalNarrow(Narrow):
    """--source, --since, --until, and --as-of (default: each question's own date)."""

    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Answer every question as of this date (default: each question's own "
        "\"date\", none for questions without one).")] = None

    def filters(self) -> Filters:
        from qa.filters import make_filters

        return make_filters(self.source, self.since, self.until, self.as_of)


@command(app, "eval")
def eval_command(
    ctx: typer.Context,
    questions: Annotated[Path, typer.Argument(
        help="JSONL file: {id, question, answers, sources} per line.")],
    docs: Annotated[Path | None, typer.Option(
        "--docs", envvar="QA_DOCS",
        help="Article folder (default: docs/ next to QUESTIONS if present, else seeds/).")] = None,
    index: IndexOption = None,
    run: EvalRun = EvalRun(),  # noqa: B008 (option groups: grouped() unpacks them)
    sample_size: Annotated[int | None, typer.Option(
        "--sample", min=1, help="Ask only N questions, spread evenly over the file.")] = None,
    narrow: EvalNarrow = EvalNarrow(),  # noqa: B008
    ranking_file: Annotated[Path | None, typer.Option(
        "--ranking", help="TOML file of ranking weights and thresholds to use instead of the "
        "defaults (any subset of the keys `qa eval --json` reports under \"ranking\"), or a "
        "LightGBM ranking model written by `python -m benchmarks.fit`.")] = None,
) -> None:
    """Measure answer quality on QUESTIONS: answer-hit@k, MRR, source-hit@k, refusals,
    latency, and the questions missed at rank 1 with what came first.

    A question is answered at k when one of the top k results comes from a listed source and
    contains a listed answer (case-insensitive, whitespace folded); questions with no answers
    should be refused.

    Example: qa eval ../shared/bench/squad-a/questions.jsonl --stage fused --ranking sweep.toml
    """
    from qa.evaluate import docs_for, evaluate_engine, load_questions, sample
    from qa.ranking import RankingConfig
    from qa.search import STAGES

    depths = _ks(run.ks)
    if run.stage not in STAGES:
        raise typer.BadParameter(f"--stage must be one of {', '.join(STAGES)}")
    ranking = RankingConfig.load(ranking_file) if ranking_file else RankingConfig()
    filters = narrow.filters()
    items = sample(load_questions(questions), sample_size)
    engine = open_engine(ctx, docs_for(questions, docs), index, ranking=ranking)
    with terminal.eval_progress(len(items)) as progress:
        report = evaluate_engine(engine, items, depths, run.stage, filters, progress)
    terminal.print_report(report, run.show_missed, run.json_out, run.details)


@command(app)
def chat(ctx: typer.Context, k: TopOption = 5, docs: DocsOption = None,
         index: IndexOption = None, as_of: AsOfOption = None) -> None:
    """An interactive session: the index is loaded once, then ask away.

    Commands: :k N (passages per answer), :json (toggle JSON), :help, :quit.
    Example: qa chat --docs seeds/
    """
    from qa.chat import run_chat

    filters = Narrow(as_of=as_of).filters()
    run_chat(open_engine(ctx, docs, index), k, filters)


QueueOption = Annotated[int, typer.Option(
    "--queue", min=0, max=10_000, help="Questions that may wait for a worker; beyond that: 503 "
    "at once.")]
TimeoutOption = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="Seconds a question may wait and run.")]
HostOption = Annotated[str, typer.Option(
    "--host", help="Interface to listen on: 127.0.0.1 is this machine only, 0.0.0.0 everyone.")]


@dataclass
class ServeLoad:
    """--workers (processes), --queue, --timeout, --max-body."""

    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=64, help="Processes answering questions, two at a time each "
        "(default: the machine's cores).")] = None
    queue: QueueOption = 16
    timeout: TimeoutOption = 30.0
    max_body: Annotated[int, typer.Option(
        "--max-body", min=256, help="Largest request body in bytes.")] = 64 * 1024


@command(app)
def serve(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, help="Port (0: any free port).")] = 8000,
    where: Where = Where(),  # noqa: B008 (option groups: grouped() unpacks them)
    load: ServeLoad = ServeLoad(),  # noqa: B008
    insecure_public: Annotated[bool, typer.Option(
        "--insecure-public", help="Serve beyond loopback without QA_API_TOKEN (anyone may "
        "ask).")] = False,
    show_paths: Annotated[bool, typer.Option(
        "--show-paths", help="Put absolute server paths in responses.")] = False,
) -> None:
    """Serve the search page at / and the HTTP API: POST /ask (the `ask --json` object),
    POST /feedback, GET /health, docs at /docs.

    The index and model are loaded once per answering process (--workers of them, each
    answering two questions at a time) with at most --queue waiting (503 with Retry-After
    beyond). Index updates are picked up while it runs. Beyond loopback, requests need
    `Authorization: Bearer $QA_API_TOKEN` (QA_API_TOKEN=secret qa serve --host 0.0.0.0).
    Example: qa serve --port 8000 --workers 2
    """
    from qa import serving

    serving.serve_api(
        lambda: open_engine(ctx, where.docs, where.index), serving.Listen(host, port),
        serving.Load(processes=load.workers or serving.cores(), queue=load.queue,
                     timeout=load.timeout),
        serving.ApiOptions(load.max_body, show_paths, insecure_public), say=say, warn=warn)


@dataclass
class SlackLoad:
    """--workers (threads), --queue, --timeout, --scopes."""

    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=64, help="Questions answered at once.")] = 2
    queue: QueueOption = 16
    timeout: TimeoutOption = 30.0
    scopes: Annotated[Path | None, typer.Option(
        "--scopes", envvar="QA_SLACK_SCOPES", help="A TOML file of channel scopes: "
        "[channels.C0123ABCD] with source, since, until and k, used in that channel unless a "
        "question says otherwise.")] = None


@command(app)
def slack(
    ctx: typer.Context,
    http: Annotated[bool, typer.Option(
        "--http", help="Serve /slack/events over HTTP instead of Socket Mode.")] = False,
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, help="Port for --http (0: any free port).")] = 3000,
    top: Annotated[int, typer.Option(
        "-k", "--top", min=1, max=10, help="Findings per answer.")] = 3,
    where: Where = Where(),  # noqa: B008 (option groups: grouped() unpacks them)
    load: SlackLoad = SlackLoad(),  # noqa: B008
) -> None:
    """Run the Slack bot: answers @mentions and DMs in their thread (and follow-ups in a
    thread it answered in, with the thread's earlier questions as context), /ask privately;
    every answer has 👍/👎 buttons (see `qa feedback`).

    Socket Mode (the default) needs SLACK_APP_TOKEN and SLACK_BOT_TOKEN.
    --http serves /slack/events (events, /ask, interactivity); it needs SLACK_SIGNING_SECRET.
    SLACK_API_URL overrides the Slack Web API base URL (a proxy, a test server).
    Example: qa slack --http --port 3000
    """
    from qa import serving

    if not http and (host, port) != ("127.0.0.1", 3000):
        warn("--host and --port only apply with --http; Socket Mode connects out to Slack")
    serving.serve_slack(
        lambda: open_engine(ctx, where.docs, where.index),
        serving.Listen(host, port) if http else None,
        serving.Load(threads=load.workers, queue=load.queue, timeout=load.timeout),
        serving.BotOptions(top, load.scopes), say=say)


WatchJsonOption = Annotated[bool, typer.Option("--json", help="JSON output (JSON Lines for "
                                                               "several).")]


@command(watch_app, "add")
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
    where: Where = Where(),  # noqa: B008 (an option group: grouped() unpacks it)
) -> None:
    """Add a standing question. After every index update it is asked over the new and
    changed articles; a new finding is posted to --slack, POSTed to --webhook and printed by
    `qa watch run` and `qa index update`.

    Example: qa watch add "Who is the new commander of the Quds Force?" --slack C0123ABCD
    """
    from qa.app import add_watch

    watch, answer = add_watch(_paths(where.docs, where.index),
                              lambda: open_engine(ctx, where.docs, where.index), question,
                              slack=slack, webhook=webhook, source=source, since=since)
    terminal.print_watch_added(watch, answer, json_out)


@command(watch_app, "list")
def watch_list(json_out: WatchJsonOption = False, docs: DocsOption = None,
               index: IndexOption = None) -> None:
    """List the standing questions: where each tells and how many findings it reported.

    Example: qa watch list --json
    """
    from qa.app import list_watches

    rows, counts = list_watches(_paths(docs, index))
    terminal.print_watches(rows, counts, json_out)


@command(watch_app, "remove")
def watch_remove(watch: Annotated[int, typer.Argument(help="The watch's id.")],
                 json_out: WatchJsonOption = False, docs: DocsOption = None,
                 index: IndexOption = None) -> None:
    """Remove a standing question (and what was recorded for it).

    Example: qa watch remove 3
    """
    from qa.app import remove_watch

    removed = remove_watch(_paths(docs, index), watch)
    terminal.print_watch_removed(removed, json_out)


@command(watch_app, "run")
def watch_run(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be reported; "
                                          "record and send nothing.")] = False,
    json_out: WatchJsonOption = False, docs: DocsOption = None, index: IndexOption = None,
) -> None:
    """Ask the standing questions over the articles new or changed since their last check,
    print the new findings and send them (Slack needs SLACK_BOT_TOKEN; else `qa slack`
    posts them). `qa index update` and running servers do this after every update.

    Example: qa watch run --dry-run
    """
    from qa.app import run_watches

    done = run_watches(_paths(docs, index), lambda: open_engine(ctx, docs, index), dry_run)
    if done is None:
        stderr().print("standing questions: none (add one with qa watch add)")
    else:
        terminal.print_check(done, dry_run, json_out)


def _after_update(ctx: typer.Context, docs: Path | None, index: Path | None) -> None:
    """The standing questions checked over what an update added (a failure: a warning)."""
    from qa.app import check_after_update

    done = check_after_update(_paths(docs, index), lambda: open_engine(ctx, docs, index), warn)
    if done is not None:
        terminal.print_check(done)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
