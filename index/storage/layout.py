"""The index on disk: versioned, self-describing, switched over atomically.

Layout of an index directory::

    CURRENT              name of the live version directory (replaced atomically)
    .lock                held by the one writer
    model.onnx           query encoder exported from the verified weights (onnxruntime-optimised)
    model.onnx.data      its weights (ONNX external data)
    model.int8.onnx      int8 document encoder (CPUs without AMX), made on the building machine
    v-<stamp>/           one immutable version
        manifest.json    model, dimension, chunking, per-file hashes, sizes of the files below
        passages.sqlite  documents and passages (text, offsets, sentence spans, hashes)
        vectors.npy      int8 [n, dim], row i = passage id i (float32 before format 4)
        scales.npy       float32 [n]: row i's vector is vectors[i]·scales[i], normalised
        faiss.index      inner-product index over vectors.npy (flat, or IVF with 4-bit PQ
                         codes when large, re-scored from vectors.npy; flat ones are
                         searched from vectors.npy without loading faiss)
        bm25/            bm25s index over the same passages
        delta/           (after updates of a large index) the articles added since the files
                         above were written: the same files over passage ids after theirs,
                         plus the list of the base's articles removed; the base's files are
                         hard links to the previous version's

Writers build a new version directory, fsync it, then replace CURRENT; readers resolve
CURRENT once and only ever see complete versions. What readers add (feedback, standing
questions) is kept beside the index directory, never in it: ``<index>.<kind>.sqlite``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import IndexDamaged, IndexLocked, IndexMissing, QAError

CURRENT = "CURRENT"
DELTA = "delta"  # a version's folder of the articles updates added since its base was built
# The entry of every indexed file (hash, size, mtime; skipped, duplicate), beside the manifest
# rather than in it: an archive of 500,000 files makes it ~86 MB of JSON (1.2 s to parse),
# which updates and `qa index status` read, and opening a version for a question does not.
FILES = "files.json"


def beside(index_dir: Path, kind: str) -> Path:
    """The database of ``kind`` ("feedback", "watches") kept beside ``index_dir``."""
    index_dir = Path(index_dir).resolve()
    return index_dir.with_name(f"{index_dir.name}.{kind}.sqlite")


def open_database(path: Path, schema: str, what: str, timeout: float,
                  wal: bool = False, **options: Any) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` (its folder made, ``schema`` applied;
    ``wal``: write-ahead logging, for several processes), shared by a store's threads;
    QAError naming ``what`` ("the feedback database") when it cannot be opened."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, timeout=timeout, **options)
        if wal:
            db.execute("PRAGMA journal_mode = WAL")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as error:
        raise QAError(f"cannot open {what} {path} ({error}): check that its folder is "
                      "writable") from None
    return db


def _lock(index_dir: Path) -> Any:
    from filelock import FileLock

    return FileLock(index_dir / ".lock")


@contextmanager
def writer_lock(index_dir: Path, wait: bool = False) -> Iterator[None]:
    """Exclusive lock so two builds or updates never interleave. The OS releases it when the
    holder dies, even by kill -9, so a crashed writer never blocks the next one."""
    from filelock import Timeout

    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(index_dir)
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        raise IndexLocked(
            f"another qa process is writing the index at {index_dir}: wait for it to finish"
        ) from None
    except OSError as error:
        raise QAError(
            f"cannot write the index at {index_dir} ({error.strerror or error}): pass --index DIR "
            "with a writable folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_being_written(index_dir: Path) -> bool:
    """Whether a writer holds the lock right now (for status displays; never blocks)."""
    from filelock import Timeout

    if not (Path(index_dir) / ".lock").exists():
        return False
    lock = _lock(Path(index_dir))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def current_version(index_dir: Path) -> Path:
    """The live version directory, or IndexMissing."""
    name = live_name(index_dir, missing_ok=False)
    version = Path(index_dir) / name
    if not name.startswith("v-") or not version.is_dir():
        raise IndexDamaged(f"index at {index_dir} is damaged (CURRENT): run `qa index build`")
    return version


def live_name(index_dir: Path, missing_ok: bool = True) -> str:
    """The name CURRENT holds ("" when there is none and ``missing_ok``)."""
    try:
        return (Path(index_dir) / CURRENT).read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise IndexMissing(
            f"no index at {index_dir}: run `qa index build` (or `qa ask`, which builds it)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        if missing_ok:
            return ""
        reason = "not text" if isinstance(error, UnicodeDecodeError) else str(error)
        raise IndexDamaged(
            f"index at {index_dir} is damaged (CURRENT: {reason}): run `qa index build`"
        ) from None


# Reader leases. Every version holds an empty LEASE file. A process using the version keeps a
# shared flock(2) on it until it closes the version; a writer removes an old version only
# when it can take the exclusive lock, i.e. no process uses it. The kernel drops the locks of
# a process that dies, even by kill -9, so a crashed reader never pins a version. flock is the
# same call with the same semantics on Linux and macOS (BSD locks on the open file, not on the
# process, shared by fork); on local file systems both honour it between processes. Where
# fcntl is missing (Windows) leases are skipped and the writer keeps the previous version.
LEASE = ".lease"


def _flock(fd: int, exclusive: bool, wait: bool) -> bool:
    """Lock ``fd``; False when ``wait`` is off and another process holds a conflicting lock."""
    try:
        import fcntl
    except ImportError:  # no flock: nothing to coordinate with
        return True
    flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, flags | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def open_lease(version: Path) -> BinaryIO | bool | None:
    """A shared lease on ``version``: an open file to close when done (closing it, or the
    process ending, releases the lease), True for a version written without a lease file,
    None when the version went away (resolve CURRENT again)."""
    try:
        lease = open(version / LEASE, "rb")  # noqa: SIM115 - held until the store closes
    except FileNotFoundError:
        return True if version.is_dir() else None
    _flock(lease.fileno(), exclusive=False, wait=True)
    # A writer renames a version away while holding the exclusive lock: if that happened
    # before we got ours, the version is gone.
    if not version.is_dir():
        lease.close()
        return None
    return lease


def release_lease(lease: Any) -> None:
    if hasattr(lease, "close"):
        lease.close()


def in_use(version: Path) -> tuple[bool, BinaryIO | None]:
    """(whether a reader holds a lease on ``version``, the file holding it exclusively)."""
    try:
        lease = open(version / LEASE, "rb")  # noqa: SIM115 - returned to the caller
    except OSError:
        return False, None
    if _flock(lease.fileno(), exclusive=True, wait=False):
        return False, lease
    lease.close()
    return True, None


