"""Standing questions (qa.watch): checked over an update's new and changed articles only,
each finding told once (to a webhook receiver on loopback, the Slack Web API mock, the
terminal), across restarts, repeated updates and two processes."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import NEW_ARTICLE_TEXT, FakeEmbedder, fake_index, word_count
from typer.testing import CliRunner

from cli import app
from index.errors import QuestionError
from index.ingest.job import BuildOptions
from index.ingest.pipeline import update_index
from qa.engine import Engine
from qa.filters import make_filters
from qa.watch import (
    Backoff,
    WatchError,
    Watches,
    Webhook,
    check,
    deliver,
    run,
)

QUESTION = "When did the Zanzibar ferry start running again?"
# The same report by another outlet, reworded a little: a near-duplicate of the finding.
WIRE_COPY = (
    "Zanzibar Ferry Back In Service\n\nMarch 4, 2021\n\nThe Zanzibar ferry started running "
    "again on Monday after a pause of two years, the port authority said on Tuesday.\n"
)
# News that answers the question differently: a new finding.
LATER_NEWS = (
    "Zanzibar Ferry Halted Again\n\nJune 9, 2021\n\nThe Zanzibar ferry stopped running on "
    "Friday after a storm damaged the harbour; the port authority expects to resume sailings "
    "in August.\n"
)


class Receiver:
    """A webhook receiver on loopback: records every POST; ``statuses`` answer the first
    ones (then 200); ``delay`` makes it slow."""

    def __init__(self, statuses=(), delay=0.0):
        self.posts, self.statuses, self.delay = [], list(statuses), delay
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay)
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.posts.append((status, dict(self.headers), json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/s3cret"

    def delivered(self):
        with self.lock:
            return [body for status, _, body in self.posts if status == 200]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def archive(tmp_path):
    """(docs, index, engine opener): the seeds indexed with the fake embedder."""
    docs, index = fake_index(tmp_path)
    embedder = FakeEmbedder()

    def update():
        update_index(docs, index, BuildOptions(embedder=embedder, count_tokens=word_count))
        return Engine(index, embedder=embedder)

    return docs, index, embedder, update


FAST = Webhook(timeout=2, backoff=Backoff(attempts=3, first=0.05))


def _add(index, embedder, question=QUESTION, since=None, **where):
    engine = Engine(index, embedder=embedder)
    watches = Watches.of_index(index)
    try:
        return watches.add(question, engine=engine, filters=make_filters(since=since), **where)
    finally:
        engine.close()
        watches.close()


def _check(engine, **options):
    watches = Watches.of_index(engine.index_dir)
    try:
        return run(engine, watches, [FAST], **options)
    finally:
        watches.close()
        engine.close()


@pytest.mark.parametrize("question, error", [
    ("", "question is empty"), (" \t\x00\x07 ", "question is empty"),
    ("why " * 300, "shorten the standing question"),
])
def test_a_standing_question_is_validated_as_qa_ask_does(archive, question, error):
    docs, index, embedder, _ = archive
    with pytest.raises(QuestionError, match=error):
        _add(index, embedder, question)
    assert Watches.of_index(index).all() == []


@pytest.mark.parametrize("where, error", [
    ({"webhook": "ftp://example.com/x"}, "not an http"), ({"webhook": "https://"}, "not an"),
    ({"slack": "#two words"}, "not a Slack channel"), ({"since": "last week"}, "not a date"),
])
def test_bad_destinations_and_filters_are_one_clear_error(archive, where, error):
    docs, index, embedder, _ = archive
    with pytest.raises((WatchError, QuestionError), match=error):
        _add(index, embedder, **where)


def test_control_characters_are_cleaned_out_of_a_standing_question(archive):
    docs, index, embedder, _ = archive
    watch, _ = _add(index, embedder, "When did the\x1b[2J Zanzibar ferry\u202e resume?")
    assert watch.question == "When did the [2J Zanzibar ferry resume?"


def test_a_new_article_answering_is_told_once_and_repeats_are_not(archive, receiver):
    docs, index, embedder, update = archive
    watch, now = _add(index, embedder, webhook=receiver.url)
    assert not now.answered  # nothing about Zanzibar yet
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    done = _check(update())
    assert [f.watch.id for f in done.check.findings] == [watch.id]
    assert done.check.articles == 1 and done.told[0].status == "sent"
    [body] = receiver.delivered()
    assert body["watch"] == watch.id and body["answered"] is True
    assert body["passages"][0]["citation"]["source"] == "zanzibar"
    assert body["passages"][0]["citation"]["path"] == "zanzibar.txt"  # no server paths
    assert "started running again" in body["passages"][0]["highlight"]["text"]
    assert receiver.posts[0][1]["Idempotency-Key"] == body["finding"]
    # The same version again (a restart, a second process): nothing asked, nothing sent.
    again = _check(Engine(index, embedder=embedder))
    assert again.check.skipped == "checked" and not again.told
    # An unrelated update: the standing question is asked over the new article only.
    (docs / "unrelated.txt").write_text("Local Bakery Wins Prize\n\nMay 2, 2021\n\nA bakery "
                                        "in Leeds won a national prize for its sourdough.\n")
    later = _check(update())
    assert later.check.articles == 1 and later.check.findings == []
    # Wire copy of the same finding in a new article: a near-duplicate, not news.
    (docs / "wire.txt").write_text(WIRE_COPY)
    wire = _check(update())
    assert wire.check.articles == 1 and wire.check.findings == []
    # The article changed (a correction at its end), its answering passage the same: no repeat.
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT + "\nCorrection: an earlier version "
                                       "misspelt the port.\n")
    changed = _check(update())
    assert changed.check.articles == 1 and changed.check.findings == []
    # A different finding is news.
    (docs / "halt.txt").write_text(LATER_NEWS)
    halted = _check(update())
    assert [f.answer.passages[0].citation.source for f in halted.check.findings] == ["halt"]
    assert len(receiver.delivered()) == 2


def test_what_the_archive_answered_when_the_watch_was_added_is_not_news(archive, receiver):
    docs, index, embedder, update = archive
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    update().close()
    watch, now = _add(index, embedder, webhook=receiver.url)
    assert now.answered
    (docs / "wire.txt").write_text(WIRE_COPY)
    done = _check(update())
    assert done.check.articles == 1 and done.check.findings == [] and not receiver.posts


def test_no_new_articles_costs_nothing(archive):
    docs, index, embedder, update = archive
    _add(index, embedder)
    engine = Engine(index, embedder=embedder)
    asked = []
    engine.ask = lambda *a, **k: asked.append(a)  # nothing may be asked
    watches = Watches.of_index(index)
    assert check(engine, watches).skipped == "checked"
    update().close()  # an update with nothing to do publishes nothing
    assert check(engine, watches).skipped == "checked" and asked == []
    watches.close()
    engine.close()


def test_two_processes_agree_who_checks_and_who_sends(archive, receiver):
    docs, index, embedder, update = archive
    _add(index, embedder, webhook=receiver.url)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    update().close()
    engines = [Engine(index, embedder=embedder) for _ in range(4)]
    dbs = [Watches.of_index(index) for _ in engines]
    results = [None] * len(engines)

    def one(i):
        results[i] = run(engines[i], dbs[i], [FAST])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = [r for r in results if r.check.findings]
    assert len(found) == 1
    assert sorted(r.check.skipped or "" for r in results).count("") == 1
    assert len(receiver.delivered()) == 1
    for engine, db in zip(engines, dbs, strict=True):
        engine.close()
        db.close()


def test_a_webhook_is_retried_on_5xx_and_given_up_after_a_bound(archive, caplog):
    docs, index, embedder, update = archive
    flaky, down = Receiver(statuses=[503, 500]), Receiver(statuses=[500] * 10)
    try:
        _add(index, embedder, webhook=flaky.url)
        _add(index, embedder, "Why did the Zanzibar ferry stop running?", webhook=down.url)
        (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
        with caplog.at_level(logging.WARNING, logger="qa.watch"):
            done = _check(update())
        by_url = {t.target: t for t in done.told}
        assert by_url[flaky.url].status == "sent" and len(flaky.posts) == 3
        assert by_url[down.url].status == "failed" and len(down.posts) == 3  # the bound
        assert "gave up telling webhook http://127.0.0.1" in caplog.text
        assert "s3cret" not in caplog.text  # a webhook's path is not logged
        # Given up is recorded: the next run does not send it again.
        again = _check(Engine(index, embedder=embedder))
        assert again.told == [] and len(down.posts) == 3
    finally:
        flaky.close()
        down.close()


def test_a_failing_destination_never_holds_up_the_others(archive, receiver):
    docs, index, embedder, update = archive
    slow = Receiver(delay=2.5)  # longer than FAST's timeout: it times out, three times
    try:
        _add(index, embedder, webhook="http://127.0.0.1:9/closed")  # nothing listens
        _add(index, embedder, "Why did the Zanzibar ferry stop running?", webhook=slow.url)
        _add(index, embedder, "When did the Zanzibar ferry resume service?",
             webhook=receiver.url)
        (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
        engine = update()
        watches = Watches.of_index(index)
        assert len(check(engine, watches).findings) == 3
        told = []
        started = time.monotonic()
        telling = threading.Thread(target=lambda: told.extend(deliver(watches, [FAST])))
        telling.start()
        while not receiver.delivered() and time.monotonic() - started < 5:
            time.sleep(0.02)
        assert receiver.delivered() and time.monotonic() - started < 2  # not behind the slow one
        telling.join()
        assert {t.target: t.status for t in told} == {
            "http://127.0.0.1:9/closed": "failed", slow.url: "failed", receiver.url: "sent"}
        watches.close()
        engine.close()
    finally:
        slow.close()


def test_a_dry_run_reports_and_records_nothing(archive, receiver):
    docs, index, embedder, update = archive
    _add(index, embedder, webhook=receiver.url)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    dry = _check(update(), dry_run=True)
    assert len(dry.check.findings) == 1 and not dry.told and not receiver.posts
    real = _check(Engine(index, embedder=embedder))
    assert len(real.check.findings) == 1 and len(receiver.delivered()) == 1


def test_watches_survive_a_rebuild_of_the_index(archive, receiver):
    from conftest import fake_build

    docs, index, embedder, update = archive
    _add(index, embedder, webhook=receiver.url)
    fake_build(docs, index)  # rebuilt from scratch: same articles, nothing new
    assert _check(Engine(index, embedder=embedder)).check.findings == []
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    assert len(_check(update()).check.findings) == 1


runner = CliRunner()


def test_the_cli_adds_lists_runs_and_removes(archive, receiver):
    docs, index, embedder, _ = archive
    obj = {"embedder": embedder, "count_tokens": word_count}
    where = ["--docs", str(docs), "--index", str(index)]
    added = runner.invoke(app, ["watch", "add", QUESTION, "--webhook", receiver.url, "--json",
                                *where], obj=obj)
    assert added.exit_code == 0, added.output
    watch = json.loads(added.stdout)["watch"]
    assert watch["question"] == QUESTION and watch["webhook"] == receiver.url
    listed = runner.invoke(app, ["watch", "list", "--json", *where])
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [watch["id"]]
    nothing = runner.invoke(app, ["watch", "run", *where], obj=obj)
    assert nothing.exit_code == 0 and "no new or changed articles" in nothing.stderr
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    updated = runner.invoke(app, ["index", "update", *where], obj=obj)
    assert updated.exit_code == 0, updated.output
    assert f"Standing question #{watch['id']}" in updated.stdout
    assert "»The Zanzibar ferry started running again" in updated.stdout
    assert "1 new finding(s); told 1" in updated.stderr
    assert len(receiver.delivered()) == 1
    table = runner.invoke(app, ["watch", "list", *where])
    assert QUESTION[:20] in table.stdout and "webhook" in table.stdout
    removed = runner.invoke(app, ["watch", "remove", str(watch["id"]), "--json", *where])
    assert json.loads(removed.stdout)["removed"]["id"] == watch["id"]
    gone = runner.invoke(app, ["watch", "remove", str(watch["id"]), *where])
    assert gone.exit_code == 1 and "no standing question" in gone.stderr


def test_qa_watch_run_prints_what_it_finds(archive):
    docs, index, embedder, update = archive
    obj = {"embedder": embedder, "count_tokens": word_count}
    where = ["--docs", str(docs), "--index", str(index)]
    assert runner.invoke(app, ["watch", "add", QUESTION, *where], obj=obj).exit_code == 0
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    update().close()
    dry = runner.invoke(app, ["watch", "run", "--dry-run", *where], obj=obj)
    assert dry.exit_code == 0 and "would be reported" in dry.stdout
    done = runner.invoke(app, ["watch", "run", "--json", *where], obj=obj)
    [finding] = [json.loads(line) for line in done.stdout.splitlines()]
    assert finding["passages"][0]["citation"]["source"] == "zanzibar"
    again = runner.invoke(app, ["watch", "run", *where], obj=obj)
    assert again.stdout == "" and "no new or changed articles" in again.stderr


@pytest.mark.parametrize("args, expected", [
    (["watch", "add", ""], "question is empty"),
    (["watch", "add", "Who?", "--webhook", "not a url"], "not an http(s) URL"),
    (["watch", "add", "Who?", "--since", "soon"], "is not a date"),
    (["watch", "remove", "7"], "no standing question #7"),
])
def test_watch_errors_are_one_line(tmp_path, args, expected):
    result = runner.invoke(app, [*args, "--index", str(tmp_path / "ix")])
    assert result.exit_code == 1, result.output
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_watch_commands_have_help_with_an_example():
    for command in ("add", "list", "remove", "run"):
        result = runner.invoke(app, ["watch", command, "--help"])
        assert result.exit_code == 0 and "Example: qa watch" in result.stdout


def test_a_version_already_replaced_is_not_checked(archive, receiver):
    """A server still on the version an update replaced must not check it after the new
    one: the articles that update changed would look new again."""
    docs, index, embedder, update = archive
    _add(index, embedder, webhook=receiver.url)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    old = update()
    (docs / "wire.txt").write_text(WIRE_COPY)
    update().close()
    watches = Watches.of_index(index)
    assert check(old, watches).skipped == "not live"
    assert watches.store.get("checked") is not None and not receiver.posts
    old.close()
    assert len(_check(Engine(index, embedder=embedder)).check.findings) == 1
    watches.close()


def test_qa_fetch_checks_the_standing_questions_after_its_update(archive):
    from test_fetch import Server, Site

    docs, index, embedder, _ = archive
    server = Server(("127.0.0.1", 0), Site)
    Site.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        obj = {"embedder": embedder, "count_tokens": word_count}
        where = ["--docs", str(docs), "--index", str(index)]
        question = "When did the harbor ferry carry its first passengers?"
        assert runner.invoke(app, ["watch", "add", question, *where], obj=obj).exit_code == 0
        fetched = runner.invoke(app, ["fetch", f"{Site.base}/news/ferry.html", *where], obj=obj)
        assert fetched.exit_code == 0, fetched.output
        assert f"Standing question #1: {question} — a new finding" in fetched.stdout
        assert "1 new finding(s)" in fetched.stderr
    finally:
        server.shutdown()
