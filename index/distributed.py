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
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import QAError

if TYPE_CHECKING:
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


class Encoder:
    """A Ray actor: the int8 model, loaded once on its node, embedding blocks of passages."""

    def __init__(self, model: Any) -> None:
        import tempfile

        import ray

        from .embed import OnnxEmbedder

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        folder = Path(tempfile.mkdtemp(prefix="qa-encoder-"))
        path = folder / "model.int8.onnx"
        path.write_bytes(model)
        self.embedder = OnnxEmbedder(path, optimized=False)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .embed import INT8_BATCH

        texts = [str(t) for t in batch["text"]]
        vectors = self.embedder.embed(texts, batch_size=INT8_BATCH)
        return {
            "row": np.asarray(batch["row"], dtype=np.int64),
            "vector": vectors,
            "node": np.array([self.node] * len(texts)),
        }


ARTICLES = 16  # articles per describing task


def _describe_block(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Ray Data task: describe a block of pickled articles (``pipeline.describe``)."""
    import pickle

    from .pipeline import _default_counter, describe

    count_tokens = _default_counter()  # as a local build counts: a slice at a time
    out = [pickle.dumps(describe(pickle.loads(blob), count_tokens)) for blob in batch["doc"]]
    return {"i": np.asarray(batch["i"], dtype=np.int64), "out": np.array(out, dtype=object)}


def describe(address: str, documents: Documents) -> Iterator[tuple[Any, list[Any]]]:
    """``pipeline.describe`` of each of ``documents`` on the cluster at ``address``, yielded
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
    address: str, model: Path, blocks: Iterable[list[tuple[int, str]]],
    write: Callable[[np.ndarray, np.ndarray], None], advance: Callable[[int], None],
) -> dict[str, int]:
    """Embed ``blocks`` of (passage id, text) on the cluster at ``address`` with the int8
    model file ``model``; ``write(ids, vectors)`` for each block that comes back. Returns the
    passages embedded per node id."""
    ray = connect(address)
    import pyarrow as pa

    refs = []
    for block in blocks:
        # Longest first, as a local build orders them, so each model call pairs the same
        # passages (int8 activations are quantised per call: the same pairs, the same
        # vectors) while the slices spread over the nodes.
        block = sorted(block, key=lambda item: -len(item[1]))
        for s in range(0, len(block), BLOCK):
            part = block[s : s + BLOCK]
            refs.append(ray.put(pa.table({"row": [i for i, _ in part],
                                          "text": [t for _, t in part]})))
    if not refs:
        return {}
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    weights = Path(model).read_bytes()
    dataset = ray.data.from_arrow_refs(refs).map_batches(
        Encoder, fn_constructor_args=(weights,), batch_size=BLOCK, batch_format="numpy",
        # Every CPU's actor from the start, IN_FLIGHT blocks each: blocks go to whichever
        # actor has room, so a small archive still spreads over the nodes.
        compute=ray.data.ActorPoolStrategy(size=min(cpus, len(refs)),
                                           max_tasks_in_flight_per_actor=IN_FLIGHT),
        num_cpus=1,
    )
    nodes: dict[str, int] = {}
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            ids = np.asarray(batch["row"], dtype=np.int64)
            write(ids, np.asarray(batch["vector"], dtype=np.float32))
            for node in batch["node"]:
                nodes[str(node)] = nodes.get(str(node), 0) + 1
            advance(len(ids))
    except QAError:
        raise
    except Exception as error:  # Ray's own task and actor errors: one line, not its trace
        raise _failed(address, "the embedding", error) from None
    return nodes


def node_addresses() -> dict[str, str]:
    """Node id → IP of the connected cluster (for reports)."""
    import ray

    return {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}


def default_address() -> str:
    return os.environ.get("RAY_ADDRESS") or "auto"
