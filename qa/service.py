"""The long-running service every server front end asks: one warm index shared by many
questions, a bounded queue, deadlines, a watcher that moves to each new version without a
restart, the article behind a citation, and the feedback recorded on answers.

Front ends (``qa.api``, ``qa.slack``, ``qa.web``) ask a ``Service``, never its engine or
store: a reload may swap the engine between two reads.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from index.errors import QAError
from index.models.embedder import OnnxEmbedder
from index.storage.layout import current_version

from .cite import article
from .engine import Engine
from .feedback import Feedback
from .filters import Filters, make_filters, today
from .processes import Pool, Spec
from .results import Answer

log = logging.getLogger("qa.app")


class Busy(QAError):
    """Every answering slot and queue place is taken: try again shortly (HTTP 503)."""


class TimedOut(QAError):
    """The question waited or ran longer than the service's per-request limit (HTTP 503)."""


class Service:
    """One warm index shared by long-running front ends (the HTTP API, the Slack bot).

    Questions are answered by ``workers`` threads (onnxruntime, FAISS and numpy release the
    GIL; the engine's caches are thread-safe) with at most ``queue`` more waiting: beyond that
    ``submit`` raises Busy at once rather than letting latency grow without bound. A question
    still waiting when its deadline (``timeout`` seconds) passes is dropped unanswered, and a
    front end can ``cancel`` the future of a question nobody waits for any more. With
    ``processes`` above one, ``processes`` answering processes (``qa.processes``) answer,
    ``workers`` questions each at a time, and this process only hands questions out.

    A watcher thread follows ``CURRENT``: when an update publishes a new version it opens and
    warms it, then switches new questions to it; the old engine (and its lease on the old
    version) is closed when its last question is done. Nothing restarts. Each answering
    process does the same for itself.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        workers: int = 2,
        queue: int = 16,
        timeout: float = 30.0,
        reload_every: float | None = 1.0,
        warm: bool = True,
        processes: int = 1,
        feedback: Feedback | None = None,
    ):
        from concurrent.futures import ThreadPoolExecutor

        self.engine = engine
        slots = workers * max(1, processes)
        self.workers, self.queue, self.timeout = slots, queue, timeout
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="qa-answer")
        self._slots = threading.BoundedSemaphore(slots + queue)
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}  # questions running per engine (by id)
        self._retired: list[Engine] = []
        self._stop = threading.Event()
        self._feedback = feedback
        self.model_loaded = False
        self.reloads = 0
        self.reload_error: str | None = None
        self.pending = 0
        self.answered = 0
        self._processes: Pool | None = None
        if processes > 1:
            spec = Spec(engine.index_dir, engine.given_embedder, engine.ranking,
                        engine.model_cache, threads=workers, timeout=timeout)
            self._processes = Pool(answering_process, spec, processes)
            self.model_loaded = True  # each process warmed itself before saying ready
        elif warm:
            self.warm()
        self._watcher: threading.Thread | None = None
        if reload_every:
            self._watcher = threading.Thread(
                target=self._watch, args=(reload_every,), name="qa-reload", daemon=True
            )
            self._watcher.start()

    def warm(self, engine: Engine | None = None) -> None:
        """Load the query model, documents and keyword index now, not on the first request."""
        (engine or self.engine).ask("What does the archive say?", k=1)
        self.model_loaded = True

    # --- what front ends ask -----------------------------------------------------------

    @property
    def version(self) -> str:
        """The name of the index version new questions go to."""
        return self.engine.store.version.name

    @property
    def index_dir(self) -> Path:
        return self.engine.index_dir

    @property
    def docs_dir(self) -> str | None:
        """The docs folder the served index was built from (citations' paths are in it)."""
        return self.engine.store.manifest.get("docs_dir")

    @property
    def stopwords(self) -> frozenset[str]:
        """The stop words of the served index's analyzer."""
        return frozenset(self.engine.analyzer.stopwords)

    def show(self, source: str) -> tuple[dict[str, Any], list[str]]:
        """The article ``source`` names, as citations refer to it (``qa.cite.article``),
        read from the warm store."""
        with self.leased() as engine:
            return article(engine.store, source)

    @contextmanager
    def leased(self) -> Iterator[Engine]:
        """The engine serving now, kept open until the block ends even if a reload switches
        new questions to another version meanwhile. (With answering processes, this
        process's engine: asking it loads the model here too.)"""
        engine = self._acquire()
        try:
            yield engine
        finally:
            self._release(engine)

    @property
    def feedback(self) -> Feedback:
        """The feedback database beside the served index (opened on first use)."""
        with self._lock:
            if self._feedback is None:
                self._feedback = Feedback.of_index(self.engine.index_dir)
            return self._feedback

    def record_shown(self, answer: Answer, *, as_of: str | None = None,
                     user: str | None = None, channel: str | None = None,
                     via: str | None = None) -> int:
        """Record ``answer`` as shown with buttons, with the version that gave it; its id."""
        return self.feedback.shown(answer, as_of=as_of, user=user, channel=channel, via=via,
                                   version=answer.version)

    def judge(self, answer: int, verdict: str, *, rank: int | None = None,
              source: str | None = None, user: str | None = None) -> int:
        """Record a verdict on a shown answer (``Feedback.judge``)."""
        return self.feedback.judge(answer, verdict, rank=rank, source=source, user=user)

    def findings(self, answer: int) -> list[dict[str, Any]]:
        """The findings shown with a recorded answer."""
        return self.feedback.findings(answer)

    # --- answering ---------------------------------------------------------------------

    def submit(
        self,
        question: str,
        k: int = 5,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        filters: Filters | None = None,
        as_of: str | None = None,
    ) -> Future[Answer]:
        """Queue a question; QuestionError for bad filters, Busy when the queue is full.
        Answers are as of ``as_of`` (default: today); each says the version that gave it."""
        if filters is None:
            filters = make_filters(source, since, until, as_of or today())
        if not self._slots.acquire(blocking=False):
            raise Busy("the archive is answering as many questions as it can: try again shortly")
        deadline = time.monotonic() + self.timeout
        with self._lock:
            self.pending += 1
        try:
            future = self._pool.submit(self._answer, question, k, filters, deadline)
        except RuntimeError:  # shut down
            self._done(None)
            raise Busy("the service is stopping") from None
        future.add_done_callback(self._done)
        return future

    def ask(self, question: str, k: int = 5, **filters: Any) -> Answer:
        """``submit`` and wait for the answer (TimedOut past the service's limit)."""
        from concurrent.futures import TimeoutError as FutureTimeout

        future = self.submit(question, k, **filters)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()
            raise TimedOut(f"no answer within {self.timeout:g} s: try again") from None

    def _done(self, future: Any) -> None:
        with self._lock:
            self.pending -= 1
            self.answered += future is not None and not future.cancelled()
        self._slots.release()

    def _answer(self, question: str, k: int, filters: Filters, deadline: float) -> Answer:
        if time.monotonic() > deadline:
            raise TimedOut(f"no answer within {self.timeout:g} s: try again")
        if self._processes is not None:
            answer: Answer = self._processes.ask({"question": question, "k": k,
                                                  "filters": filters})
            return answer
        engine = self._acquire()
        try:
            answer = engine.ask(question, k=k, filters=filters)
            answer.version = engine.store.version.name  # the engine that answered
        finally:
            self._release(engine)
        self.model_loaded = True
        return answer

    def _acquire(self) -> Engine:
        with self._lock:
            engine = self.engine
            self._users[id(engine)] = self._users.get(id(engine), 0) + 1
            return engine

    def _release(self, engine: Engine) -> None:
        with self._lock:
            self._users[id(engine)] -= 1
            idle = [e for e in self._retired if not self._users.get(id(e))]
            self._retired = [e for e in self._retired if e not in idle]
        for old in idle:
            self._users.pop(id(old), None)
            old.close()

    # --- following updates -------------------------------------------------------------

    def _serves_current(self) -> bool:
        """Whether this process's engine reads the version ``CURRENT`` names now."""
        try:
            return current_version(self.engine.index_dir) == self.engine.store.version
        except QAError:
            return False

    def current(self) -> bool:
        """Whether every question now goes to the version ``CURRENT`` names (in every
        answering process)."""
        if not self._serves_current():
            return False
        version = self.version
        return all(s.get("version") == version for s in self._statuses())

    def reload(self) -> bool:
        """Switch to the live version if it is not the one served; True if it switched. On
        failure the old version keeps answering and ``reload_error`` says why."""
        if self._serves_current():
            return False
        old = self.engine
        try:
            if self._processes is None:  # the encoders already loaded serve the new version
                new = Engine(old.index_dir, embedder=old.given_embedder, ranking=old.ranking,
                             model_cache=getattr(old, "model_cache", None), previous=old)
                self.warm(new)
            else:  # the processes answer: no encoders here
                new = Engine(old.index_dir, embedder=old.given_embedder, ranking=old.ranking,
                             model_cache=old.model_cache)
        except QAError as error:
            if self.reload_error != str(error):
                log.warning("still serving %s: %s", old.store.version.name, error)
            self.reload_error = str(error)
            return False
        with self._lock:
            self.engine = new
            self.reloads += 1
            self.reload_error = None
            busy = self._users.get(id(old), 0) > 0
            if busy:
                self._retired.append(old)
        if not busy:
            old.close()
        log.info("now serving %s", new.store.version.name)
        return True

    def _watch(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.reload()
            except Exception:  # never let the watcher die; the next round tries again
                log.exception("reloading the index failed")

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._processes is not None:
            self._processes.close()
        with self._lock:
            engines = [self.engine, *self._retired]
        for engine in engines:
            engine.close()
        if self._feedback is not None:
            self._feedback.close()

    # --- health ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """This process: its id, the version it serves, whether that is current, its
        reloads and ONNX sessions."""
        return {"pid": os.getpid(), "version": self.version,
                "current": self._serves_current(), "reloads": self.reloads,
                "reload_error": self.reload_error, "model_loads": OnnxEmbedder.loads}

    def _statuses(self) -> list[dict[str, Any]]:
        """Each answering process's status (this process's when it answers itself)."""
        if self._processes is None:
            return [{**self.status(), "answered": self.answered, "running": True}]
        return self._processes.statuses()

    def health(self, paths: bool = False) -> dict[str, Any]:
        """What is served: the version and whether every process answers from it (``current``),
        its size and model, the load (questions running or waiting), how often each process
        loaded the model, and each answering process's state. Absolute paths only with
        ``paths``."""
        engine = self.engine
        manifest = engine.store.manifest
        processes = self._statuses()
        current = self.current()
        stale = self.reload_error or next(
            (p["reload_error"] for p in processes if p.get("reload_error")), None)
        data = {
            "status": "ok" if current or stale is None else "stale",
            "index_loaded": True,
            "version": engine.store.version.name,
            "current": current,
            "reloads": self.reloads,
            "reload_error": stale,
            "documents": manifest["counts"]["documents"],
            "passages": manifest["counts"]["passages"],
            "model": manifest["model"]["name"],
            "built": manifest.get("created"),
            "updated": manifest.get("updated"),
            "model_loaded": self.model_loaded,
            # ONNX sessions a process created: 2 (the two encoders) however many updates.
            "model_loads": max(p.get("model_loads", 0) for p in processes),
            "workers": self.workers,
            "queue": self.queue,
            "pending": self.pending,
            "processes": [{k: p.get(k) for k in ("pid", "version", "current", "answered",
                                                 "running")} for p in processes],
        }
        if paths:
            data["index"] = str(engine.index_dir)
        return data


def answering_process(conn: Any, spec: Spec) -> None:
    """The life of an answering process (``qa.processes``): open and warm the index, say
    ready, answer what the front sends with a Service of its own (which follows updates),
    report the version it serves when that changes, and stop when the front closes the
    pipe."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the front, which stops this
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                        f"[{os.getpid()}]: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    lock = threading.Lock()

    def send(call: int | None, kind: str, value: Any) -> None:
        with lock:
            try:
                conn.send((call, kind, value))
            except (OSError, ValueError):
                pass  # the front has gone
            except Exception:  # an exception that does not pickle: send what it says
                conn.send((call, kind, QAError(str(value))))

    try:
        engine = Engine(spec.index_dir, embedder=spec.embedder, ranking=spec.ranking,
                        model_cache=spec.model_cache)
        service = Service(engine, workers=spec.threads, queue=spec.threads,
                          timeout=spec.timeout)
    except Exception as error:
        send(None, "failed", error if isinstance(error, QAError) else QAError(repr(error)))
        return
    send(None, "ready", service.status())
    stop = threading.Event()
    threading.Thread(target=_report, args=(service, send, stop), daemon=True).start()
    try:
        _answer_requests(conn, service, send)
    finally:
        stop.set()
        service.close()


def _answer_requests(conn: Any, service: Service, send: Any) -> None:
    def reply(call: int, future: Future[Answer]) -> None:
        if future.cancelled():  # the service is closing
            send(call, "error", QAError("the answering process is stopping: try again"))
            return
        error = future.exception()
        send(call, "error" if error else "ok", error or future.result())

    while True:
        try:
            call, _, request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            future = service.submit(request["question"], request["k"],
                                    filters=request["filters"])
        except QAError as error:
            send(call, "error", error)
            continue
        future.add_done_callback(functools.partial(reply, call))


def _report(service: Service, send: Any, stop: threading.Event) -> None:
    """Tell the front this process's status whenever it changes (a reload, say)."""
    last = service.status()
    while not stop.wait(0.2):
        now = service.status()
        if now != last:
            send(None, "status", now)
            last = now
