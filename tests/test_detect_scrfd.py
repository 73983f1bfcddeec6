"""SCRFD decoding through real ONNX Runtime on tiny synthetic graphs with the model-pack layout.

No SCRFD weights exist on these machines, so each test builds an ONNX graph (onnx.helper)
whose nine outputs are known score / distance / keypoint maps laid out exactly as
insightface's det_10g / det_500m emit them; the decoder must find the faces we planted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import DetectorConfig
from pipeline.detect import create_detector
from pipeline.detect.scrfd import anchor_centres
from pipeline.errors import ModelError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

INPUT_PX = 64
STRIDES = (8, 16, 32)
KPS_A = np.array([[-0.5, -0.25], [0.5, -0.25], [0.0, 0.25], [-0.4, 1.0], [0.4, 1.0]])
KPS_B = np.array([[-0.3, -0.2], [0.3, -0.2], [0.0, 0.1], [-0.2, 0.4], [0.2, 0.4]])


def planted_maps() -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per stride: scores (K, 1), distances (K, 4), keypoints (K, 10), in stride units.

    Face A: stride 8, grid cell x=3 y=2, anchor 1 (row 39), centre (24, 16), box (12, 0, 36, 36),
    score 0.9; a weaker duplicate on anchor 0 (row 38) that NMS must remove; a 0.3 blip below
    the threshold. Face B: stride 16, cell x=3 y=3, anchor 0 (row 30), centre (48, 48),
    box (32, 32, 64, 64), score 0.75.
    """
    maps = {}
    for stride in STRIDES:
        rows = (INPUT_PX // stride) ** 2 * 2
        maps[stride] = (np.zeros((rows, 1), np.float32), np.zeros((rows, 4), np.float32),
                        np.zeros((rows, 10), np.float32))
    scores, dist, kps = maps[8]
    scores[39], dist[39], kps[39] = 0.9, (1.5, 2.0, 1.5, 2.5), KPS_A.reshape(-1)
    scores[38], dist[38] = 0.8, (1.4, 2.0, 1.6, 2.5)
    scores[0], dist[0] = 0.3, (1.0, 1.0, 1.0, 1.0)
    scores, dist, kps = maps[16]
    scores[30], dist[30], kps[30] = 0.75, (1.0, 1.0, 1.0, 1.0), KPS_B.reshape(-1)
    return maps


EXPECTED_A_BOX = (12.0, 0.0, 36.0, 36.0)
EXPECTED_A_KPS = np.array([24.0, 16.0]) + KPS_A * 8
EXPECTED_B_BOX = (32.0, 32.0, 64.0, 64.0)
EXPECTED_B_KPS = np.array([48.0, 48.0]) + KPS_B * 16


def build_scrfd_graph(path: Path, named_outputs: bool = False, dynamic: bool = False,
                      kps_columns: int = 10) -> Path:
    maps = planted_maps()
    side: int | str = "?" if dynamic else INPUT_PX
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, side, side])
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outputs = []
    order = [(kind, stride) for kind in ("score", "bbox", "kps") for stride in STRIDES]
    if named_outputs:  # names carry the role, so shuffle the order to prove they are used
        order = order[::-1]
    for i, (kind, stride) in enumerate(order):
        value = maps[stride][("score", "bbox", "kps").index(kind)]
        if kind == "kps" and kps_columns != 10:
            value = np.zeros((value.shape[0], kps_columns), np.float32)
        name = f"{kind}_{stride}" if named_outputs else str(400 + i)
        initializers.append(numpy_helper.from_array(value, f"const_{name}"))
        nodes.append(helper.make_node("Add", [f"const_{name}", "nothing"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "scrfd_synthetic", [image], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detector_for(model: Path, **overrides: object):
    settings = {"score_threshold": 0.5, "min_face_px": 4, **overrides}
    cfg = DetectorConfig(backend="scrfd", model_path=model, **settings)
    detector = create_detector(cfg)
    detector.start()
    return detector


def image(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def test_anchor_centres_follow_scrfd_row_order() -> None:
    centres = anchor_centres(64, 64, 8)
    assert centres.shape == (128, 2)
    assert centres[:4].tolist() == [[0, 0], [0, 0], [8, 0], [8, 0]]
    assert centres[39].tolist() == [24, 16]  # row (2 * 8 + 3) * 2 + 1


def test_decodes_planted_faces_with_positional_outputs(tmp_path: Path) -> None:
    detector = detector_for(build_scrfd_graph(tmp_path / "det.onnx"))
    faces = detector.detect(image(64, 64))
    assert [round(f.score, 2) for f in faces] == [0.9, 0.75]  # duplicate and blip are gone
    assert faces[0].bbox_xyxy == pytest.approx(EXPECTED_A_BOX)
    assert faces[1].bbox_xyxy == pytest.approx(EXPECTED_B_BOX)
    np.testing.assert_allclose(faces[0].landmarks_xy, EXPECTED_A_KPS, atol=1e-4)
    np.testing.assert_allclose(faces[1].landmarks_xy, EXPECTED_B_KPS, atol=1e-4)


def test_fixed_input_letterbox_maps_back_to_frame_pixels(tmp_path: Path) -> None:
    detector = detector_for(build_scrfd_graph(tmp_path / "det.onnx"))
    faces = detector.detect(image(96, 128))  # scaled by 0.5 into the 64x64 input, padded below
    assert faces[0].bbox_xyxy == pytest.approx(tuple(2 * v for v in EXPECTED_A_BOX))
    np.testing.assert_allclose(faces[0].landmarks_xy, 2 * EXPECTED_A_KPS, atol=1e-3)
    x1, y1, x2, y2 = (2 * v for v in EXPECTED_B_BOX)
    assert faces[1].bbox_xyxy == pytest.approx((x1, y1, x2, min(y2, 96.0)))  # clipped to frame


def test_named_outputs_dynamic_input_and_min_face(tmp_path: Path) -> None:
    model = build_scrfd_graph(tmp_path / "det.onnx", named_outputs=True, dynamic=True)
    faces = detector_for(model).detect(image(64, 64))
    assert [f.bbox_xyxy for f in faces] == [pytest.approx(EXPECTED_A_BOX),
                                            pytest.approx(EXPECTED_B_BOX)]
    # face size is the longer box side: A is 24x36 (36 px), B is 32x32 (32 px)
    big_only = detector_for(model, min_face_px=34).detect(image(64, 64))
    assert len(big_only) == 1
    assert big_only[0].bbox_xyxy == pytest.approx(EXPECTED_A_BOX)
    assert len(detector_for(model, min_face_px=37).detect(image(64, 64))) == 0


def test_score_threshold_applies_to_scrfd(tmp_path: Path) -> None:
    model = build_scrfd_graph(tmp_path / "det.onnx", named_outputs=True, dynamic=True)
    faces = detector_for(model, score_threshold=0.8).detect(image(64, 64))
    assert [f.bbox_xyxy for f in faces] == [pytest.approx(EXPECTED_A_BOX)]


def test_maps_that_do_not_fit_the_input_are_a_model_error(tmp_path: Path) -> None:
    model = build_scrfd_graph(tmp_path / "det.onnx", named_outputs=True, dynamic=True)
    with pytest.raises(ModelError, match="stride 8: expected 512 score rows"):
        detector_for(model).detect(image(128, 128))


def test_wrong_output_layout_is_a_model_error(tmp_path: Path) -> None:
    model = build_scrfd_graph(tmp_path / "odd.onnx", kps_columns=6)
    detector = create_detector(DetectorConfig(backend="scrfd", model_path=model))
    with pytest.raises(ModelError, match="expected 10 columns, got 6"):
        detector.start()
