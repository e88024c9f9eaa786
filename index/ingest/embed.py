"""Document vectors for a build: sentence-transformers (``TorchEmbedder``), one
single-threaded model per core (``PoolEmbedder``), and the ``DocumentEmbedder`` that picks
int8 ONNX or bf16 torch weights by measurement. Questions are embedded by
``index.models.embedder.OnnxEmbedder``. Importing this module loads neither torch nor
onnxruntime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..disk import write_atomic
from ..models.cpu import cpu_has_amx, cpu_has_bf16, cpu_model
from ..models.embedder import Embedder, OnnxEmbedder
from ..models.export import INT8_FILE, ONNX_FILE, export_onnx
from ..models.spec import DEFAULT, ModelSpec

OnProgress = Callable[[int], None] | None


class TorchEmbedder(Embedder):
    """sentence-transformers on CPU: fp32, bfloat16 autocast, or (``cast``) the weights
    themselves in bfloat16.

    With AMX, bf16 weights ran ~1.6x faster than autocast on news passages (98 against 62
    passages/s on two cores; autocast converts every weight on every call) at cosine ≥ 0.9999
    to fp32 (docs/BENCHMARKS.md)."""

    def __init__(self, bf16: bool | None = None, threads: int | None = None,
                 cast: bool = False, model: ModelSpec = DEFAULT):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        directory = model.verified()
        torch.set_num_threads(threads or os.cpu_count() or 1)
        self.bf16 = cpu_has_bf16() if bf16 is None else bf16
        self.name, self.dimension, self.sha256 = model.name, model.dimension, model.sha256
        self.precision = ("bf16" if self.bf16 else "fp32") + (" weights" if cast else "")
        self._torch = torch
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self._model.max_seq_length = model.window
        self._autocast = self.bf16 and not cast
        if cast:
            self._model = self._model.to(torch.bfloat16)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch with sentence-transformers."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        torch = self._torch
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast),
        ):
            vectors = self._model.encode(
                list(texts), batch_size=len(texts), convert_to_tensor=True,
                show_progress_bar=False,
            )
        # In bf16 the model's own normalisation is only good to ~1e-3.
        vectors = torch.nn.functional.normalize(vectors.float(), dim=1)
        return vectors.numpy()


class PoolEmbedder(Embedder):
    """Data parallel embedding: one single-threaded model per worker process.

    ``recipe`` says which model each worker loads (``_make_embedder``): ``("onnx", path,
    optimized, spec)`` for an onnxruntime session, ``("bf16", spec)`` for sentence-transformers
    with bf16 weights. On this 2-core machine two one-thread sessions embedded ~1.25x more passages
    per second than one two-thread session (intra-op threads synchronise on every operator of
    every batch). Batches are formed as in ``Embedder.embed`` (length-sorted) and handed out to
    the workers; a local model serves single batches and small calls without the pool.
    """

    def __init__(self, recipe: tuple[Any, ...] | Path, workers: int, optimized: bool = False):
        if not isinstance(recipe, tuple):  # an ONNX file of the default model
            recipe = ("onnx", str(recipe), optimized, DEFAULT)
        self.recipe = recipe
        self.workers = workers
        self._local = _make_embedder(recipe, threads=workers)
        self._pool: Any = None
        self._broken = False

    def _executor(self) -> Any:
        if self._pool is None:
            import multiprocessing
            import weakref
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent may hold onnxruntime or torch thread pools.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self.recipe, os.getpid()),
            )
            # Never closed (an owner's bug): stopped and waited for when this is collected
            # or the interpreter exits.
            weakref.finalize(self, _stop, self._pool)
        return self._pool

    def start(self) -> None:
        """Start the worker processes and load their models now (~1–3 s), rather than inside
        the first large ``embed`` call."""
        from concurrent.futures.process import BrokenProcessPool

        if self._broken:
            return
        pool = self._executor()
        futures = [pool.submit(_worker_embed, ["warm up"]) for _ in range(self.workers)]
        try:
            for future in futures:
                future.result()
        except BrokenProcessPool:  # as in ``embed``: this process embeds alone
            self._pool = None
            self._broken = True
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the worker processes and wait for them (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            _stop(pool)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self._local.embed_batch(texts)

    def embed(  # Embedder.embed, its batches spread over worker processes
        self, texts: Sequence[str], batch_size: int | None = None, progress: OnProgress = None
    ) -> np.ndarray:
        batch_size = batch_size or self.batch_size
        if len(texts) <= 2 * batch_size or self._broken:
            return self._local.embed(texts, batch_size, progress)
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        left = set(range(len(batches)))  # batches whose vectors are not written yet
        futures: dict[Any, int] = {}
        try:
            pool = self._executor()
            for n, ids in enumerate(batches):
                futures[pool.submit(_worker_embed, [texts[i] for i in ids])] = n
            for future in as_completed(futures):
                n = futures[future]
                vectors[batches[n]] = future.result()
                left.discard(n)
                if progress is not None:
                    progress(len(batches[n]))
        except BrokenProcessPool:
            # Workers could not start (e.g. a __main__ that spawn cannot re-import) or died:
            # finish in this process rather than lose the build.
            self._pool = None
            self._broken = True
            for n in sorted(left):
                vectors[batches[n]] = self._local.embed_batch([texts[i] for i in batches[n]])
                if progress is not None:
                    progress(len(batches[n]))
        except BaseException:
            # Ctrl-C, SIGTERM (the CLI raises for it) or an error, while batches are handed
            # out or run: the workers stop before this goes on (left to the interpreter's
            # exit, every queued batch would run first), so none outlives the process.
            for future in futures:
                future.cancel()
            self.close()
            raise
        finally:
            for future in futures:
                future.cancel()
        return vectors


def _make_embedder(recipe: tuple[Any, ...], threads: int) -> Embedder:
    if recipe[0] == "bf16":
        return TorchEmbedder(bf16=True, threads=threads, cast=True, model=recipe[1])
    _, path, optimized, model = recipe
    return OnnxEmbedder(Path(path), optimized=optimized, threads=threads, model=model)


def _stop(pool: Any) -> None:
    """Shut a process pool down: queued batches cancelled, the running ones finished (a
    batch is a few passages), every worker joined."""
    pool.shutdown(wait=True, cancel_futures=True)


_WORKER: Embedder | None = None


def _start_worker(recipe: tuple[Any, ...], parent: int) -> None:
    import signal
    import threading

    global _WORKER
    # Ctrl-C signals the whole process group: the parent stops the pool. An interrupted
    # worker would hand the interrupt back as a batch's result and carry on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()
    _WORKER = _make_embedder(recipe, threads=1)


def _exit_without(parent: int) -> None:
    """End this worker once its parent is gone (killed by SIGKILL, it could not stop the
    pool): an orphan would wait for batches forever, holding the pool's semaphores."""
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker_embed(texts: list[str]) -> np.ndarray:
    assert _WORKER is not None
    return _WORKER.embed_batch(texts)


# Passages per int8 call. Small batches keep a call's activations in the core's L2 cache and
# pad less: on 2 Zen 4 cores ~115 passages/s at 2, ~105 at 8, ~83 at 32 (docs/BENCHMARKS.md).
INT8_BATCH = 2
# Passages per bf16 call (one core each): on news passages with AMX, 126 passages/s at 32
# against 110 at 16 (median of 3 interleaved rounds).
BF16_BATCH = 32


# Builds that embed fewer passages than this on an AMX CPU take int8 without timing both:
# the calibration costs 10–30 s (mostly starting two torch processes) to gain ~10% of the
# embedding time, which pays only from a few minutes of embedding (~100 passages/s).
CALIBRATE_FROM = 20_000


def document_embedder(index_dir: Path, model: ModelSpec = DEFAULT) -> Embedder:
    """The fastest faithful document embedder of ``model`` this CPU allows
    (``DocumentEmbedder``)."""
    return DocumentEmbedder(Path(index_dir), model)


class DocumentEmbedder(Embedder):
    """The document embedder, chosen by measurement when it first embeds.

    Without AMX the int8 ONNX copy of the model wins wherever it was measured (bf16 autocast
    did 53–60 passages/s against ~120 for int8 on AVX512-BF16, and 59 against 129 on news
    passages on an AVX-512 VNNI CPU, BENCHMARKS.md): ``model.int8.onnx`` in ``index_dir``,
    one single-threaded session per core (``PoolEmbedder``) fed small batches. With AMX,
    sentence-transformers with bf16 weights, one single-threaded model per core, is as fast
    within 10% (the one AMX CPU measured: int8 121, bf16 112 passages/s on news passages,
    medians of 3 rounds; their order flipped between single runs) and more faithful (cosine
    0.9999 to fp32 against 0.984), and the margin depends on the CPU, so a build there that
    embeds at least ``CALIBRATE_FROM`` passages (``expect``) times both on the same sample
    (``calibrate``) and keeps the faster, recorded beside the index with the CPU it was
    measured on; later builds of that index on that CPU reuse the record.
    """

    def __init__(self, index_dir: Path, model: ModelSpec = DEFAULT):
        self.index_dir = index_dir
        self.model = model
        self.name, self.dimension, self.sha256 = model.name, model.dimension, model.sha256
        self.expected: int | None = None
        self._chosen: Embedder | None = None

    def expect(self, passages: int) -> None:
        """Say how many passages the build will embed (before the first ``embed``)."""
        self.expected = passages

    @property
    def chosen(self) -> Embedder:
        if self._chosen is None:
            self._chosen = self._choose()
        return self._chosen

    def _choose(self) -> Embedder:
        index_dir, model = self.index_dir, self.model
        if not cpu_has_amx():
            return _int8_embedder(index_dir, model)
        candidates = {"int8": lambda: _int8_embedder(index_dir, model),
                      "bf16": lambda: _bf16_embedder(model)}
        known = calibrated(index_dir, candidates)
        if known is None and self.expected is not None and self.expected < CALIBRATE_FROM:
            known = "int8"
        if known is not None:
            return candidates[known]()
        return calibrate(index_dir, candidates)[1]

    @property
    def precision(self) -> str:  # type: ignore[override]
        return self.chosen.precision

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        return self.chosen.batch_size

    def start(self) -> None:
        start = getattr(self.chosen, "start", None)
        if start is not None:
            start()

    def close(self) -> None:
        close = getattr(self._chosen, "close", None)
        if close is not None:
            close()

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.chosen.embed_batch(texts)

    def embed(
        self, texts: Sequence[str], batch_size: int | None = None, progress: OnProgress = None
    ) -> np.ndarray:
        return self.chosen.embed(texts, batch_size, progress)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _bf16_embedder(model: ModelSpec) -> Embedder:
    return _per_core(("bf16", model), "bf16", BF16_BATCH, model)


def _int8_embedder(index_dir: Path, model: ModelSpec) -> Embedder:
    int8 = index_dir / INT8_FILE
    if not int8.exists():
        index_dir.mkdir(parents=True, exist_ok=True)
        export_onnx(model, index_dir / ONNX_FILE, int8=int8)
    return _per_core(("onnx", str(int8), False, model), "int8", INT8_BATCH, model)


def _per_core(recipe: tuple[Any, ...], precision: str, batch_size: int,
              model: ModelSpec) -> Embedder:
    """``recipe``'s model (``_make_embedder``) once per core: a ``PoolEmbedder`` of
    single-threaded workers, or the one model itself on a single core."""
    cores = _cores()
    embedder = (PoolEmbedder(recipe, workers=cores) if cores > 1
                else _make_embedder(recipe, threads=1))
    embedder.name, embedder.dimension, embedder.sha256 = model.name, model.dimension, model.sha256
    embedder.precision = precision
    embedder.batch_size = batch_size
    return embedder


CALIBRATION_FILE = "precision.json"  # beside the index: which document embedder, and why
_WORDS = ("the minister said on tuesday that officials would announce new rules for schools "
          "after the storm closed roads across the state while prices rose and voters waited "
          "for results from the election in three counties where police reported").split()


# Passage lengths in words at the 0, 5, 25, 50, 75, 95 and 100th percentiles: news-a's
# passages (39, 101, 146, 173 and 185 word pieces at the inner five; this text makes ~1.07 a
# word). Which embedder is faster depends on the lengths: bf16 gains on long passages.
_LENGTHS = ((0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0), (24, 36, 94, 136, 161, 172, 180))


def calibration_sample(count: int = 96) -> list[str]:
    """``count`` news-like passages, fixed, their lengths spread like real news passages'."""
    import numpy as np

    out = []
    for i in range(count):
        words = int(np.interp(((i * 37) % count) / max(1, count - 1), *_LENGTHS))
        chosen = [_WORDS[(i * 7 + j * 13 + j * j) % len(_WORDS)] for j in range(words)]
        out.append(". ".join(" ".join(chosen[k : k + 16]).capitalize()
                             for k in range(0, words, 16)) + ".")
    return out


def calibrated(index_dir: Path, candidates: dict[str, Any]) -> str | None:
    """The choice ``calibrate`` recorded in ``index_dir`` for this CPU model, if any."""
    import json

    try:
        known = json.loads((Path(index_dir) / CALIBRATION_FILE).read_text(encoding="utf-8"))
        if known.get("cpu") == cpu_model() and known.get("choice") in candidates:
            return str(known["choice"])
    except (OSError, ValueError, AttributeError):
        pass
    return None


def calibrate(index_dir: Path, candidates: dict[str, Callable[[], Embedder]],
              sample: list[str] | None = None) -> tuple[str, Embedder]:
    """The fastest of ``candidates`` (makers of document embedders) on this CPU, by name and
    ready to use: each is made (a pool starts its workers), embeds ``sample`` once to warm up
    (loading, first calls, kernels for new shapes) and once timed; the slower ones are closed.
    The rates are recorded in ``CALIBRATION_FILE`` in ``index_dir`` with the CPU model, for
    ``calibrated``."""
    import json
    import time

    sample = sample or calibration_sample()
    rates: dict[str, float] = {}
    made: dict[str, Embedder] = {}
    for name, make in candidates.items():
        embedder = made[name] = make()
        start_workers = getattr(embedder, "start", None)
        if start_workers is not None:  # a pool: its processes load their models first
            start_workers()
        embedder.embed(sample)
        start = time.perf_counter()
        embedder.embed(sample)
        rates[name] = round(len(sample) / (time.perf_counter() - start), 1)
    choice = max(rates, key=rates.__getitem__)
    for name, embedder in made.items():
        close = getattr(embedder, "close", None)
        if name != choice and close is not None:
            close()
    Path(index_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(index_dir) / CALIBRATION_FILE, json.dumps(
        {"cpu": cpu_model(), "choice": choice, "passages_per_s": rates}).encode())
    return choice, made[choice]


