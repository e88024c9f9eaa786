"""What a version's ``manifest.json`` says and what this qa requires of it: the format, the
reader and chunker that made its passages, the model (``index.models.spec``), the sizes and
digests of its files."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import IndexDamaged, IndexOutdated, IndexStale
from .layout import FILES, current_version

# 2: documents.url, stored article texts of non-text formats; 3: language; 4: int8 vectors
# with a scale per row
FORMAT_VERSION = 4
# Bumped when reading, cleaning (index/ingest/clean.py) or deduplication changes what an unchanged
# folder yields, so an update re-reads it instead of reporting nothing to do. 4: news sites'
# promos, editors' notes and photographer-first captions. 5: titles cut short ("… air ..."),
# dateline lines ("CNN —") never a title, an outlet a title ends with and a dateline names. 6:
# bylines whose names run together and are then listed; round-ups' credit lines. 7: the same run
# of names at the head of an export's author list. 8: an export's stated title shown as a page's
# is (cut-short ending, the publisher's name at its end). 9: wire services' credit lines
# ("Reporting by … ; Editing by …") end the story and are not kept.
READER_VERSION = 9
# Bumped when index/ingest/chunk.py cuts passages differently: an index chunked otherwise is
# built again.
CHUNK_VERSION = 2


def read_by_another(manifest: dict[str, Any]) -> bool:
    """Whether the index whose manifest this is was read by another ``READER_VERSION``: an
    update re-reads its articles (keeping the vectors of passages that come out the same)."""
    return manifest.get("reader_version") != READER_VERSION


def expected(embedder: Any = None, model: Any = None) -> dict[str, Any]:
    """Manifest keys that must match for an index to be usable: the chunker's, and the name
    and dimension of the ``embedder`` given (a test's model) or of ``model`` (a spec) when
    one is asked for; with neither, the model is the one the manifest names."""
    want: dict[str, Any] = {"chunking.version": CHUNK_VERSION}
    named = embedder if embedder is not None else model
    if named is not None:
        want.update({"model.name": named.name, "model.dimension": named.dimension})
    return want


def read_manifest(index_dir: Path, version: Path | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the live one)."""
    version = version or current_version(index_dir)
    try:
        manifest = json.loads((version / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = None
    counts = manifest.get("counts") if isinstance(manifest, dict) else None
    if not isinstance(counts, dict) or not isinstance(counts.get("passages"), int):
        raise IndexDamaged(f"index at {index_dir} is damaged: run `qa index build`")
    return manifest


def read_files(index_dir: Path, version: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The entries of the files ``version`` indexed (in its manifest when written before
    ``FILES`` existed)."""
    if "files" in manifest:
        return dict(manifest["files"])
    try:
        files = json.loads((version / FILES).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        files = None
    if not isinstance(files, dict):
        raise IndexDamaged(f"index at {index_dir} is damaged: run `qa index build`")
    return files


READABLE_FORMATS = (1, 2, 3, 4)  # formats an update can take passages and vectors from


def check_manifest(
    manifest: dict[str, Any], index_dir: Path, expect: dict[str, Any], older: bool = False
) -> None:
    """Refuse an index built by another format, model, dimension or chunker. With ``older``,
    an older format of the same model is accepted (an update reuses its vectors)."""
    problems = []
    version = manifest.get("format_version")
    old_format = version != FORMAT_VERSION and not (older and version in READABLE_FORMATS)
    if old_format:
        problems.append(f"format {version} (this qa reads {FORMAT_VERSION})")
    for key, want in expect.items():
        have = _dig(manifest, key)
        if have != want:
            problems.append(f"{key} {have!r} (expected {want!r})")
    if problems:
        # Same model and chunker, older layout: an update rebuilds it without re-embedding.
        cheap = old_format and len(problems) == 1 and version in READABLE_FORMATS
        fix = "qa index update` (it keeps the vectors)" if cheap else "qa index build`"
        error = IndexOutdated if cheap else IndexStale
        raise error(f"index at {index_dir} was built with {'; '.join(problems)}: run `{fix}")


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def sizes_match(directory: Path, sizes: Any) -> bool:
    if not isinstance(sizes, dict):
        return False
    for name, size in sizes.items():
        try:
            if (directory / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def file_sizes(directory: Path) -> dict[str, int]:
    """Size of every file under ``directory``, by relative path (checked on every load)."""
    return {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()




def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
