"""Find and decode the article files under a docs folder."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import DocsError

SUFFIXES = (".txt", ".md")
# Larger files are read but their text is capped: the index is for articles, not dumps.
MAX_CHARS = 20_000_000


@dataclass(frozen=True)
class Skipped:
    """A file that was found but not indexed, and why (kept so updates don't re-report it)."""

    source: str
    path: Path
    reason: str


@dataclass(frozen=True)
class Document:
    """One article file, decoded. ``source`` is the file's path relative to the docs folder,
    without its suffix (the file stem for files at the top level)."""

    source: str
    path: Path
    text: str
    sha256: str
    encoding: str = "utf-8"


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
        for name in files:
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            found.append(Path(root) / name)
    return sorted(found)


def source_name(path: Path, docs_dir: Path) -> str:
    return printable(path.relative_to(docs_dir).with_suffix("").as_posix())


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


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file; OSError for anything else (a FIFO would block forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return f.read()


def read_document(
    path: Path,
    docs_dir: Path,
    warn: Callable[[str], None],
    skipped: Callable[[Skipped], None] = lambda _: None,
    source: str | None = None,
) -> Document | None:
    """Decode one file, or warn, report it to ``skipped`` and return None when it is not
    usable text."""
    source = source or source_name(path, docs_dir)

    def skip(reason: str) -> None:
        warn(f"skipping {printable(str(path))}: {reason}")
        skipped(Skipped(source, path, reason))

    try:
        data = _read_regular(path)
    except OSError as error:
        skip(error.strerror or str(error))
        return None
    if b"\x00" in data[:8192]:
        skip("binary file, not text")
        return None
    encoding = "utf-8"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Old archives are often Latin-1; every byte decodes, so check it still looks like text.
        text = data.decode("latin-1")
        encoding = "latin-1"
        controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
        if controls > len(text[:8192]) * 0.01:
            skip("not UTF-8 and not readable text")
            return None
        warn(f"{printable(str(path))} is not UTF-8: read it as Latin-1")
    if len(text) > MAX_CHARS:
        warn(
            f"{printable(str(path))} has {len(text):,} characters: indexing only the first "
            f"{MAX_CHARS:,}"
        )
        text = text[:MAX_CHARS]
    if not text.strip():
        skip("empty file")
        return None
    digest = hashlib.sha256(data).hexdigest()
    del data
    return Document(source, path, text, digest, encoding)


def load_documents(
    docs_dir: Path,
    warn: Callable[[str], None] = lambda _: None,
    skipped: Callable[[Skipped], None] = lambda _: None,
) -> Iterator[Document]:
    """Yield every readable article under ``docs_dir``; unusable files produce a warning and
    are passed to ``skipped``."""
    docs_dir = Path(docs_dir)
    paths = find_files(docs_dir, warn)
    for path, source in source_names(paths, docs_dir).items():
        document = read_document(path, docs_dir, warn, skipped, source)
        if document is not None:
            yield document
