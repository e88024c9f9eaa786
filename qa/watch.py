"""Standing questions: the archive tells whoever asked when a new article answers.

A watch is a question with where to tell (a Slack channel, a webhook, or only the terminal
of ``qa watch run``), kept in the watch store beside the index (``index.storage.watch_store``).
After every update each watch is asked again over the articles that are new or changed
since the last check only (``Filters.articles``: a filter of the one search, not a second
search of the archive). Its best finding is reported when it passes the answer threshold
and is not one already recorded for that watch: the same passage (the finding id hashes the
watch, the article and the passage text), or a near-duplicate of a finding already
reported or of what the archive answered when the watch was added (the test the ranking's
grouping folds repeated findings with, ``passes.near_duplicate``).

Which articles are new is read off the index, not off the update that made it: the store
keeps a 64-bit fingerprint of every article (source name and content hash) as of the last
check, so a server that slept through two updates, or a second server, sees the same ones.
Who checks a version is settled by a claim in the store; the findings, their deliveries (one
per destination, "pending") and the version checked are recorded in one transaction, and
only then sent. A process killed before that transaction leaves the version unchecked (the
next one checks it again: nothing was sent); killed after it, the next one sends what is
pending. Delivery is at least once: a process killed between sending and marking a
delivery sent sends it again after a restart, with the same finding id for the receiver to
drop (webhooks also get it as ``Idempotency-Key``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from index.errors import QAError, QuestionError
from index.storage.layout import current_version
from index.storage.watch_store import (
    DeliveryRow,
    FindingRow,
    NewFinding,
    WatchRow,
    WatchStore,
    _older_than,
    now,
    watches_path,
)

from .engine import clean_question
from .filters import Filters, today
from .ranking.passes import near_duplicate
from .results import Answer, Citation, Highlight, Passage

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("qa.watch")

# Findings a check asks for per watch: the best one is reported, the others are what
# grouping folds into it ("also reported by").
CHECK_K = 3
# How long a claim (a check, a delivery being sent) holds without a sign of life; a claim of
# a process on this machine that has died is taken over at once.
CLAIM_TTL = 300.0
HEARTBEAT = 10.0
MAX_URL = 2_000
_CHANNEL = re.compile(r"#?[A-Za-z0-9._-]{1,80}")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")


class WatchError(QAError):
    """A standing question that cannot be added or removed as asked."""


# --- the watches ------------------------------------------------------------------------


@dataclass(frozen=True)
class Watch(WatchRow):
    """A standing question and where to tell when a new article answers it (its stored row,
    with what asking it and telling need)."""

    @classmethod
    def of(cls, row: WatchRow) -> Watch:
        return cls(**vars(row))

    def filters(self, articles: frozenset[str] | None = None,
                as_of: str | None = None) -> Filters:
        """The filters it is asked with: its own, as of ``as_of`` (today), over ``articles``."""
        return Filters(source=self.source, since=self.since, as_of=as_of or today(),
                       articles=articles)

    @property
    def targets(self) -> list[tuple[str, str]]:
        """(kind, target) of each destination beside the terminal."""
        return [(kind, target) for kind, target in (("slack", self.slack),
                                                     ("webhook", self.webhook)) if target]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def standing_question(question: str) -> str:
    """A standing question cleaned as ``qa ask`` cleans one (control characters out,
    spaces folded); QuestionError when it is empty or longer than the model reads (a
    standing question is asked again and again: it is refused, not cut)."""
    text, warnings = clean_question(question)
    if warnings:
        raise QuestionError(warnings[0].replace("using its first", "it would be cut to its "
                                                "first") + ": shorten the standing question")
    return text


def check_webhook(url: str | None) -> str | None:
    """An http(s) URL with a host, or None; WatchError otherwise."""
    if url is None or not url.strip():
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL \
            or any(ch.isspace() for ch in url):
        raise WatchError(f"--webhook {url[:80]!r} is not an http(s) URL: give the full address"
                         ", e.g. https://example.com/hooks/qa")
    return url


def check_channel(channel: str | None) -> str | None:
    """A Slack channel ID (C0123ABCD) or name (#news), or None; WatchError otherwise."""
    if channel is None or not channel.strip():
        return None
    channel = channel.strip()
    if not _CHANNEL.fullmatch(channel):
        raise WatchError(f"--slack {channel[:80]!r} is not a Slack channel: give its ID "
                         "(C0123ABCD, the last part of its link) or #name")
    return channel


class Watches:
    """The standing questions of one index, and what was found and sent for them."""

    def __init__(self, store: WatchStore):
        self.store = store

    @classmethod
    def of_index(cls, index_dir: Path) -> Watches:
        return cls(WatchStore(watches_path(index_dir)))

    @staticmethod
    def exists_for(index_dir: Path) -> bool:
        return watches_path(index_dir).exists()

    def add(self, question: str, *, slack: str | None = None, webhook: str | None = None,
            filters: Filters | None = None, user: str | None = None, via: str | None = None,
            engine: Engine | None = None,
            as_of: str | None = None) -> tuple[Watch, Answer | None]:
        """Add a watch (its question validated as ``qa ask`` validates one; ``filters``:
        from ``make_filters``, their ``source`` and ``since`` kept with it).

        With ``engine`` (the index as it is now) the archive's current answer (as of
        ``as_of``, default today) is returned and recorded as the watch's baseline: a later
        article repeating it is not news. The first watch also marks every article now in
        the index as seen."""
        text = standing_question(question)
        filters = filters or Filters()
        slack, webhook = check_channel(slack), check_webhook(webhook)
        first = not self.store.watches()
        row = self.store.add_watch(text, slack=slack, webhook=webhook, source=filters.source,
                                   since=filters.since, user=user, via=via)
        watch = Watch.of(row)
        answer = None
        if engine is not None:
            if first:
                fingerprints, _ = article_fingerprints(engine)
                self.store.set_state(checked=engine.store.version.name,
                                     seen=fingerprints.tobytes())
            answer = engine.ask(text, k=CHECK_K, filters=watch.filters(as_of=as_of))
            version = engine.store.version.name
            self.store.add_baseline([
                _row(watch, passage, "baseline", version, answer)
                for passage in answer.passages])
        return watch, answer

    def all(self, slack: str | None = None) -> list[Watch]:
        return [Watch.of(row) for row in self.store.watches(slack)]

    def get(self, watch: int) -> Watch | None:
        row = self.store.watch(watch)
        return Watch.of(row) if row else None

    def remove(self, watch: int, slack: str | None = None) -> Watch:
        """Remove a watch (with ``slack``: only one telling that channel); WatchError when
        there is no such watch."""
        found = self.get(watch)
        if found is None or (slack is not None and found.slack != slack):
            where = " in this channel" if slack is not None else ""
            raise WatchError(f"no standing question #{watch}{where}: list them with "
                             + ("/ask watches" if slack is not None else "qa watch list"))
        self.store.remove_watch(watch)
        return found

    def counts(self) -> dict[int, int]:
        """Findings reported per watch id."""
        return self.store.counts()

    def findings(self, watch: int) -> list[Finding]:
        """The findings reported for a watch, oldest first."""
        found = self.get(watch)
        if found is None:
            return []
        return [Finding.of(row, found) for row in self.store.findings(watch, "found")]

    def close(self) -> None:
        self.store.close()


# --- findings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A new finding for a watch: ``answer`` holds it as its one passage."""

    id: str
    watch: Watch
    answer: Answer
    version: str | None
    time: str = ""

    @classmethod
    def of(cls, row: FindingRow, watch: Watch) -> Finding:
        return cls(row.id, watch, answer_from_dict(row.answer or {}), row.version, row.time)

    def to_dict(self) -> dict[str, Any]:
        """The ``qa ask --json`` object of the finding, with the watch and finding ids."""
        return {"watch": self.watch.id, "finding": self.id, "version": self.version,
                **self.answer.to_dict()}


def finding_id(watch: int, passage: Passage) -> str:
    """The same passage of the same article for the same watch: the same id."""
    text = " ".join(passage.text.split())
    key = f"{watch}\n{passage.citation.source}\n{text}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def sentences_of(text: str) -> list[str]:
    """A passage's sentences, for telling a repeated finding (punctuation-split)."""
    return [part for part in (p.strip() for p in _SENTENCE_END.split(text)) if part]


def _row(watch: Watch, passage: Passage, kind: str, version: str, answer: Answer,
         docs_dir: str | None = None) -> FindingRow:
    one = Answer(answer.question, answer.answered, [passage], reason=answer.reason)
    data = one.to_dict(show_weak=True)
    if docs_dir:  # told elsewhere: paths relative to the docs folder, as the HTTP API's
        for citation in [p for found in data["passages"]
                         for p in (found["citation"], *found["also"])]:
            if os.path.isabs(citation["path"] or ""):
                citation["path"] = os.path.relpath(citation["path"], docs_dir)
    return FindingRow(finding_id(watch.id, passage), watch.id, kind, now(), version,
                      passage.citation.source,
                      passage.highlight.text if passage.highlight else None,
                      sentences_of(passage.text), data)


def repeats(passage: Passage, recorded: Iterable[FindingRow], engine: Engine) -> bool:
    """Whether ``passage`` is a finding already recorded: the same id, or a near-duplicate
    either way (its answering sentence in the recorded passage, or the recorded one's in
    it), as grouping folds a repeated finding."""
    mine = passage.highlight.text if passage.highlight else passage.text
    sentences = sentences_of(passage.text)
    analyzer, config = engine.analyzer, engine.ranking
    for row in recorded:
        theirs = row.highlight or ""
        if any(near_duplicate(mine, s, analyzer, config) for s in row.sentences or [theirs]):
            return True
        if theirs and any(near_duplicate(theirs, s, analyzer, config) for s in sentences):
            return True
    return False


def answer_from_dict(data: dict[str, Any]) -> Answer:
    """An ``Answer`` back from its JSON object (``Answer.to_dict``)."""
    passages = []
    for p in data.get("passages") or []:
        highlight = Highlight(**p["highlight"]) if p.get("highlight") else None
        passages.append(Passage(p["rank"], p["score"], p["text"], highlight,
                                Citation(**p["citation"]),
                                [Citation(**c) for c in p.get("also") or []]))
    return Answer(data.get("question") or "", bool(data.get("answered")), passages,
                  reason=data.get("reason"))


# --- which articles are new ------------------------------------------------------------


def article_fingerprints(engine: Engine) -> tuple[np.ndarray, list[str]]:
    """A sorted 64-bit fingerprint per live article (source name and content hash), and
    the source names in the same order."""
    pairs = []
    for source, sha256 in engine.store.article_hashes():
        digest = hashlib.blake2b(f"{source}\0{sha256}".encode("utf-8", "surrogatepass"),
                                 digest_size=8).digest()
        pairs.append((int.from_bytes(digest, "little", signed=True), source))
    pairs.sort()
    prints = np.fromiter((p for p, _ in pairs), dtype=np.int64, count=len(pairs))
    return prints, [s for _, s in pairs]


def new_articles(engine: Engine, seen: bytes | None) -> tuple[np.ndarray, frozenset[str]]:
    """(every live article's fingerprint, the source names of those not in ``seen``)."""
    prints, sources = article_fingerprints(engine)
    if seen is None:
        return prints, frozenset()
    known = np.frombuffer(seen, dtype=np.int64)
    fresh = ~np.isin(prints, known, assume_unique=True)
    return prints, frozenset(s for s, new in zip(sources, fresh.tolist(), strict=True) if new)


# --- checking -------------------------------------------------------------------------------


@dataclass
class Check:
    """What one check of a version did."""

    version: str
    articles: int = 0  # new or changed articles asked over
    watches: int = 0  # standing questions asked
    findings: list[Finding] = field(default_factory=list)
    # Why nothing was asked: "checked", "claimed", "no watches", "not live" (replaced).
    skipped: str | None = None
    seconds: float = 0.0


def owner_id() -> str:
    """Who holds a claim: this machine, this process, and a token for this holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def alive(owner: str, heartbeat: str) -> bool:
    """Whether the holder of a claim may still be working: a process on this machine that
    is still running, or any holder whose last sign of life is younger than CLAIM_TTL."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's process: running
    return not _older_than(heartbeat, CLAIM_TTL)


def check(engine: Engine, watches: Watches, *, owner: str | None = None,
          as_of: str | None = None, dry_run: bool = False, confirm: bool = True) -> Check:
    """Ask every watch over the articles new or changed since the last check of this index
    and record (then return) the new findings; ``dry_run`` records nothing. Costs nothing
    when the version was checked already; another process's live claim on it skips it.
    ``confirm`` (default) keeps a finding only if its article is among the whole archive's
    top findings for the question now (``stands``)."""
    started = time.monotonic()
    store = watches.store
    version = engine.store.version.name
    result = Check(version)
    rows = watches.all()
    if not rows:
        result.skipped = "no watches"
        return result
    if store.get("checked") == version and not dry_run:
        result.skipped = "checked"
        return result
    if not _live(engine):
        # A server still on the version an update replaced: the new one is checked (by
        # whoever switches first), never an older one after it.
        result.skipped = "not live"
        return result
    owner = owner or owner_id()
    if not dry_run and not store.claim(version, owner, alive):
        result.skipped = "claimed"
        return result
    try:
        prints, fresh = new_articles(engine, store.get("seen"))
        if store.get("seen") is None:
            log.info("watches on %s: first check, every article counts as seen",
                     engine.index_dir)
        result.articles = len(fresh)
        pending = _ask_all(engine, store, rows, fresh, as_of,
                           lambda: store.heartbeat(owner), confirm)
        result.watches = len(rows) if fresh else 0
        if not dry_run:
            written = set(store.record(version, owner, prints.tobytes(), pending))
            pending = [item for item in pending if item.row.id in written]
    except BaseException:
        if not dry_run:
            store.release(owner)
        raise
    by_id = {w.id: w for w in rows}
    result.findings = [Finding.of(item.row, by_id[item.row.watch]) for item in pending]
    result.seconds = time.monotonic() - started
    for finding in result.findings:
        log.info("standing question #%d: a new finding in %s (finding %s)",
                 finding.watch.id, finding.answer.passages[0].citation.source, finding.id)
    return result


def _live(engine: Engine) -> bool:
    try:
        return current_version(engine.index_dir).name == engine.store.version.name
    except QAError:
        return False


def stands(engine: Engine, watch: Watch, passage: Passage, as_of: str | None) -> bool:
    """Whether the whole archive, asked ``watch``'s question now, gives ``passage``'s article
    among its top findings (first, or also reported by): a new article that passes the
    threshold only among the new ones, below what the archive already says, is not news."""
    answer = engine.ask(watch.question, k=CHECK_K, filters=watch.filters(None, as_of))
    source = passage.citation.source
    return any(source == p.citation.source or any(c.source == source for c in p.also)
               for p in answer.passages)


def _ask_all(engine: Engine, store: WatchStore, rows: Sequence[Watch], fresh: frozenset[str],
             as_of: str | None, heartbeat: Callable[[], None],
             confirm: bool = True) -> list[NewFinding]:
    """Each watch asked over the ``fresh`` articles: its new finding, if any."""
    if not fresh:
        return []
    version = engine.store.version.name
    found: list[NewFinding] = []
    beat = time.monotonic()
    for watch in rows:
        if time.monotonic() - beat > HEARTBEAT:
            heartbeat()
            beat = time.monotonic()
        try:
            answer = engine.ask(watch.question, k=CHECK_K,
                                filters=watch.filters(fresh, as_of))
        except QuestionError as error:  # a watch stored before a rule changed
            log.warning("standing question #%d cannot be asked: %s", watch.id, error)
            continue
        if not answer.answered or not answer.passages:
            continue
        best = answer.passages[0]
        row = _row(watch, best, "found", version, answer,
                   engine.store.manifest.get("docs_dir"))
        recorded = store.findings(watch.id)
        if any(r.id == row.id for r in recorded) or repeats(best, recorded, engine):
            continue
        if confirm and not stands(engine, watch, best, as_of):
            continue
        found.append(NewFinding(row, watch.targets))
    return found


# --- telling ---------------------------------------------------------------------------------


class Undelivered(Exception):
    """A delivery that did not go through; ``retry``: whether trying again may help."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


class Destination:
    """Where findings are told: one kind of target ("slack": a channel, "webhook": a URL)."""

    kind = ""

    def send(self, finding: Finding, target: str) -> None:
        """Tell ``target`` of ``finding`` once; Undelivered when that failed."""
        raise NotImplementedError


@dataclass(frozen=True)
class Backoff:
    """Tries of one delivery: ``attempts`` in all, waiting ``first`` seconds before the
    second and twice as long before each next one (1 + 2 + 4 + 8 s by default)."""

    attempts: int = 5
    first: float = 1.0

    def run(self, send: Callable[[], None], stop: threading.Event | None = None) -> int:
        """Call ``send`` until it goes through; the attempts it took. Undelivered (the last
        failure) once a failure is final or the attempts are spent."""
        for attempt in range(1, self.attempts + 1):
            try:
                send()
                return attempt
            except Undelivered as error:
                if not error.retry or attempt == self.attempts:
                    raise Undelivered(f"{error} (attempt {attempt} of {self.attempts})",
                                      error.retry) from None
                pause = self.first * 2 ** (attempt - 1)
                if stop is not None and stop.wait(pause):
                    raise Undelivered(f"{error} (stopped after attempt {attempt})",
                                      True) from None
                if stop is None:
                    time.sleep(pause)
        raise AssertionError("unreachable")


DEFAULT_BACKOFF = Backoff()


def site(url: str) -> str:
    """A webhook's scheme and host, for logs (its path may hold a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class Webhook(Destination):
    """One JSON POST per finding (``Finding.to_dict``; ``Idempotency-Key``: its id). A 5xx,
    429, timeout or connection failure is tried again (``Backoff``); another 4xx is final."""

    kind = "webhook"

    def __init__(self, timeout: float = 10.0, backoff: Backoff = DEFAULT_BACKOFF):
        self.timeout, self.backoff = timeout, backoff
        self.stop: threading.Event | None = None

    def send(self, finding: Finding, target: str) -> None:
        body = json.dumps(finding.to_dict(), ensure_ascii=False).encode()
        self.backoff.run(lambda: self._post(target, body, finding.id), self.stop)

    def _post(self, url: str, body: bytes, key: str) -> None:
        import http.client
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "qa-watch/1",
            "Idempotency-Key": key})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as error:
            raise Undelivered(f"HTTP {error.code}", error.code >= 500 or error.code == 429) \
                from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise Undelivered(f"{type(error).__name__}: {reason}", True) from None


@dataclass(frozen=True)
class Told:
    """What became of one delivery."""

    watch: int
    finding: str
    kind: str
    target: str | None
    status: str  # "sent" or "failed"
    error: str | None = None


def deliver(watches: Watches, destinations: Sequence[Destination], *,
            owner: str | None = None, workers: int = 4,
            stop: threading.Event | None = None) -> list[Told]:
    """Send every pending delivery of the kinds ``destinations`` can (others wait for a
    process that can, e.g. Slack's for one with a bot token), ``workers`` at a time, so a
    slow or failing destination holds up only its own deliveries."""
    by_kind = {d.kind: d for d in destinations}
    owner = owner or owner_id()
    waiting = watches.store.waiting(list(by_kind))
    if not waiting:
        return []
    told: list[Told] = []
    lock = threading.Lock()

    def drain() -> None:
        while stop is None or not stop.is_set():
            row = watches.store.take_delivery(owner, list(by_kind), alive)
            if row is None:
                return
            outcome = _send(watches, row, by_kind[row.kind])
            with lock:
                told.append(outcome)

    with ThreadPoolExecutor(min(workers, waiting), thread_name_prefix="qa-tell") as pool:
        for future in [pool.submit(drain) for _ in range(min(workers, waiting))]:
            future.result()
    return told


def _send(watches: Watches, row: DeliveryRow, destination: Destination) -> Told:
    store = watches.store
    watch, found = watches.get(row.watch), store.finding(row.finding)
    if watch is None or found is None:
        store.delivered(row.id, "failed", "the standing question was removed")
        return Told(row.watch, row.finding, row.kind, row.target, "failed", "removed")
    where = site(row.target or "") if row.kind == "webhook" else row.target
    try:
        destination.send(Finding.of(found, watch), row.target or "")
    except Undelivered as error:
        log.warning("gave up telling %s %s of standing question #%d's finding %s: %s",
                    row.kind, where, watch.id, found.id, error)
        store.delivered(row.id, "failed", str(error))
        return Told(watch.id, found.id, row.kind, row.target, "failed", str(error))
    except Exception as error:  # a destination's own bug must not stop the others
        log.exception("telling %s %s of finding %s failed", row.kind, where, found.id)
        store.delivered(row.id, "failed", f"{type(error).__name__}: {error}")
        return Told(watch.id, found.id, row.kind, row.target, "failed", str(error))
    store.delivered(row.id, "sent")
    log.info("told %s %s of standing question #%d's finding %s", row.kind, where, watch.id,
             found.id)
    return Told(watch.id, found.id, row.kind, row.target, "sent")


@dataclass
class Run:
    """A check of the index as it is, then the deliveries sent."""

    check: Check
    told: list[Told] = field(default_factory=list)
    waiting: int = 0  # deliveries left for a process that can send them (Slack's)


def run(engine: Engine, watches: Watches, tell: Sequence[Destination], *,
        dry_run: bool = False, as_of: str | None = None) -> Run:
    """Check the index (``check``) and send what is pending (``deliver``); ``dry_run``
    records and sends nothing."""
    owner = owner_id()
    result = Run(check(engine, watches, owner=owner, as_of=as_of, dry_run=dry_run))
    if not dry_run:
        result.told = deliver(watches, tell, owner=owner)
        result.waiting = len(list(iter_pending(watches)))
    return result


# --- in a server ------------------------------------------------------------------------------


class Runner:
    """Checks and tells from a long-running server (``qa serve``, ``qa slack``): every
    ``every`` seconds it looks whether the version served was checked (a read of one row),
    checks it when not (after each switch to a new version), and sends what is pending in
    background threads, so a slow destination never holds up a check."""

    def __init__(self, service: Any, destinations: Sequence[Destination], *,
                 every: float = 2.0, workers: int = 4, watches: Watches | None = None):
        self.service, self.destinations = service, list(destinations)
        self.every, self.workers = every, workers
        self.owner = owner_id()
        self._watches = watches
        self._stop = threading.Event()
        self._telling = threading.Lock()
        self._thread: threading.Thread | None = None
        self.checks = 0
        for destination in self.destinations:
            if isinstance(destination, Webhook):
                destination.stop = self._stop

    def watches(self) -> Watches | None:
        """The served index's watches (None until a watch exists: nothing is created)."""
        if self._watches is None:
            index_dir = self.service.index_dir
            if not Watches.exists_for(index_dir):
                return None
            self._watches = Watches.of_index(index_dir)
        return self._watches

    def start(self) -> Runner:
        self._thread = threading.Thread(target=self._loop, name="qa-watch", daemon=True)
        self._thread.start()
        return self

    def run_once(self) -> Check | None:
        watches = self.watches()
        if watches is None:
            return None
        with self.service.leased() as engine:
            result = check(engine, watches, owner=self.owner)
        if not result.skipped:
            self.checks += 1
            log.info("checked %d standing question(s) over %d new or changed article(s) of "
                     "%s: %d finding(s) in %.1f s", result.watches, result.articles,
                     result.version, len(result.findings), result.seconds)
        self._tell(watches)
        return result

    def _tell(self, watches: Watches) -> None:
        if self._telling.locked() or not watches.store.waiting(
                [d.kind for d in self.destinations]):
            return

        def run() -> None:
            with self._telling:
                deliver(watches, self.destinations, owner=self.owner, workers=self.workers,
                        stop=self._stop)

        threading.Thread(target=run, name="qa-tell", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # never let the thread die; the next round tries again
                log.exception("checking the standing questions failed")
            self._stop.wait(self.every)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._telling:  # a delivery being sent finishes (bounded by its backoff)
            pass
        if self._watches is not None:
            self._watches.close()


def iter_pending(watches: Watches) -> Iterator[DeliveryRow]:
    """Deliveries not sent yet (pending, or being sent)."""
    for status in ("pending", "sending"):
        yield from watches.store.deliveries(status)
