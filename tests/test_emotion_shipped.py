"""The shipped emotion model: manifest valid, accuracy on FER2013Valid clean and through the
camera simulator, and non-face rejection on held-out CCTV crops, when the data exist."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engines.manifest import load_manifest
from engines.train.ferplus import FERPLUS_CLASSES

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "engines/weights/emotion_resnet.json"
SHARED = Path(os.environ.get("CCTV_SHARED", REPO / ".." / "shared"))
VALID = SHARED / "data/ferplus/FER2013Valid"

pytestmark = pytest.mark.skipif(not MANIFEST.is_file(),
                                reason=f"no shipped model at {MANIFEST}")


def test_shipped_manifest_is_consistent() -> None:
    m = load_manifest(MANIFEST, expect_task="emotion",
                      expect_class_names=(*FERPLUS_CLASSES, "not_face"),
                      expect_input_size_hw=(48, 48))
    assert m.non_face_class == "not_face" and 0.5 <= m.non_face_threshold <= 1.0
    assert len(m.logit_bias) == len(m.class_names)
    names = [r["name"] for r in m.metrics["accuracy_by_condition"]]
    assert {"clean_48px", "h264_1000kbps_16px", "h264_1000kbps_24px"} <= set(names)
    assert m.onnx_path.stat().st_size < 25e6
    assert m.metrics["parity_max_abs_prob_diff"] <= 1e-4
    assert m.temperature > 0 and m.training.get("seed") is not None


@pytest.mark.skipif(not (VALID / "label.csv").is_file(),
                    reason=f"FER2013Valid not found at {VALID} (set CCTV_SHARED)")
def test_shipped_model_accuracy_on_valid_sample() -> None:
    """Issue 3: the shipped model scores above 80 % on a 500-face sample of FER2013Valid at
    48 px through the runtime path (BGR crops -> EmotionModel on ONNX Runtime), and that
    path reproduces the accuracy the manifest records for the full split."""
    from engines.emotion_model import EmotionModel
    from engines.eval.emotion import sample_dataset
    from engines.train.ferplus import load_ferplus

    ds = sample_dataset(load_ferplus(VALID), 500, seed=0)
    model = EmotionModel.load(MANIFEST, threads=2)
    faces = [np.dstack([img] * 3) for img in ds.images]  # BGR crops, as the pipeline gives
    acc = float((model.predict_proba(faces).argmax(1) == ds.labels).mean())
    recorded = next(row["accuracy"] for row in load_manifest(MANIFEST).metrics["accuracy_by_size"]
                    if row["size_px"] == 48 and row["restore"] == "bilinear")
    majority = float(np.bincount(ds.labels).max() / len(ds.labels))
    # 500 of 3,555 faces: the sampling error of the accuracy is about 2 points
    assert acc > 0.80, f"accuracy {acc:.3f} on the 500-face sample"
    assert abs(acc - recorded) < 0.05, f"sample {acc:.3f} vs manifest {recorded:.3f}"
    assert acc > majority + 0.3, f"accuracy {acc:.3f}, majority class {majority:.3f}"


def _skip_without(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            pytest.skip(f"{path} not found (set CCTV_SHARED)")


def test_shipped_model_under_the_camera_simulator() -> None:
    """480 FER2013Valid faces at 24 px through H.264 at 1 Mbit/s in real 1080p street frames
    (the protocol of docs/RESULTS.md): well above the 62 % of the clean-trained model."""
    from engines.cctv_sim import CameraSettings, simulate_fixed
    from engines.emotion_model import EmotionModel
    from engines.eval.emotion import sample_dataset
    from engines.train.degradations import restore
    from engines.train.ferplus import load_ferplus

    clip = SHARED / "data/cctv/town_centre_1080p25.mp4"
    _skip_without(VALID / "label.csv", clip)
    ds = sample_dataset(load_ferplus(VALID), 480, seed=1)
    crops = simulate_fixed(ds.images, 24, CameraSettings(bitrate_kbps=1000), clip, seed=3)
    model = EmotionModel.load(MANIFEST, threads=2)
    prediction = model.predict([restore(c, (48, 48), "bilinear") for c in crops])
    acc = float((prediction.probabilities.argmax(1) == ds.labels).mean())
    assert acc > 0.64, f"accuracy {acc:.3f} at 24 px, 1 Mbit/s"
    assert prediction.is_face.mean() > 0.95, "camera-degraded faces are still faces"


def test_shipped_model_rejects_held_out_non_faces() -> None:
    """Crops from the held-out last third of both CCTV clips (background, detector false
    positives, body parts), never seen in training: most are rejected; real faces are not."""
    from engines.emotion_model import EmotionModel
    from engines.eval.emotion import nonface_heldout_row, sample_dataset
    from engines.train.ferplus import load_ferplus

    _skip_without(VALID / "label.csv", SHARED / "data/cctv/pets2009_campus_480x360.mp4",
                  SHARED / "data/models/face_detection_yunet_2026may.onnx")
    model = EmotionModel.load(MANIFEST, threads=2)
    heldout = nonface_heldout_row(model)
    assert heldout["all"]["n"] > 1000
    assert heldout["all"]["rejected"] >= 0.90, heldout
    faces = sample_dataset(load_ferplus(VALID), 500, seed=2)
    rejected = 1.0 - float(model.predict([np.dstack([i] * 3) for i in faces.images]).is_face.mean())
    assert rejected <= 0.02, f"{rejected:.3f} of real faces rejected"
