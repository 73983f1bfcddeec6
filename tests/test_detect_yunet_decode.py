"""YuNet's output decoding (pipeline/detect/yunet.py ``decode_yunet``) on hand-built outputs:
cell offsets, log sizes, landmarks, the score from cls and obj, and a model that does not fit.
No model file needed, except to check the output names; the real graph is checked against
OpenCV in test_detect_backends.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.detect.yunet import OUTPUT_NAMES, STRIDES, decode_yunet
from pipeline.errors import ModelError

IN_H, IN_W = 64, 96  # stride 8: 8 x 12 cells, 16: 4 x 6, 32: 2 x 3


def _outputs() -> dict[str, np.ndarray]:
    out = {}
    for stride in STRIDES:
        cells = (IN_H // stride) * (IN_W // stride)
        for kind, columns in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
            out[f"{kind}_{stride}"] = np.zeros((1, cells, columns), np.float32)
    return out


def test_one_face_is_decoded_from_its_cell() -> None:
    out = _outputs()
    cell = 2 * 12 + 3  # stride 8, row 2, column 3
    out["cls_8"][0, cell] = 0.81
    out["obj_8"][0, cell] = 1.0
    out["bbox_8"][0, cell] = [0.5, 0.25, math.log(2.0), math.log(3.0)]
    out["kps_8"][0, cell] = [0, 0, 1, 0, 0.5, 1, 0, 2, 1, 2]
    out["cls_16"][0, 5] = 0.2  # sqrt(0.2 * 1.0) = 0.447: under the threshold
    out["obj_16"][0, 5] = 1.0
    out["cls_32"][0, 1] = 1.5  # clipped to 1 before the product: 1.0 * 0 = 0
    faces = decode_yunet(out, IN_H, IN_W, score_threshold=0.5)
    assert len(faces.scores) == 1
    np.testing.assert_allclose(faces.scores, [0.9], atol=1e-6)
    # centre ((3 + 0.5) * 8, (2 + 0.25) * 8) = (28, 18); size (2 * 8, 3 * 8) = (16, 24)
    np.testing.assert_allclose(faces.boxes_xyxy, [[20, 6, 36, 30]], atol=1e-5)
    want = (np.array([[0, 0], [1, 0], [0.5, 1], [0, 2], [1, 2]]) + np.array([3, 2])) * 8
    np.testing.assert_allclose(faces.landmarks_xy[0], want, atol=1e-5)


def test_no_face_above_the_threshold_gives_empty_arrays() -> None:
    faces = decode_yunet(_outputs(), IN_H, IN_W, score_threshold=0.5)
    assert len(faces.scores) == 0
    assert faces.boxes_xyxy.shape == (0, 4) and faces.landmarks_xy.shape == (0, 5, 2)


def test_outputs_that_do_not_fit_the_input_size_are_a_model_error() -> None:
    out = _outputs()
    out["bbox_16"] = np.zeros((1, 7, 4), np.float32)  # 24 cells expected
    with pytest.raises(ModelError, match="bbox_16: expected 24 x 4 values"):
        decode_yunet(out, IN_H, IN_W, score_threshold=0.5)


def test_output_names_are_the_shipped_models(yunet_model: Path) -> None:
    """The twelve names decoded here are exactly the outputs of the YuNet model in use."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(yunet_model), providers=["CPUExecutionProvider"])
    assert {o.name for o in session.get_outputs()} == set(OUTPUT_NAMES)
    assert len(OUTPUT_NAMES) == 4 * len(STRIDES)
