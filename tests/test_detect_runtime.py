"""Detector graphs through engines/runtime/graph.py: backend selection, the CUDA fallback,
and the torch graph runner computing what ONNX Runtime computes (real MTCNN and YuNet
graphs, the synthetic SCRFD graph, and small graphs for the operators the real ones use)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from benchmarks.gpu_models import random_feeds
from engines.runtime.graph import cuda_index, open_graph
from pipeline.config import DetectorConfig
from pipeline.detect import create_detector
from pipeline.detect.mtcnn import mtcnn_model_dir
from pipeline.errors import ModelError
from tests.test_detect_backends import group_photo
from tests.test_detect_scrfd import EXPECTED_A_BOX, EXPECTED_B_BOX, build_scrfd_graph, image

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from engines.runtime.onnx_torch import OPS, TorchOnnxGraph, _ops  # noqa: E402

FP32_ATOL = 1e-4  # issue 16: fp32 parity target, in probabilities
NO_CUDA = not torch.cuda.is_available()


def assert_same_outputs(path: Path, side: int = 64,
                        value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
    reference = open_graph(path, "onnxruntime", "cpu")
    graph = open_graph(path, "torch", "cpu")
    assert (graph.backend, graph.device, graph.fallback_reason) == ("torch", "cpu", None)
    feeds = random_feeds(reference, np.random.default_rng(), 2, side, value_range)
    names = [o.name for o in reference.get_outputs()]
    want = reference.run(names, feeds)
    got = graph.run(names, feeds)
    for name, w, g in zip(names, want, got, strict=True):
        assert g.shape == w.shape, f"{path.name} {name}: expected {w.shape}, got {g.shape}"
        np.testing.assert_allclose(g, w, atol=FP32_ATOL, rtol=FP32_ATOL,
                                   err_msg=f"{path.name} {name}")


@pytest.mark.parametrize("net", ["pnet", "rnet", "onet"])
def test_torch_runner_matches_onnxruntime_on_mtcnn_graphs(net: str) -> None:
    assert_same_outputs(mtcnn_model_dir() / f"{net}.onnx")


def test_torch_runner_matches_onnxruntime_on_yunet(yunet_model: Path) -> None:
    assert_same_outputs(yunet_model, side=96, value_range=(0.0, 255.0))  # raw BGR pixels


def _graph(tmp_path: Path, nodes, inputs, outputs, inits=(), opset: int = 13) -> Path:
    graph = helper.make_graph(nodes, "ops", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "ops.onnx"
    onnx.save(model, str(path))
    return path


def test_torch_runner_matches_onnxruntime_on_padding_resize_and_old_softmax(
        tmp_path: Path) -> None:
    """The attribute forms detector exports use: SAME_UPPER and asymmetric pads, integer
    nearest up-sampling, Gemm with a transposed weight, and softmax before opset 13 (over the
    flattened tail)."""
    rng = np.random.default_rng(3)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 11])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 10, 12])
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
             numpy_helper.from_array(rng.normal(size=(5, 4 * 10 * 12)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.array([0.25], np.float32), "slope")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[0, 1, 2, 1], strides=[1, 1]),
        helper.make_node("PRelu", ["c", "slope"], ["p"]),
        helper.make_node("MaxPool", ["p"], ["m"], kernel_shape=[3, 3], strides=[2, 2],
                         auto_pad="SAME_UPPER"),
        helper.make_node("Resize", ["m", "roi", "scales"], ["r"], mode="nearest"),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y"], axis=1),
        helper.make_node("Softmax", ["r"], ["z"], axis=2),
    ]
    path = _graph(tmp_path, nodes, [x], [y, z], inits, opset=11)
    assert_same_outputs(path)


def test_unsupported_operator_fails_at_load_naming_it(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    path = _graph(tmp_path, [helper.make_node("LRN", ["x"], ["y"], size=3)], [x], [y])
    with pytest.raises(ModelError, match=r"operators \['LRN'\]"):
        TorchOnnxGraph(path)


def test_ops_table_lists_every_supported_operator() -> None:
    assert set(OPS) == set(_ops(torch, 13)) | {"Constant"}


def test_device_names_are_checked() -> None:
    assert cuda_index("cpu") is None
    assert cuda_index("cuda") == 0
    assert cuda_index("cuda:1") == 1
    with pytest.raises(ModelError, match="expected 'cpu' or 'cuda"):
        cuda_index("gpu")


def test_config_rejects_bad_runtime() -> None:
    with pytest.raises(ValidationError, match="device"):
        DetectorConfig(runtime={"device": "gpu0"})
    with pytest.raises(ValidationError, match="backend"):
        DetectorConfig(runtime={"backend": "tensorrt"})
    with pytest.raises(ValidationError, match="precision"):
        DetectorConfig(runtime={"precision": "int8"})


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: nothing falls back")
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_cuda_without_a_gpu_falls_back_to_onnxruntime_cpu_with_a_warning(
        backend: str, caplog: pytest.LogCaptureFixture) -> None:
    path = mtcnn_model_dir() / "rnet.onnx"
    with caplog.at_level(logging.WARNING, logger="engines.runtime.graph"):
        graph = open_graph(path, backend, "cuda:0", precision="fp16")
    assert (graph.backend, graph.device, graph.precision) == ("onnxruntime", "cpu", "fp32")
    assert graph.fallback_reason
    assert "fallback" in graph.description
    assert any("running onnxruntime on the CPU" in r.getMessage() for r in caplog.records)


def _mtcnn(**runtime: str):
    cfg = DetectorConfig(backend="mtcnn", min_face_px=20, score_threshold=0.7,
                         runtime=runtime or {})
    detector = create_detector(cfg)
    detector.start()
    return detector


def _assert_same_faces(got: list, want: list) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g.bbox_xyxy == pytest.approx(w.bbox_xyxy, abs=1e-2)
        assert g.score == pytest.approx(w.score, abs=FP32_ATOL)
        np.testing.assert_allclose(g.landmarks_xy, w.landmarks_xy, atol=1e-2)


def test_mtcnn_on_the_torch_runtime_finds_the_same_faces() -> None:
    photo = group_photo()
    reference = _mtcnn()
    on_torch = _mtcnn(backend="torch", device="cpu")
    try:
        assert on_torch._pnet.backend == "torch"
        _assert_same_faces(on_torch.detect(photo), reference.detect(photo))
    finally:
        reference.stop()
        on_torch.stop()


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: nothing falls back")
def test_mtcnn_configured_for_cuda_starts_on_a_cpu_machine_with_the_same_faces() -> None:
    photo = group_photo()
    reference = _mtcnn()
    fallback = _mtcnn(backend="torch", device="cuda", precision="fp16")
    try:
        assert all(s.fallback_reason for s in (fallback._pnet, fallback._rnet, fallback._onet))
        faces = fallback.detect(photo)
        want = reference.detect(photo)
        assert [(f.bbox_xyxy, f.score) for f in faces] == [(f.bbox_xyxy, f.score) for f in want]
    finally:
        reference.stop()
        fallback.stop()


def test_scrfd_on_the_torch_runtime_decodes_the_planted_faces(tmp_path: Path) -> None:
    model = build_scrfd_graph(tmp_path / "det.onnx", named_outputs=True, dynamic=True)
    cfg = DetectorConfig(backend="scrfd", model_path=model, score_threshold=0.5, min_face_px=4,
                         runtime={"backend": "torch"})
    detector = create_detector(cfg)
    detector.start()
    faces = detector.detect(image(64, 64))
    assert [f.bbox_xyxy for f in faces] == [pytest.approx(EXPECTED_A_BOX),
                                            pytest.approx(EXPECTED_B_BOX)]


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def test_yunet_graph_on_torch_finds_what_onnxruntime_finds(yunet_model: Path,
                                                          town_centre_clip: Path) -> None:
    """YuNet's graph on the torch runtime finds the faces it finds on the default ONNX Runtime
    (itself checked against OpenCV's FaceDetectorYN in tests/test_detect_backends.py): same
    faces on real 1080p CCTV (box IoU >= 0.9, scores within 1e-3)."""
    import av

    with av.open(str(town_centre_clip)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    settings = {"backend": "yunet", "model_path": yunet_model, "min_face_px": 10.0,
                "score_threshold": 0.6}
    reference = create_detector(DetectorConfig(**settings))
    graph = create_detector(DetectorConfig(**settings, runtime={"backend": "torch"}))
    reference.start()
    graph.start()
    want, got = reference.detect(frame), graph.detect(frame)
    assert len(want) >= 3 and len(got) == len(want)
    for w in want:
        best = max(got, key=lambda g, w=w: _iou(g.bbox_xyxy, w.bbox_xyxy))
        assert _iou(best.bbox_xyxy, w.bbox_xyxy) >= 0.9
        assert best.score == pytest.approx(w.score, abs=1e-3)
        np.testing.assert_allclose(best.landmarks_xy, w.landmarks_xy, atol=1.0)
