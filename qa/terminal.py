"""The terminal front end's rendering (rich): answers with the answering sentence marked,
citations, an article with a cited span, the index's status, ``qa eval``'s report, progress
bars, warnings. ``cli.py`` parses arguments and calls these; ``qa.web`` and ``qa.blocks``
are the same for HTML and Slack.

Article text and file names are shown with terminal control characters as escapes, never
sent to the terminal; JSON output keeps the text exact.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from .results import Answer, Citation

# Control characters a terminal would act on (ESC sequences, OSC titles, carriage returns,
# bidi overrides) and that article text or file names may hold: shown as escapes, never sent.
# Newlines and tabs are layout.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """``text`` with terminal control characters shown as ``\\xNN``/``\\uNNNN`` escapes."""
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], text)


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout() -> Console:
    """stdout; a reader that goes away (``qa ask … | head -1``) ends the program quietly."""
    from rich.console import Console

    class Stdout(Console):
        def on_broken_pipe(self) -> None:
            quiet_exit()

    return Stdout(highlight=False)


def quiet_exit() -> None:
    """The reader went away (`qa ask … | head -1`): it has what it wanted, so exit 0. stdout
    points at /dev/null first, so the final flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(0)


def labelled(label: str, style: str, message: str) -> Text:
    """``label`` in ``style``, then the (escaped) message."""
    from rich.text import Text

    return Text.assemble((label, style), " ", safe(message))


def warn(message: str) -> None:
    stderr().print(labelled("warning:", "yellow", message), soft_wrap=True)


def say(message: str) -> None:
    """A plain line on stderr (what a command did), escaped."""
    stderr().print(safe(message), soft_wrap=True, markup=False)


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
        console=stderr(),
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


@contextmanager
def eval_progress(total: int) -> Iterator[Any]:
    """A progress callback for ``qa eval``: one transient bar of questions asked."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.elapsed:.0f}s"), console=stderr(), transient=True,
    )
    task = bar.add_task("asking", total=total)
    with bar:
        yield lambda done, _total: bar.update(task, completed=done)


# --- answers ---------------------------------------------------------------------------------

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
        start = passage.citation.start
        span = (passage.highlight.start - start, passage.highlight.end - start) \
            if passage.highlight else None
        console.print(Text(f"[{passage.rank}] score {passage.score:.3f}", style="bold cyan"))
        print_wrapped(console, marked(console, passage.text, span))
        print_wrapped(console, _cited(citation_line(passage.rank, passage.citation),
                                      passage.citation))
        for other in passage.also:
            print_wrapped(console, _cited("    also reported by " + citation_line(None, other),
                                          other))
        console.print()


def print_answer(answer: Answer, out: Console, json_out: bool = False, show_weak: bool = False,
                 with_question: bool = False) -> None:
    """``qa ask``: one answer as a JSON line (its warnings on stderr), or rendered (after
    "Q:" and the question, ``with_question``)."""
    if json_out:
        for message in answer.warnings:
            warn(message)
        print(json.dumps(answer.to_dict(show_weak), ensure_ascii=False), flush=True)
        return
    if with_question:
        out.print(labelled("Q:", "bold", answer.question))
    render(answer, out, show_weak)


def marked(console: Console, text: str, span: tuple[int, int] | None) -> Text:
    """``text`` with ``text[start:end]`` in bold yellow (without colour, a pipe or NO_COLOR:
    between » and «)."""
    from rich.text import Text

    if span is None:
        return Text(safe(text))
    a, b = span
    plain = console.no_color or not console.is_terminal
    body = Text(safe(text[:a]))
    body.append(safe(f"»{text[a:b]}«" if plain else text[a:b]), style="bold yellow")
    body.append(safe(text[b:]))
    return body


def print_wrapped(console: Console, text: Text) -> None:
    """``text`` wrapped at word boundaries to the console's width, without the space rich
    leaves at the end of each wrapped line (it would be copied along with the passage)."""
    for line in text.wrap(console, console.width):
        line.rstrip()
        console.print(line, soft_wrap=True)


def _cited(line: str, c: Citation) -> Text:
    """A citation line; on terminals that support it, a link to the article's URL."""
    from rich.style import Style
    from rich.text import Text

    http = bool(c.url and re.match(r"https?://\S+$", c.url))
    return Text(line, style=Style(dim=True, link=c.url if http else None))


def citation_line(rank: int | None, c: Citation) -> str:
    from .cite import citation_text

    where = f"{c.url} " if c.url else ""
    return safe(f"{citation_text(rank, c)} ({where}{c.source}, chars {c.start}–{c.end})")


def print_article(article: dict[str, Any], span: tuple[int, int] | None,
                  json_out: bool = False) -> None:
    """``qa show``: the article's metadata, then its text with ``span`` marked (with
    ``json_out``: the article as JSON, the span's characters under "span")."""
    if json_out:
        if span:
            start, end = span
            article["span"] = {"start": start, "end": end, "text": article["text"][start:end]}
        print(json.dumps(article, ensure_ascii=False))
        return
    out = stdout()
    for key in ("title", "publisher", "date", "author", "language", "url", "source", "path"):
        if article[key]:
            out.print(labelled(f"{key + ':':11}", "bold", str(article[key])), soft_wrap=True)
    out.print()
    text = article["text"]
    print_wrapped(out, marked(out, text, span) if span else labelled("", "", text))


# --- the index ---------------------------------------------------------------------------------

def print_built(report: Any, index: Any) -> None:
    """What ``qa index build`` did."""
    print_nodes(report)
    stderr().print(
        f"indexed {report.documents} documents, {report.passages} passages "
        f"({report.embedded} embedded) into {index}"
        + (f"; skipped {len(report.skipped)} unusable file(s)" if report.skipped else ""),
        soft_wrap=True,
    )


def print_updated(report: Any) -> None:
    """What ``qa index update`` did: the files added, changed, removed, skipped."""
    print_nodes(report)
    for label, names in (("added", report.added), ("changed", report.changed),
                         ("removed", report.removed), ("skipped", report.skipped)):
        if label == "skipped" and not names:
            continue
        more = f", … {len(names) - 10} more" if len(names) > 10 else ""
        listed = f" ({', '.join(names[:10])}{more})" if names else ""
        say(f"{label}: {len(names)} file(s){listed}")
    print_embedded(report)


def print_embedded(report: Any) -> None:
    stderr().print(f"embedded {report.embedded} new passage(s); index has "
                   f"{report.documents} documents, {report.passages} passages")


def print_nodes(report: Any) -> None:
    """Which Ray nodes embedded how many passages."""
    if report.nodes:
        counts = ", ".join(f"node {node[:8]}: {n}" for node, n in sorted(report.nodes.items()))
        say(f"embedded on {len(report.nodes)} Ray node(s): {counts}")
    if report.from_shards:
        say(f"{report.from_shards} passage(s) came from the shards of a build that stopped")


def print_status(state: dict[str, Any], json_out: bool = False) -> None:
    """``qa index status`` as a table (``qa.app.status``'s dict), or that dict as JSON."""
    if json_out:
        print(json.dumps(state))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in ("index", "docs", "documents", "passages", "model", "vector_index", "built",
                "updated"):
        table.add_row(key, Text(safe(str(state[key]))))
    for key, line in status_notes(state):
        table.add_row(key, Text(safe(line)))
    stdout().print(table)


def status_notes(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The status lines beyond the counts: what changed, what is stale, what was left out."""
    if state["added"] or state["changed"] or state["removed"]:
        yield "articles", (f"changed since the index was built — {len(state['added'])} added, "
                           f"{len(state['changed'])} changed, {len(state['removed'])} removed: "
                           "run `qa index update`")
    else:
        yield "articles", "unchanged since the index was built"
    reader = state["reader"]
    if reader["index"] != reader["this_qa"]:
        yield "reading", (f"this qa reads articles differently (reader {reader['this_qa']}, "
                          f"the index's {reader['index'] or 'older'}): run `qa index update` to "
                          "re-read them; passages that come out the same keep their vectors")
    training = state["vector_training"]
    if training and training["stale"]:
        yield "vector index", (f"stale: trained on {training['trained_on']:,} passages, the "
                               f"archive has {state['passages']:,}: run `qa index build "
                               "--retrain`")
    delta = state["delta"]
    if delta:
        yield "since the last build", (
            f"updates added {delta['articles']:,} article(s) ({delta['passages']:,} passages) "
            f"and removed {delta['removed_articles']:,}, kept beside the last build; the update "
            f"that takes these past {delta['bound']:,} passages rebuilds whole")
    if state["being_written"]:
        yield "writer", "another qa process is building or updating this index now"
    if state["duplicates"]:
        counts = ", ".join(f"{n} {why}" for why, n in sorted(state["duplicates"].items()))
        yield "duplicates", f"dropped as already indexed: {counts}"
    if state["bad_records"]:
        yield "bad input", (f"{state['bad_records']} problems inside files (records skipped, "
                            f"breaks, guessed charsets), e.g. {state['bad_record_examples'][0]}")
    if state["skipped"]:
        yield "skipped", (f"{len(state['skipped'])} unusable file(s) not indexed: "
                          + ", ".join(state["skipped"][:10]))


# --- feedback and evaluation -------------------------------------------------------------------

def print_json_lines(items: Iterable[dict[str, Any]]) -> None:
    """JSON Lines on stdout, the text exact."""
    for item in items:
        print(json.dumps(item, ensure_ascii=False))


def print_judged(judged: list[Any], json_out: bool = False) -> None:
    """``qa feedback list``: one row per verdict (JSON Lines with ``json_out``)."""
    from rich.table import Table

    if json_out:
        print_json_lines(item.to_dict() for item in judged)
        return
    if not judged:
        stdout().print("No feedback recorded yet.")
        return
    table = Table("time", "verdict", "finding", "question", "by", "via")
    for item in judged:
        finding = f"[{item.rank}] {item.source}" if item.rank else "whole answer"
        table.add_row(item.time.replace("T", " ")[:16], "👍" if item.verdict == "up"
                      else "👎", safe(finding), safe(item.question),
                      safe(item.user or ""), safe(item.via or ""))
    stdout().print(table)


def print_report(report: Any, show_missed: int, json_out: bool = False,
                 details: bool = False) -> None:
    """``qa eval``'s report: the metrics, by source age, then the questions missed (with
    ``json_out``: as JSON, ``details`` adding every question's outcome)."""
    if json_out:
        print(json.dumps(report.to_dict(details), ensure_ascii=False))
        return
    from rich.table import Table

    out = stdout()
    table = Table(title=f"qa eval — stage {report.stage}, {report.questions} questions "
                        f"({report.answerable} answerable)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, values in (("answer-hit", report.hit), ("source-hit", report.source_hit),
                          ("any-source answer-hit", report.any_source_hit)):
        for k in report.ks:
            table.add_row(f"{label}@{k}", f"{values[k]:.3f}")
        if label == "answer-hit":
            table.add_row("MRR", f"{report.mrr:.3f}")
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


def _print_by_age(report: Any) -> None:
    """Dated questions by the age of the newest article holding their answer."""
    from rich.table import Table

    from .evaluate import FRESH_DAYS

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
    stdout().print(table)


# --- standing questions ------------------------------------------------------------------------

SKIPPED = {"checked": "no new or changed articles since the last check",
           "claimed": "another qa process is checking this version",
           "no watches": "no standing questions",
           "not live": "another update replaced this version: checked with that one"}


def print_check(done: Any, dry_run: bool = False, json_out: bool = False) -> None:
    """A check of the standing questions (``qa.watch.Run``): each new finding (JSON Lines
    with ``json_out``), then what was checked and told on stderr."""
    out, checked = stdout(), done.check
    for finding in checked.findings:
        if json_out:
            print(json.dumps(finding.to_dict(), ensure_ascii=False), flush=True)
            continue
        what = "would be reported" if dry_run else "a new finding"
        out.print(labelled(f"Standing question #{finding.watch.id}:", "bold magenta",
                           f"{finding.watch.question} — {what}"), soft_wrap=True)
        render(finding.answer, out)
    if checked.skipped:
        stderr().print(f"standing questions: {SKIPPED[checked.skipped]}", soft_wrap=True)
        return
    sent = sum(t.status == "sent" for t in done.told)
    failed = [t for t in done.told if t.status == "failed"]
    stderr().print(
        f"checked {checked.watches} standing question(s) over {checked.articles} new or changed"
        f" article(s): {len(checked.findings)} new finding(s)"
        + (f"; told {sent}" if done.told else "")
        + (f", {len(failed)} failed (see the log)" if failed else "")
        + (f"; {done.waiting} waiting for a process with SLACK_BOT_TOKEN (qa slack)"
           if done.waiting else ""), soft_wrap=True, markup=False)


def print_watches(rows: list[Any], counts: dict[int, int], json_out: bool = False) -> None:
    """``qa watch list``: each standing question, where it tells, its findings so far (JSON
    Lines with ``json_out``)."""
    from rich.table import Table

    if json_out:
        print_json_lines({**w.to_dict(), "findings": counts.get(w.id, 0)} for w in rows)
        return
    if not rows:
        stdout().print("No standing questions (add one with qa watch add QUESTION).")
        return
    table = Table("id", "question", "tells", "findings")
    for w in rows:
        tells = ", ".join(t for t in (w.slack and f"slack {w.slack}",
                                      w.webhook and f"webhook {w.webhook}") if t) or "terminal"
        table.add_row(str(w.id), safe(w.question), safe(tells), str(counts.get(w.id, 0)))
    stdout().print(table)


def print_watch_added(watch: Any, answer: Any, json_out: bool = False) -> None:
    """``qa watch add``: the new watch, and whether the archive answers it already."""
    if json_out:
        print(json.dumps({"watch": watch.to_dict(), "answered_now": answer.answered},
                         ensure_ascii=False))
        return
    now = ("the archive answers it now: only new findings will be reported" if answer.answered
           else "the archive does not answer it yet")
    stdout().print(safe(f"added standing question #{watch.id}: “{watch.question}” ({now})"),
                   soft_wrap=True, markup=False)


def print_watch_removed(removed: Any, json_out: bool = False) -> None:
    """``qa watch remove``: the watch removed."""
    if json_out:
        print(json.dumps({"removed": removed.to_dict()}, ensure_ascii=False))
        return
    stdout().print(safe(f"removed standing question #{removed.id}: “{removed.question}”"),
                   soft_wrap=True, markup=False)
