"""Opening a detector's ONNX graph on the runtime its config names (engines/runtime/graph.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from engines.runtime.graph import GraphSession, open_graph
from pipeline.config import DetectorConfig
from pipeline.errors import ModelError

log = logging.getLogger(__name__)


def open_session(model_path: Path, cfg: DetectorConfig,
                 varying_input_shape: bool = False) -> GraphSession:
    """``model_path`` opened on ``cfg.runtime`` (backend, device, precision) with
    ``cfg.threads`` CPU threads; ``run`` / ``get_inputs`` / ``get_outputs`` as in ONNX Runtime.

    ``varying_input_shape`` turns off ONNX Runtime's memory-pattern planning, which only pays
    off when every call has the same shape. A CUDA device this machine cannot give falls back
    to ONNX Runtime on the CPU with a warning. Raises ModelError for a missing or unloadable
    model.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"detector model not found: {model_path}")
    runtime = cfg.runtime
    try:
        graph = open_graph(model_path, runtime.backend, runtime.device, runtime.precision,
                           cfg.threads, varying_input_shape)
    except ModelError as err:
        raise ModelError(f"cannot load detector model {model_path}: {err}") from err
    log.info("detector graph %s runs on %s", model_path.name, graph.description)
    return graph
