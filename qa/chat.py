"""``qa chat``: an interactive session over one open engine (line editing and a private
history on a terminal, plain lines from a pipe); and ``qa ask``'s questions, one or a line
each from stdin."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.errors import QuestionError

from .app import cache_root
from .engine import Engine, clean_question
from .filters import Filters
from .results import Answer
from .terminal import render, stdout, warn

HELP = ("[dim]:k N (1–100) passages, :json toggle JSON, :weak toggle weak answers, :quit to "
        "leave[/]")


@dataclass
class Settings:
    k: int = 5  # passages per answer
    json: bool = False  # JSON lines instead of rendered answers
    weak: bool = False  # closest passages shown for refused answers


def run_chat(engine: Engine, k: int, filters: Filters | None = None) -> None:
    """Read questions (and ``:`` commands) until ``:quit`` or the end of input; answer each."""
    out = stdout()
    settings = Settings(k)
    read = line_reader()
    out.print("[dim]Ask a question. :k N sets passages, :json toggles JSON, :quit leaves.[/]")
    while True:
        try:
            line = read().strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        if line.startswith(":"):
            if not _command(line[1:], settings, out.print):
                break
            continue
        try:
            answer = engine.ask(line, k=settings.k, filters=filters)
        except QuestionError as error:
            warn(str(error))
            continue
        if settings.json:
            print(json.dumps(answer.to_dict(settings.weak), ensure_ascii=False), flush=True)
        else:
            render(answer, out, settings.weak)


def _command(line: str, settings: Settings, say: Callable[[str], None]) -> bool:
    """Apply a ``:`` command to ``settings``; False for ``:quit``."""
    command, _, arg = line.partition(" ")
    if command in ("q", "quit", "exit"):
        return False
    if command == "k" and arg.strip().isdigit() and 1 <= int(arg) <= 100:
        settings.k = k = int(arg)
        say(f"[dim]showing {k} passage{'' if k == 1 else 's'}[/]")
    elif command == "json":
        settings.json = not settings.json
        say(f"[dim]JSON output {'on' if settings.json else 'off'}[/]")
    elif command == "weak":
        settings.weak = not settings.weak
        say(f"[dim]weak answers {'shown' if settings.weak else 'hidden'}[/]")
    else:
        say(HELP)
    return True


def chat_history(folder: Path) -> Path:
    """The chat history file, readable by its owner only (questions can be private)."""
    history = folder / "chat_history"
    history.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(history, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
    os.chmod(history, 0o600)
    return history


def stdin_text() -> Any:
    """stdin as text; undecodable bytes become lone surrogates, which the question cleaner
    turns into spaces (as it does for undecodable bytes in arguments)."""
    stream = sys.stdin
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="surrogateescape")
    return stream


def line_reader() -> Callable[[], str]:
    """prompt_toolkit (line editing, history) on a terminal; plain lines otherwise."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        history = chat_history(cache_root())
        session: PromptSession[str] = PromptSession(history=FileHistory(str(history)))
        return lambda: session.prompt("? ")

    stream = stdin_text()

    def read() -> str:
        line = stream.readline()
        if not line:
            raise EOFError
        return line

    return read


def answers(open_engine: Callable[[], Engine], question: str, k: int,
            filters: Filters | None = None) -> Iterator[Answer]:
    """``qa ask``: the answer to ``question`` (checked before ``open_engine`` loads
    anything), or with "-" one to each line of stdin, blank lines skipped and a line that is
    no question a warning (the next ones still answered)."""
    if question != "-":
        clean_question(question)  # fail fast, before loading anything
        yield open_engine().ask(question.rstrip("\n"), k=k, filters=filters)
        return
    engine = open_engine()
    for line in stdin_text():
        if not line.strip():
            continue
        try:
            yield engine.ask(line.rstrip("\n"), k=k, filters=filters)
        except QuestionError as error:
            warn(str(error))
