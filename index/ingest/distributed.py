"""Chunking and embedding on a Ray cluster (``qa index build --ray ADDRESS``): Ray Data.

The head (the process running ``qa``) reads the files and cleans their pages (the readers,
duplicates across the archive) as a local build does. Two Ray Data stages then run on the
cluster, their blocks travelling through Ray's object store (no shared file system needed):

1. ``describe``: the articles, in blocks, are described (metadata read off the text,
   sentence-aware passages with token counts) by ``map_batches`` tasks; the head takes the
   results in order and writes each article into the new version's ``passages.sqlite``.
2. ``embed``: the passages to embed are embedded by a pool of actors — one per CPU of the
   cluster, each holding the int8 model it was sent — and stream back to the head, which
   writes each block's vectors into the version's ``vectors.npy`` by passage id and records
   which node embedded it.

The version is then published as any other: same format, same atomic switch, so a failed or
interrupted cluster leaves the live version as it was.

Ray Data restarts an actor that dies and retries its blocks (its defaults for actor pools:
unlimited ``max_restarts`` and ``max_task_retries``); a block is written by passage id, so one
embedded twice is written twice with the same vector.
Ray is an optional extra: ``pip install '.[ray]'`` on every node, the same version of qa.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QAError
from ..models.embedder import OnnxEmbedder
from .describe import counter
from .describe import describe as describe_one
from .embed import INT8_BATCH
from .load import Documents

# Passages per block sent to an actor: large enough that Ray's per-task cost (~ms) is small
# next to embedding it (~1.3 s on one core), small enough that two nodes share a small archive
# and finish together (the last block is the only one a node can wait on).
BLOCK = 64
# Blocks queued on each actor: a second one waits while the first is embedded, so an actor
# never idles through the round trip of handing a block back and getting the next (with one,
# each actor idled ~5% of the time on two one-CPU nodes; docs/BENCHMARKS.md).
IN_FLIGHT = 2


class RayError(QAError):
    """Ray is missing, the cluster cannot be reached, or it failed the work."""


def connect(address: str) -> Any:
    """``ray`` connected to the cluster at ``address`` ("auto": the one ``ray start`` made on
    this machine, or ``RAY_ADDRESS``); RayError saying what to do otherwise."""
    try:
        import ray
    except ImportError:
        raise RayError("Ray is not installed: pip install 'newsqa[ray]' (on every node), or "
                       "build without --ray") from None
    if ray.is_initialized():
        return ray
    _reachable(address)
    package = Path(__file__).resolve().parent
    # Ray's notes (plans, execution summaries) are not the user's business; its errors still
    # reach them through the exceptions below. Its C++ core logs errors that are not the
    # user's either: every Ray Data actor pool prints that its actors' constructor arguments
    # (Ray Data's own, held for the pool's lifetime) live in the object store
    # (ray-project/ray#53727). RAY_BACKEND_LOG_LEVEL set by the user wins. Setting it makes
    # the core log one line of its own as it starts ("Set ray log level from environment
    # variable …"), on the process's stderr before any log file is open: that start is
    # silenced below; its failures still come back as the exceptions handled here.
    quiet = "RAY_BACKEND_LOG_LEVEL" not in os.environ
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with _native_stderr_silenced(quiet):
            ray.init(
                address=address, logging_level=logging.ERROR, log_to_driver=False,
                # This package goes with the job, so every node runs the head's code.
                runtime_env={"py_modules": [str(package)]},
            )
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RayError(f"cannot reach a Ray cluster at {address} ({_first_line(error)}): "
                       + _START) from None
    ray.data.DataContext.get_current().enable_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return ray


@contextmanager
def _native_stderr_silenced(active: bool = True) -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block (C++ code writes there, not to
    ``sys.stderr``); Python's own ``sys.stderr`` is flushed first and restored after."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_START = ("start one with `ray start --head` (and `ray start --address HEAD:6379` on the "
          "others), or pass its address")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _failed(address: str, what: str, error: BaseException) -> RayError:
    """The one-line error for a cluster that failed a stage."""
    return RayError(f"the Ray cluster at {address} failed {what} ({type(error).__name__}: "
                    f"{_first_line(error)}): the live index is unchanged; check `ray status` "
                    "and build again")


def _reachable(address: str) -> None:
    """RayError unless HOST:PORT accepts connections (``ray.init`` would wait for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", or a scheme ray.init understands: let it say
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise RayError(f"cannot reach a Ray cluster at {address} ({error.strerror or error}): "
                       + _START) from None


class Shards:
    """A folder of Parquet shards (``--shards``): each block the cluster embeds is written
    there by the actor that embedded it, one file per block (content hash, vector, node),
    and the head assembles the version's vectors from those files. Every node must reach the
    folder at the same path (a shared file system; on one machine any folder).

    A shard is written to a temporary name and renamed, so a killed actor leaves none torn.
    A build that stops keeps its shards, and the next build with the same folder embeds only
    the passages no shard holds (matched by content hash, for the same model file: its
    digest starts each shard's name). A build that is published removes the shards it used.
    """

    PREFIX = "qa-shard-"

    def __init__(self, folder: Path, model: bytes) -> None:
        import hashlib

        self.folder = Path(folder)
        self.model = hashlib.sha256(model).hexdigest()[:12]
        self.used: set[Path] = set()
        self.reused = 0  # passages whose vectors an earlier, stopped build left here
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RayError(f"cannot use {self.folder} for shards ({error.strerror or error}): "
                           "pass a folder every Ray node can write (--shards)") from None

    def name(self, hashes: list[str]) -> str:
        """The shard of a block: named by the model and the block's content hashes, so a
        retried block rewrites the same file."""
        import hashlib

        digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:20]
        return f"{self.PREFIX}{self.model}-{digest}.parquet"

    def held(self) -> dict[str, Path]:
        """Content hash → the shard holding its vector, of this folder's shards for this
        model; a shard that cannot be read is left out (its passages are embedded again)."""
        import pyarrow.parquet as pq

        held: dict[str, Path] = {}
        for path in sorted(self.folder.glob(f"{self.PREFIX}{self.model}-*.parquet")):
            try:
                hashes = pq.read_table(path, columns=["hash"]).column("hash").to_pylist()
            except Exception:  # pyarrow's own errors: a damaged or foreign file
                continue
            for h in hashes:
                held.setdefault(h, path)
        return held

    def read(self, name: str, hashes: list[str]) -> np.ndarray:
        """The vectors of the passages with content ``hashes`` from the shard ``name``,
        float32 [len(hashes), dimension]; RayError when the shard is missing or lacks one
        (a folder the nodes do not share)."""
        import pyarrow.parquet as pq

        path = self.folder / name
        try:
            table = pq.read_table(path, columns=["hash", "vector"])
        except (OSError, ValueError) as error:
            raise RayError(f"cannot read the shard {path} a Ray node wrote ({_first_line(error)})"
                           ": --shards must be a folder every node reaches at the same path"
                           ) from None
        rows = {h: n for n, h in enumerate(table.column("hash").to_pylist())}
        if not all(h in rows for h in hashes):
            raise RayError(f"the shard {path} does not hold the passages it was written for: "
                           "remove it and build again")
        self.used.add(path)
        column = table.column("vector").combine_chunks()
        vectors = np.asarray(column.flatten().to_numpy(), dtype=np.float32)
        return vectors.reshape(len(table), -1)[[rows[h] for h in hashes]]

    def remove_used(self) -> None:
        """Delete the shards this build wrote or read (once its version is published), and
        any shard a killed actor left half-written."""
        for path in [*self.used, *self.folder.glob(f".{self.PREFIX}*.tmp")]:
            path.unlink(missing_ok=True)
        self.used.clear()


def write_shard(path: Path, hashes: list[str], vectors: np.ndarray, node: str) -> None:
    """One block's shard, whole or not at all (a temporary file renamed into place)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    table = pa.table({
        "hash": pa.array(hashes, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        "node": pa.array([node] * len(hashes), pa.string()),
    })
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


class Encoder:
    """A Ray actor: the int8 model, loaded once on its node, embedding blocks of passages
    (and, given a shards folder, writing each block's shard there)."""

    def __init__(self, model: Any, shards: str | None = None) -> None:
        import tempfile

        import ray

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        # onnxruntime reads the whole file when the session opens, so the copy goes at once
        # (one per actor: 22 MB each, left behind in /tmp by every build before).
        with tempfile.TemporaryDirectory(prefix="qa-encoder-") as folder:
            path = Path(folder) / "model.int8.onnx"
            path.write_bytes(model)
            self.embedder = OnnxEmbedder(path, optimized=False)
        self.node = ray.get_runtime_context().get_node_id()
        self.shards = Path(shards) if shards else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.embedder.embed(texts, batch_size=INT8_BATCH)
        out = {"row": np.asarray(batch["row"], dtype=np.int64),
               "node": np.array([self.node] * len(texts))}
        if self.shards is None:
            return {**out, "vector": vectors}
        # The head reads the vectors from the shard: only its name travels back.
        name = str(batch["shard"][0])
        write_shard(self.shards / name, [str(h) for h in batch["hash"]], vectors, self.node)
        return {**out, "shard": np.array([name] * len(texts)), "hash": batch["hash"]}


ARTICLES = 16  # articles per describing task


def _describe_block(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Ray Data task: describe a block of pickled articles (``describe.describe``)."""
    import pickle

    count_tokens = counter()  # as a local build counts: a slice at a time
    out = [pickle.dumps(describe_one(pickle.loads(blob), count_tokens)) for blob in batch["doc"]]
    return {"i": np.asarray(batch["i"], dtype=np.int64), "out": np.array(out, dtype=object)}


def describe(address: str, documents: Documents) -> Iterator[tuple[Any, list[Any]]]:
    """``describe.describe`` of each of ``documents`` on the cluster at ``address``, yielded
    in the documents' order."""
    import pickle

    ray = connect(address)
    import pyarrow as pa

    refs: list[Any] = []
    block: list[bytes] = []
    for n, document in enumerate(documents, start=1):
        block.append(pickle.dumps(document))
        if len(block) >= ARTICLES or n == len(documents):
            refs.append(ray.put(pa.table({"i": list(range(n - len(block), n)), "doc": block})))
            block = []
    if not refs:
        return
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    dataset = ray.data.from_arrow_refs(refs).map_batches(
        _describe_block, batch_size=ARTICLES, batch_format="numpy", num_cpus=1,
    )
    expected = 0
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for i, blob in zip(batch["i"], batch["out"], strict=True):
                if int(i) != expected:
                    raise RayError(f"the Ray cluster at {address} returned article {int(i)} "
                                   f"where {expected} was due: build again")
                expected += 1
                yield pickle.loads(blob)
    except QAError:
        raise
    except Exception as error:  # Ray's own task errors: one line, not its trace
        raise _failed(address, "reading the articles", error) from None
    finally:
        context.execution_options.preserve_order = False


def embed(
    address: str, model: Path, blocks: Iterable[list[tuple[int, str, str]]],
    write: Callable[[np.ndarray, np.ndarray], None], advance: Callable[[int], None],
    shards: Path | None = None,
) -> tuple[dict[str, int], Shards | None]:
    """Embed ``blocks`` of (passage id, content hash, text) on the cluster at ``address``
    with the int8 model file ``model``; ``write(ids, vectors)`` for each block that comes
    back. With ``shards`` (a folder every node reaches) the blocks travel back as Parquet
    shards there (``Shards``), and passages an earlier build's shards hold are not embedded
    again. Returns the passages embedded per node id, and the shards (to remove once the
    version is published)."""
    ray = connect(address)
    import pyarrow as pa

    weights = Path(model).read_bytes()
    folder = Shards(shards, weights) if shards is not None else None
    held = folder.held() if folder is not None else {}
    refs: list[Any] = []
    for block in blocks:
        if folder is not None and held:
            block = _from_shards(block, held, folder, write, advance)
        refs.extend(ray.put(pa.table(columns)) for columns in _slices(block, folder))
    if not refs:
        return {}, folder
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    dataset = ray.data.from_arrow_refs(refs).map_batches(
        Encoder, fn_constructor_args=(weights, str(folder.folder) if folder else None),
        batch_size=BLOCK, batch_format="numpy",
        # Every CPU's actor from the start, IN_FLIGHT blocks each: blocks go to whichever
        # actor has room, so a small archive still spreads over the nodes.
        compute=ray.data.ActorPoolStrategy(size=min(cpus, len(refs)),
                                           max_tasks_in_flight_per_actor=IN_FLIGHT),
        num_cpus=1,
    )
    nodes: dict[str, int] = {}
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            _written(batch, folder, write)
            for node in batch["node"]:
                nodes[str(node)] = nodes.get(str(node), 0) + 1
            advance(len(batch["row"]))
    except QAError:
        raise
    except Exception as error:  # Ray's own task and actor errors: one line, not its trace
        raise _failed(address, "the embedding", error) from None
    return nodes, folder


def _written(batch: dict[str, np.ndarray], folder: Shards | None,
             write: Callable[[np.ndarray, np.ndarray], None]) -> None:
    """Write the vectors of one batch the cluster returned: in it, or in its shards."""
    ids = np.asarray(batch["row"], dtype=np.int64)
    if folder is None:
        write(ids, np.asarray(batch["vector"], dtype=np.float32))
        return
    # A batch may hold several blocks: each one's rows come from its shard.
    names = np.array([str(n) for n in batch["shard"]])
    hashes = [str(h) for h in batch["hash"]]
    for name in dict.fromkeys(names.tolist()):
        rows = np.flatnonzero(names == name)
        write(ids[rows], folder.read(name, [hashes[r] for r in rows]))


def _slices(block: list[tuple[int, str, str]],
            folder: Shards | None) -> Iterator[dict[str, list[Any]]]:
    """The columns of each slice of ``block`` sent to an actor (row, text; with shards,
    content hash and the shard's name)."""
    # Longest first, as a local build orders them, so each model call pairs the same passages
    # (int8 activations are quantised per call: the same pairs, the same vectors) while the
    # slices spread over the nodes.
    block = sorted(block, key=lambda item: -len(item[2]))
    for s in range(0, len(block), BLOCK):
        part = block[s : s + BLOCK]
        columns: dict[str, list[Any]] = {"row": [i for i, _, _ in part],
                                         "text": [t for _, _, t in part]}
        if folder is not None:
            hashes = [h for _, h, _ in part]
            columns["hash"] = hashes
            columns["shard"] = [folder.name(hashes)] * len(part)
        yield columns


def _from_shards(
    block: list[tuple[int, str, str]], held: dict[str, Path], shards: Shards,
    write: Callable[[np.ndarray, np.ndarray], None], advance: Callable[[int], None],
) -> list[tuple[int, str, str]]:
    """Write the vectors ``held`` in shards for ``block``'s passages; the rest, to embed."""
    found: dict[Path, list[tuple[int, str]]] = {}
    rest = []
    for i, h, text in block:
        if h in held:
            found.setdefault(held[h], []).append((i, h))
        else:
            rest.append((i, h, text))
    for path, pairs in found.items():
        vectors = shards.read(path.name, [h for _, h in pairs])
        write(np.array([i for i, _ in pairs], dtype=np.int64), vectors)
        advance(len(pairs))
        shards.reused += len(pairs)
    return rest


def node_addresses() -> dict[str, str]:
    """Node id → IP of the connected cluster (for reports)."""
    import ray

    return {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}


def default_address() -> str:
    return os.environ.get("RAY_ADDRESS") or "auto"
