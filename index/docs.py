"""The docs folder as qa sees it, before any article is read: which files are articles
(plain text, and the archive formats' suffixes), their source names, their hashes, and what
changed since an index was built. Both wings use it: a build to find its files, ``qa ask`` and
``qa index status`` to tell an index that is behind its folder."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DocsError

TEXT_SUFFIXES = (".txt", ".md")
# Suffix → the archive format whose reader (``index.ingest.formats.READERS``) reads it.
# Longest suffixes first so ".warc.gz" wins over ".gz".
FORMAT_SUFFIXES = {
    ".warc.gz": "warc", ".arc.gz": "warc", ".warc": "warc", ".arc": "warc",
    ".html.gz": "html", ".htm.gz": "html", ".html": "html", ".htm": "html",
    ".jsonl.gz": "jsonl", ".ndjson.gz": "jsonl", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".csv.gz": "csv", ".csv": "csv",
    ".rss": "feed", ".atom": "feed", ".xml": "feed",
}
FORMATS = ".txt, .md, .html, .jsonl, .csv, .rss/.atom/.xml feeds, .warc; .gz too"

def file_sha256(path: Path) -> str:
    """Hex sha256 of a regular file, read in blocks; OSError for FIFOs, devices, folders."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        digest = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_files(docs_dir: Path, warn: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Article files under ``docs_dir``, sorted, following directory symlinks once."""
    docs_dir = Path(docs_dir)
    if not docs_dir.exists():
        raise DocsError(f"docs folder {docs_dir} does not exist: pass --docs DIR or set QA_DOCS")
    if not docs_dir.is_dir():
        raise DocsError(f"{docs_dir} is not a folder: pass --docs DIR with the article files")
    found: list[Path] = []
    seen: set[str] = set()

    def on_error(error: OSError) -> None:
        warn(f"skipping {printable(str(error.filename))}: {error.strerror}")

    for root, dirs, files in os.walk(docs_dir, followlinks=True, onerror=on_error):
        real = os.path.realpath(root)
        if real in seen:
            warn(f"skipping {printable(str(root))}: symlink loop")
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if readable_name(name):
                found.append(path)  # a loop among these is skipped when read, and recorded
            elif _looping(path):  # a → b → a, whatever the names: told like a folder loop
                warn(f"skipping {printable(str(path))}: symlink loop")
    return sorted(found)


def _looping(path: Path) -> bool:
    """Whether ``path`` is a symbolic link that never reaches a file (ELOOP)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def readable_name(name: str) -> bool:
    """Whether qa reads a file of this name (plain text, or one of ``FORMAT_SUFFIXES``)."""
    return name.lower().endswith(TEXT_SUFFIXES) or format_of(name) is not None


def format_of(name: str) -> tuple[str, str] | None:
    """(suffix, format) of an archive format's file name; None for plain text and others."""
    lower = name.lower()
    for suffix, kind in FORMAT_SUFFIXES.items():
        if lower.endswith(suffix):
            return suffix, kind
    return None


def _stem(path: Path) -> Path:
    """``path`` without its format suffix (both of ``.warc.gz``)."""
    found = format_of(path.name)
    if found is None:
        return path.with_suffix("")
    return path.with_name(path.name[: -len(found[0])])


def source_name(path: Path, docs_dir: Path) -> str:
    return printable(_stem(path.relative_to(docs_dir)).as_posix())


def printable(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 (surrogate-escaped by the OS layer)
    become backslash escapes (``caf\\xe9``), so the name can be stored, printed and sent as
    JSON."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def source_names(paths: list[Path], docs_dir: Path) -> dict[Path, str]:
    """The source name of each file: its path without the suffix, or with it when another file
    has the same name (``story.txt`` and ``story.md``): sources must be unique."""
    stems: dict[str, int] = {}
    for path in paths:
        stem = source_name(path, docs_dir)
        stems[stem] = stems.get(stem, 0) + 1
    return {
        path: source_name(path, docs_dir) if stems[source_name(path, docs_dir)] == 1
        else printable(path.relative_to(docs_dir).as_posix())
        for path in paths
    }


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most ``limit + 1`` of them: more than ``limit`` means
    the file is longer); OSError for anything else (a FIFO would block forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return f.read() if limit is None else f.read(limit + 1)


def root_and_paths(docs: Path, warn: Callable[[str], None] = lambda _: None
                   ) -> tuple[Path, list[Path]]:
    """(the folder source names are relative to, the article files): of a docs folder, or
    of the one file ``docs`` names."""
    if docs.is_file():
        return docs.parent, [docs]
    return docs, find_files(docs, warn)


def file_state(path: Path) -> tuple[int | None, float | None]:
    """(size, mtime) of a file; (None, None) when it cannot be read."""
    try:
        state = os.stat(path)
    except OSError:
        return None, None
    return state.st_size, state.st_mtime


def check_docs(docs_dir: Path) -> list[Path]:
    """The article files in ``docs_dir``; DocsError when the folder is missing or has none."""
    docs_dir = Path(docs_dir)
    if docs_dir.is_file():
        if not readable_name(docs_dir.name):
            raise DocsError(f"{docs_dir} is not an article file qa reads ({FORMATS}): pass "
                            "--docs DIR or a file of one of those formats")
        return [docs_dir]
    files = find_files(docs_dir)
    if not files:
        raise DocsError(
            f"no readable articles ({FORMATS}) in {docs_dir}: add article files or pass "
            "--docs DIR"
        )
    return files


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def docs_changes(docs_dir: Path, indexed: dict[str, Any]) -> Changes:
    """Files added, changed or removed since the index was built (``indexed``: its files'
    entries, ``Store.files``): size and mtime first, hashing only files whose stat differs."""
    docs_dir = Path(docs_dir)
    changes = Changes()
    seen = set()
    try:
        root, paths = root_and_paths(docs_dir)
    except DocsError:
        return Changes(removed=sorted(indexed))
    for path, source in source_names(paths, root).items():
        seen.add(source)
        entry = indexed.get(source)
        if entry is None:
            changes.added.append(source)
            continue
        if file_state(path) == (entry.get("size"), entry.get("mtime")):
            continue
        try:
            digest: str | None = file_sha256(path)
        except OSError:
            digest = None
        if digest is None or digest != entry.get("sha256"):
            changes.changed.append(source)
    changes.removed = sorted(set(indexed) - seen)
    return changes
