"""Model artifact manifests: weights + a JSON file describing how to feed and read them.

A manifest sits next to its ONNX file (``onnx_file`` is relative to the manifest). The
loader checks every field and the ONNX file's sha256 and raises
:class:`pipeline.errors.ModelError` with "expected X, got Y" messages, so a wrong or stale
artifact fails at start-up instead of producing wrong probabilities later. No code is ever
executed to load an artifact. This module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ModelError

FORMAT_VERSION = 1
TASKS = ("emotion", "sr")
COLORS = ("gray", "rgb", "bgr")


@dataclass(frozen=True)
class ModelManifest:
    """What the runtime needs to know about one exported model.

    ``temperature`` divides the logits before the softmax (calibrated on FER2013Valid for the
    emotion model). ``logit_bias`` (one value per output, or empty) is added to the logits
    first: a post-hoc logit adjustment that trades precision for recall of chosen classes.
    ``non_face_class`` names an output that is not an emotion but "this crop is not a face";
    crops whose probability of it reaches ``non_face_threshold`` are rejected.
    ``architecture`` and ``weights_file`` (a state-dict ``.pt`` loaded with
    ``weights_only=True``) are optional and only used by the torch backend.
    """

    name: str
    task: str
    onnx_file: str
    input_size_hw: tuple[int, int]
    channels: int
    color: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    scale_factor: int | None = None
    temperature: float = 1.0
    logit_bias: tuple[float, ...] = ()
    non_face_class: str | None = None
    non_face_threshold: float = 1.0
    checkpoint_sha256: str = ""
    onnx_sha256: str = ""
    input_name: str = "input"
    output_name: str = "logits"
    architecture: dict[str, Any] = field(default_factory=dict)
    weights_file: str | None = None
    weights_sha256: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    manifest_path: Path | None = field(default=None, compare=False, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.manifest_path.parent if self.manifest_path is not None else Path(".")

    @property
    def onnx_path(self) -> Path:
        return self.base_dir / self.onnx_file

    @property
    def weights_path(self) -> Path | None:
        return self.base_dir / self.weights_file if self.weights_file else None

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("manifest_path")
        data["input_size_hw"] = list(self.input_size_hw)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["class_names"] = list(self.class_names)
        data["logit_bias"] = list(self.logit_bias)
        return data


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_FIELDS = {f for f in ModelManifest.__dataclass_fields__ if f != "manifest_path"}
_REQUIRED = ("name", "task", "onnx_file", "input_size_hw", "channels", "color", "mean", "std")


def _fail(path: Path, msg: str) -> ModelError:
    return ModelError(f"{path}: {msg}")


def _validate(raw: Any, path: Path) -> ModelManifest:
    if not isinstance(raw, dict):
        raise _fail(path, f"expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise _fail(path, f"expected only known manifest keys, got unknown {unknown}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _fail(path, f"expected keys {missing}, got none")
    if raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise _fail(path, f"format_version: expected {FORMAT_VERSION}, "
                          f"got {raw.get('format_version')!r}")
    if raw["task"] not in TASKS:
        raise _fail(path, f"task: expected one of {TASKS}, got {raw['task']!r}")
    if raw["color"] not in COLORS:
        raise _fail(path, f"color: expected one of {COLORS}, got {raw['color']!r}")
    hw = raw["input_size_hw"]
    if (not isinstance(hw, list) or len(hw) != 2
            or not all(isinstance(v, int) and v > 0 for v in hw)):
        raise _fail(path, f"input_size_hw: expected [height, width] positive ints, got {hw!r}")
    channels = raw["channels"]
    want_ch = 1 if raw["color"] == "gray" else 3
    if channels != want_ch:
        raise _fail(path, f"channels: expected {want_ch} for color {raw['color']!r}, "
                          f"got {channels!r}")
    for key in ("mean", "std"):
        vals = raw[key]
        if (not isinstance(vals, list) or len(vals) != channels
                or not all(isinstance(v, int | float) for v in vals)):
            raise _fail(path, f"{key}: expected {channels} numbers, got {vals!r}")
    if any(v <= 0 for v in raw["std"]):
        raise _fail(path, f"std: expected positive values, got {raw['std']!r}")
    names = raw.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(path, f"class_names: expected a list of strings, got {names!r}")
    if raw["task"] == "emotion" and len(names) < 2:
        raise _fail(path, f"class_names: expected at least 2 classes for task 'emotion', "
                          f"got {names!r}")
    if len(set(names)) != len(names):
        raise _fail(path, f"class_names: expected unique names, got {names!r}")
    sf = raw.get("scale_factor")
    if raw["task"] == "sr" and not (isinstance(sf, int) and sf >= 1):
        raise _fail(path, f"scale_factor: expected a positive int for task 'sr', got {sf!r}")
    temp = raw.get("temperature", 1.0)
    if not isinstance(temp, int | float) or not math.isfinite(temp) or temp <= 0:
        raise _fail(path, f"temperature: expected a positive finite number, got {temp!r}")
    bias = raw.get("logit_bias", [])
    if (not isinstance(bias, list) or len(bias) not in (0, len(names))
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in bias)):
        raise _fail(path, f"logit_bias: expected [] or {len(names)} finite numbers (one per "
                          f"class), got {bias!r}")
    nf = raw.get("non_face_class")
    if nf is not None and nf not in names:
        raise _fail(path, f"non_face_class: expected one of class_names {names}, got {nf!r}")
    if nf is not None and len(names) < 3:
        raise _fail(path, f"class_names: expected at least 2 emotions besides {nf!r}, "
                          f"got {names!r}")
    nf_t = raw.get("non_face_threshold", 1.0)
    if not isinstance(nf_t, int | float) or not 0.0 < nf_t <= 1.0:
        raise _fail(path, f"non_face_threshold: expected a probability in (0, 1], got {nf_t!r}")
    for key in ("architecture", "training", "metrics"):
        if not isinstance(raw.get(key, {}), dict):
            raise _fail(path, f"{key}: expected an object, got {type(raw[key]).__name__}")
    return ModelManifest(
        name=str(raw["name"]), task=raw["task"], onnx_file=str(raw["onnx_file"]),
        input_size_hw=(int(hw[0]), int(hw[1])), channels=int(channels), color=raw["color"],
        mean=tuple(float(v) for v in raw["mean"]), std=tuple(float(v) for v in raw["std"]),
        class_names=tuple(names), scale_factor=sf, temperature=float(temp),
        logit_bias=tuple(float(v) for v in bias), non_face_class=nf,
        non_face_threshold=float(nf_t),
        checkpoint_sha256=str(raw.get("checkpoint_sha256", "")),
        onnx_sha256=str(raw.get("onnx_sha256", "")),
        input_name=str(raw.get("input_name", "input")),
        output_name=str(raw.get("output_name", "logits")),
        architecture=dict(raw.get("architecture", {})),
        weights_file=raw.get("weights_file"), weights_sha256=raw.get("weights_sha256"),
        training=dict(raw.get("training", {})), metrics=dict(raw.get("metrics", {})),
        format_version=int(raw.get("format_version", FORMAT_VERSION)), manifest_path=path)


def load_manifest(path: str | Path, expect_task: str | None = None,
                  expect_class_names: Sequence[str] | None = None,
                  expect_input_size_hw: tuple[int, int] | None = None,
                  verify_files: bool = True) -> ModelManifest:
    """Read and validate a manifest; check the ONNX file exists and matches its sha256."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelError(f"{path}: expected a model manifest file, got none") from err
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: cannot read manifest JSON: {err}") from err
    m = _validate(raw, path)
    if expect_task is not None and m.task != expect_task:
        raise _fail(path, f"task: expected {expect_task!r}, got {m.task!r}")
    if expect_class_names is not None and tuple(expect_class_names) != m.class_names:
        raise _fail(path, f"class_names: expected {list(expect_class_names)}, "
                          f"got {list(m.class_names)}")
    if expect_input_size_hw is not None and tuple(expect_input_size_hw) != m.input_size_hw:
        raise _fail(path, f"input_size_hw: expected {list(expect_input_size_hw)}, "
                          f"got {list(m.input_size_hw)}")
    if verify_files:
        if not m.onnx_path.is_file():
            raise _fail(path, f"onnx_file: expected a file at {m.onnx_path}, got none")
        if m.onnx_sha256:
            actual = sha256_file(m.onnx_path)
            if actual != m.onnx_sha256:
                raise _fail(path, f"onnx_sha256: expected {m.onnx_sha256}, got {actual} "
                                  f"(file {m.onnx_path} changed since export)")
    return m


def verify_weights_file(m: ModelManifest) -> Path:
    """Check the optional torch state-dict file named by the manifest; return its path."""
    wp = m.weights_path
    where = m.manifest_path or Path("<manifest>")
    if wp is None:
        raise _fail(where, "weights_file: expected a state-dict file for the torch backend, "
                           "got none")
    if not wp.is_file():
        raise _fail(where, f"weights_file: expected a file at {wp}, got none")
    if m.weights_sha256 and sha256_file(wp) != m.weights_sha256:
        raise _fail(where, f"weights_sha256: expected {m.weights_sha256}, "
                           f"got {sha256_file(wp)}")
    if not m.architecture:
        raise _fail(where, "architecture: expected the network description for the torch "
                           "backend, got none")
    return wp


def write_manifest(manifest: ModelManifest, path: str | Path) -> Path:
    """Write ``manifest`` as JSON at ``path`` (validated by a round trip through the loader)."""
    path = Path(path)
    data = manifest.to_json_dict()
    _validate(json.loads(json.dumps(data)), path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path
