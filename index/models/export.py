"""A model's ONNX export, the query encoder of every index built with it: made from the
verified weights (pooling and normalisation in the graph), optimised by onnxruntime, an int8
copy for documents beside it; exported once per model into a shared cache and linked into
each index, whose stamp (``model.onnx.sha256``) says which export it holds.

Nothing heavy is imported at module level; torch and transformers load inside ``export_onnx``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..disk import fsync_dir, link_atomic, write_atomic
from ..errors import IndexDamaged, ModelError
from .cpu import cpu_has_vnni
from .spec import ModelSpec, sha256_file

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OUTPUT = "sentence_embedding"
ONNX_FILE = "model.onnx"  # the fp32 query encoder, in the index directory
INT8_FILE = "model.int8.onnx"  # int8 document encoder (made at build, CPU-specific)
STAMP = f"{ONNX_FILE}.sha256"  # the export's digest: which export the index holds
MODELS = "models"  # in an index: the exports of models other than the default, one folder each


def export_folder(index_dir: Path, model: ModelSpec) -> Path:
    """Where ``model``'s export lives in an index: the index folder itself for the default
    model (as indexes always had it), ``models/<weights digest>/`` for any other, so an index
    rebuilt with another model never pairs one model's vectors with another's encoder."""
    return Path(index_dir) if model.default else Path(index_dir) / MODELS / model.export_name


def ensure_query_model(index_dir: Path, model: ModelSpec, verify: bool = False,
                       cache: Path | None = None, int8: bool = False) -> None:
    """Export ``model``'s ONNX query encoder (and with ``int8`` the int8 document encoder)
    into ``index_dir`` once.

    With ``cache`` the export is made once per model in ``cache`` and hard-linked into each
    index (copied where links cannot be made), so a new docs folder costs no export and no
    second 90 MB copy. With ``verify`` (builds and updates), an export whose sha256 no longer
    matches the one recorded beside it (truncated, corrupt) is exported again.
    """
    index_dir = Path(index_dir)
    target = index_dir / ONNX_FILE
    stamp = index_dir / STAMP
    # Its external weights (model.onnx.data) are vouched for by the stamp's digest.
    names = [ONNX_FILE, *([INT8_FILE] if int8 else []), stamp.name]
    intact = all((index_dir / name).exists() for name in names)
    if intact and verify:
        try:
            intact = stamp.read_bytes().decode("ascii").strip() == onnx_digest(target)
        except (OSError, UnicodeDecodeError):
            intact = False
    if intact:
        return
    index_dir.mkdir(parents=True, exist_ok=True)
    if cache is not None and Path(cache).resolve() != index_dir.resolve():
        from filelock import FileLock

        shared = Path(cache) / model.export_name
        shared.mkdir(parents=True, exist_ok=True)
        with FileLock(shared / ".lock"):  # two first builds export it once
            ensure_query_model(shared, model, verify=True, int8=int8)
        weights = [data_name(target)] if (shared / data_name(target)).exists() else []
        for name in [*weights, *names]:  # the stamp last: it vouches for the others
            link_atomic(shared / name, index_dir / name)
        return
    # export_onnx replaces the files atomically: readers never see them missing.
    digest = export_onnx(model, target, int8=index_dir / INT8_FILE if int8 else None)
    write_atomic(stamp, digest.encode())


def check_query_model(index_dir: Path, full: bool = False) -> None:
    """IndexDamaged unless the exported query model is the one its stamp records. Files not
    modified since the stamp was written are trusted (a cold ``qa ask`` does not hash 90 MB);
    ``full`` hashes them anyway (``qa index status``)."""
    target = index_dir / ONNX_FILE
    damaged = IndexDamaged(
        f"index at {index_dir} is damaged (the query model {ONNX_FILE} does not match its "
        "recorded sha256): run `qa index build`"
    )
    try:
        recorded = (index_dir / STAMP).read_bytes().decode("ascii").strip()
        stamped = stamp_time(index_dir)
        newest = max(p.stat().st_mtime_ns for p in (target, target.with_name(data_name(target)))
                     if p.exists())
    except (OSError, UnicodeDecodeError, ValueError):
        raise damaged from None
    if (full or newest > stamped) and onnx_digest(target) != recorded:
        raise damaged


def stamp_time(index_dir: Path) -> int:
    """When the index's export was made (its stamp's mtime, ns): the model's files not
    modified since are the ones it was made from. OSError when there is no export."""
    return (Path(index_dir) / STAMP).stat().st_mtime_ns


def export_onnx(model: ModelSpec, dest: Path, int8: Path | None = None) -> str:
    """Export ``model``'s verified weights as the query encoder at ``dest`` and return its
    sha256.

    The graph includes the model's pooling and L2 normalisation: inputs ``input_ids``,
    ``attention_mask`` and (where the model takes them) ``token_type_ids`` (int64, dynamic
    batch and sequence), output ``sentence_embedding`` [batch, dimension]. It is stored
    already optimised by onnxruntime (fused attention and layer norms, so opening it skips
    that work) with its weights in ``<dest>.data`` beside it (external data: onnxruntime
    reads them without parsing a 90 MB protobuf). Both files are written in a scratch folder,
    checked against torch at a shape other than the traced one, then moved into place data
    first, graph last, each atomically. The returned digest covers both files (see
    ``onnx_digest``). With ``int8``, an int8 copy for embedding documents (``quantize_onnx``)
    is written there too.
    """
    import torch

    dest = Path(dest)
    bert = _transformer(model)
    inputs = _inputs(bert)
    module = _pooled(torch, bert, model.pooling, inputs)
    vocabulary = int(getattr(bert.config, "vocab_size", 30522))
    scratch = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        raw = scratch / "raw.onnx"
        _trace(torch, module, raw, inputs, vocabulary)
        _check_export(torch, module, raw, inputs, vocabulary)
        graph = scratch / dest.name
        data = scratch / data_name(dest)
        optimize_onnx(raw, graph, data.name)
        _check_export(torch, module, graph, inputs, vocabulary)
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


def _transformer(model: ModelSpec) -> Any:
    """The model's transformer from its verified folder, in eval mode."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    directory = model.verified()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # Eager attention traces to plain ops; SDPA's tracing path bakes in Python booleans.
        return AutoModel.from_pretrained(directory, attn_implementation="eager").eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def _trace(torch: Any, module: Any, path: Path, inputs: tuple[str, ...],
           vocabulary: int) -> None:
    """The TorchScript ONNX export of ``module`` at ``path`` (dynamic batch and sequence)."""
    sample = _sample_inputs(torch, 2, 8, vocabulary)[: len(inputs)]
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[ONNX_OUTPUT] = {0: "batch"}
    with warnings.catch_warnings():
        # Known and harmless here: the legacy exporter's deprecation notice, tracer notes
        # about shape checks that are constant for BERT, and the aten::index rewrite.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index", category=UserWarning)
        # The dynamo exporter needs onnxscript; the TorchScript one is offline and fast.
        torch.onnx.export(
            module, sample, str(path), input_names=list(inputs),
            output_names=[ONNX_OUTPUT], dynamic_axes=axes, opset_version=17, dynamo=False,
        )


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


def _inputs(bert: Any) -> tuple[str, ...]:
    """The ONNX inputs the transformer takes (not every model has token types)."""
    import inspect

    taken = inspect.signature(bert.forward).parameters
    return tuple(name for name in ONNX_INPUTS if name in taken)


def _pooled(torch: Any, bert: Any, pooling: str, inputs: tuple[str, ...]) -> Any:
    class Pooled(torch.nn.Module):
        """Transformer → pooling (masked mean, first token, or masked max) → L2 normalise
        (as sentence-transformers does)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, *tensors: Any) -> Any:
            named = dict(zip(inputs, tensors, strict=True))
            hidden = self.bert(**named).last_hidden_state
            mask = named["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if pooling == "cls":
                pooled = hidden[:, 0]
            elif pooling == "max":
                pooled = (hidden + (mask - 1) * 1e9).max(1).values
            else:
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled().eval()


def _sample_inputs(torch: Any, batch: int, length: int, vocabulary: int) -> tuple[Any, Any, Any]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(min(1000, vocabulary - 1), vocabulary, (batch, length),
                        generator=generator)
    mask = torch.ones_like(ids)
    mask[1:, length // 2 :] = 0  # padded rows, so the mask path is traced
    ids[mask == 0] = 0
    return ids, mask, torch.zeros_like(ids)


def _check_export(torch: Any, module: Any, path: Path, inputs: tuple[str, ...],
                  vocabulary: int) -> None:
    """Run the exported file at a shape other than the traced one and compare with torch."""
    import numpy as np
    import onnxruntime as ort

    sample = _sample_inputs(torch, 3, 37, vocabulary)[: len(inputs)]
    with torch.inference_mode():
        expected = module(*sample).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: tensor.numpy() for name, tensor in zip(inputs, sample, strict=True)}
    (got,) = session.run([ONNX_OUTPUT], feed)
    if got.shape != expected.shape or float(np.abs(got - expected).max()) > 1e-4:
        raise ModelError(
            "the ONNX export does not reproduce the model's vectors; report this with your "
            "torch and onnxruntime versions"
        )
