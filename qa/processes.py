"""Answering processes: a Service's questions answered by N processes instead of by threads of
its own, so the Python half of N answers runs at once (each process has its own interpreter
lock; in one process the answering threads take turns).

Each process opens the index itself (its own lease on the version it reads), warms it and
runs a Service of its own, whose watcher moves it to each new version as a single process's
does; it tells the front which version it serves whenever that changes. The front hands a
question to the process with the fewest in hand and waits for the answer over a pipe. A
process that dies is replaced; the questions it held fail (503) instead of hanging.

Messages are ``(call, kind, value)`` tuples: the front sends ``(call, "ask", request)``;
a process answers ``(call, "ok", answer)`` or ``(call, "error", exception)`` and, unasked,
``(None, "ready" | "failed" | "status", value)``.

A command run in the foreground ends on SIGTERM as on Ctrl-C: ``sigterm_raises`` makes the
signal raise ``Terminated`` in the main thread, so every ``finally`` runs (a build stops its
embedding worker processes and leaves the index as it was).
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.errors import QAError

log = logging.getLogger("qa.processes")

STOPPED = "an answering process stopped while answering: try again"


class Terminated(BaseException):
    """SIGTERM arrived (raised in the main thread, so ``finally`` blocks run)."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` while this runs, then the handler it replaced is back.
    Outside the main thread, where handlers cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Spec:
    """What an answering process needs to open and serve the index."""

    index_dir: Path
    embedder: Any = None  # None: the model the index names
    ranking: Any = None
    model_cache: Path | None = None
    threads: int = 2  # questions each process answers at once
    timeout: float = 30.0


Target = Callable[[Any, Spec], None]


class Worker:
    """One answering process and the pipe to it."""

    def __init__(self, context: Any, target: Target, spec: Spec):
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=target, args=(theirs, spec), daemon=True,
                                       name="qa-answering")
        self.process.start()
        theirs.close()
        self.status: dict[str, Any] = {}
        self.in_hand = self.answered = 0
        self.on_exit: Callable[[Worker], None] | None = None
        self._calls: dict[int, Future[Any]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._open = False

    def wait_ready(self, seconds: float) -> None:
        """Wait for the process's first word: ready (with its status), or why it failed."""
        try:
            if not self.conn.poll(seconds):
                raise QAError(f"an answering process did not start within {seconds:g} s")
            _, kind, value = self.conn.recv()
        except (EOFError, OSError):
            raise QAError(f"an answering process exited while starting (exit code "
                          f"{self.process.exitcode}): the server log says why") from None
        if kind == "failed":
            raise value
        self.status, self._open = value, True
        threading.Thread(target=self._read, name="qa-answers", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self._open

    def ask(self, request: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if not self._open:
                raise QAError(STOPPED)
            call = next(self._ids)
            self._calls[call] = future
            try:
                self.conn.send((call, "ask", request))
            except OSError:
                self._calls.pop(call)
                raise QAError(STOPPED) from None
        return future

    def _read(self) -> None:
        while True:
            try:
                call, kind, value = self.conn.recv()
            except (EOFError, OSError):
                break
            if call is None:
                self.status = value
                continue
            with self._lock:
                future = self._calls.pop(call)
            if kind == "ok":
                future.set_result(value)
            else:
                future.set_exception(value)
        with self._lock:
            self._open = False
            held, self._calls = list(self._calls.values()), {}
        for future in held:
            future.set_exception(QAError(STOPPED))
        if self.on_exit is not None:
            self.on_exit(self)

    def stop(self, seconds: float = 10.0) -> None:
        """Close the pipe (the process finishes what it holds and exits); kill it if it has
        not gone within ``seconds``."""
        self.on_exit = None
        self.conn.close()
        self.process.join(seconds)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class Pool:
    """``count`` answering processes running ``target``; started and warm when built."""

    RESTART_AFTER = 5.0  # seconds between attempts to replace a process that will not start

    def __init__(self, target: Target, spec: Spec, count: int, ready_within: float = 900.0):
        import multiprocessing

        # spawn, not fork: the front has threads (and may have loaded onnxruntime) already.
        self._context = multiprocessing.get_context("spawn")
        self._target, self._spec, self._ready_within = target, spec, ready_within
        self._lock = threading.Lock()
        self._closing = False
        self.restarts = 0
        self.workers = [Worker(self._context, target, spec) for _ in range(count)]
        try:
            for worker in self.workers:
                worker.wait_ready(ready_within)
                worker.on_exit = self._replace
        except BaseException:
            self.close()
            raise

    def ask(self, request: dict[str, Any]) -> Any:
        """The answer of the process with the fewest questions in hand (blocking)."""
        with self._lock:
            live = [w for w in self.workers if w.alive]
            if not live:
                raise QAError("no answering process is running: the server log says why")
            worker = min(live, key=lambda w: (w.in_hand, w.answered))  # then by turns
            worker.in_hand += 1
        try:
            return worker.ask(request).result()
        finally:
            with self._lock:
                worker.in_hand -= 1
                worker.answered += 1

    def statuses(self) -> list[dict[str, Any]]:
        """Each process's last reported status, with how many questions it answered."""
        with self._lock:
            return [{**w.status, "answered": w.answered, "running": w.alive}
                    for w in self.workers]

    def _replace(self, dead: Worker) -> None:
        """A process died: start another in its place (retrying while it will not start)."""
        dead.process.join(1)
        log.error("answering process %s exited (code %s): starting another",
                  dead.process.pid, dead.process.exitcode)
        while not self._closing:
            worker = Worker(self._context, self._target, self._spec)
            try:
                worker.wait_ready(self._ready_within)
            except Exception as error:  # the index went bad meanwhile, say: keep trying
                log.error("a new answering process could not start: %s", error)
                worker.stop(1)
                time.sleep(self.RESTART_AFTER)
                continue
            with self._lock:
                if not self._closing:
                    self.workers[self.workers.index(dead)] = worker
                    self.restarts += 1
                    worker.on_exit = self._replace
                    return
            worker.stop(1)

    def close(self) -> None:
        self._closing = True
        for worker in list(self.workers):
            worker.stop()
