"""MTCNN and YuNet on real images: a group photo and real street CCTV."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.config import DetectorConfig
from pipeline.detect import Detector, create_detector
from pipeline.errors import ModelError, PipelineError
from pipeline.records import Detection

TOWN_CENTRE_FRAMES = (0, 30, 60, 90)
# The assertions are about confident faces; the config default is lower (the tracker wants
# low-score detections too), so tests pin the threshold they rely on.
SCORE = 0.7


def group_photo() -> np.ndarray:
    """insightface's t1.jpg: six people facing the camera, faces about 100 px."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface (which ships t1.jpg) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg"
    image = cv2.imread(str(path))
    if image is None:
        pytest.skip(f"cannot read {path}")
    return image


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return group_photo()


@pytest.fixture(scope="module")
def mtcnn() -> Detector:
    detector = create_detector(DetectorConfig(backend="mtcnn", min_face_px=20,
                                              score_threshold=SCORE))
    detector.start()
    yield detector
    detector.stop()


@pytest.fixture(scope="module")
def town_frames(town_centre_clip: Path) -> list[np.ndarray]:
    with av.open(str(town_centre_clip)) as container:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0))
                  if i in TOWN_CENTRE_FRAMES]
    assert len(frames) == len(TOWN_CENTRE_FRAMES)
    return frames


def yunet_cfg(model: Path, **overrides: object) -> DetectorConfig:
    settings = {"score_threshold": SCORE, **overrides}
    return DetectorConfig(backend="yunet", model_path=model, **settings)


def assert_well_formed(detections: list[Detection], image: np.ndarray) -> None:
    height, width = image.shape[:2]
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for det in detections:
        x1, y1, x2, y2 = det.bbox_xyxy
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert det.landmarks_xy is not None and det.landmarks_xy.shape == (5, 2)
        xs, ys = det.landmarks_xy[:, 0], det.landmarks_xy[:, 1]
        assert np.all((xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)), det
        # as seen in the image: left eye left of right eye, eyes above the mouth corners
        assert xs[0] < xs[1] and xs[3] < xs[4]
        assert max(ys[0], ys[1]) < min(ys[3], ys[4])


def test_mtcnn_finds_faces_in_group_photo(mtcnn: Detector, photo: np.ndarray) -> None:
    detections = mtcnn.detect(photo)
    assert len(detections) >= 4
    assert_well_formed(detections, photo)
    assert all(d.score >= 0.7 and d.size_px >= 20 for d in detections)


def test_yunet_finds_faces_in_group_photo(yunet_model: Path, photo: np.ndarray) -> None:
    detector = create_detector(yunet_cfg(yunet_model, min_face_px=20))
    detector.start()
    detections = detector.detect(photo)
    detector.stop()
    assert len(detections) >= 4
    assert_well_formed(detections, photo)


def test_mtcnn_and_yunet_agree_on_group_photo(mtcnn: Detector, yunet_model: Path,
                                               photo: np.ndarray) -> None:
    yunet = create_detector(yunet_cfg(yunet_model, min_face_px=20))
    yunet.start()
    centres_y = [np.mean(np.reshape(d.bbox_xyxy, (2, 2)), axis=0) for d in yunet.detect(photo)]
    centres_m = [np.mean(np.reshape(d.bbox_xyxy, (2, 2)), axis=0) for d in mtcnn.detect(photo)]
    matched = sum(min(np.hypot(*(c - m)) for m in centres_m) < 20 for c in centres_y)
    assert matched >= 4


def test_mtcnn_pyramid_starts_where_min_face_is_12_px() -> None:
    from pipeline.detect.mtcnn import MtcnnDetector

    scales = MtcnnDetector(DetectorConfig(min_face_px=48)).pyramid_scales(1080, 1920)
    assert scales[0] == pytest.approx(12 / 48)
    assert min(scales) * 1080 >= 12 and scales[-1] * 0.709 * 1080 < 12


def test_mtcnn_on_town_centre(mtcnn: Detector, town_frames: list[np.ndarray]) -> None:
    detector = create_detector(DetectorConfig(backend="mtcnn", min_face_px=16,
                                              score_threshold=SCORE))
    detector.start()
    counts = []
    for frame in town_frames:
        detections = detector.detect(frame)
        assert_well_formed(detections, frame)
        assert all(d.size_px >= 16 for d in detections)
        counts.append(len(detections))
    assert sum(counts) >= len(town_frames)  # about one face or more per frame on average


def test_yunet_on_town_centre_drops_faces_below_min_size(yunet_model: Path,
                                                         town_frames: list[np.ndarray]) -> None:
    small = create_detector(yunet_cfg(yunet_model, min_face_px=10))
    large = create_detector(yunet_cfg(yunet_model, min_face_px=20))
    small.start()
    large.start()
    all_sizes, total = [], 0
    for frame in town_frames:
        found = small.detect(frame)
        assert_well_formed(found, frame)
        total += len(found)
        all_sizes += [d.size_px for d in found]
        kept = large.detect(frame)
        assert all(d.size_px >= 20 for d in kept)
        # same input resolution (1920 fits), so the 20 px run is exactly the >= 20 px subset
        assert [d.bbox_xyxy for d in kept] == [d.bbox_xyxy for d in found if d.size_px >= 20]
    assert total / len(town_frames) >= 2
    assert min(all_sizes) < 20  # the gate had something to drop


def opencv_yunet_faces(model: Path, frame: np.ndarray, score: float, nms_iou: float,
                       min_face_px: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """(box xyxy, score, landmarks (5, 2)) from OpenCV's own ``cv2.FaceDetectorYN`` on the
    whole frame, faces of ``min_face_px`` and up: the reference the pipeline's decoder of the
    same graph must match."""
    height, width = frame.shape[:2]
    net = cv2.FaceDetectorYN.create(str(model), "", (width, height), score, nms_iou, 5000)
    _, faces = net.detect(frame)
    out = []
    for row in faces if faces is not None else []:
        box = np.clip([row[0], row[1], row[0] + row[2], row[1] + row[3]], 0,
                      [width, height, width, height])
        if max(row[2], row[3]) >= min_face_px:
            out.append((box, float(row[14]), row[4:14].reshape(5, 2)))
    return out


def assert_same_faces(got: list[Detection],
                      want: list[tuple[np.ndarray, float, np.ndarray]]) -> None:
    """Each reference face (box, score, landmarks) has a detection with the same box and
    landmarks (within 0.01 px) and score (within 1e-4)."""
    for box, score, landmarks in want:
        best = min(got, key=lambda g, box=box: float(np.abs(np.array(g.bbox_xyxy) - box).max()))
        np.testing.assert_allclose(best.bbox_xyxy, box, atol=0.01)
        assert best.score == pytest.approx(score, abs=1e-4)
        np.testing.assert_allclose(best.landmarks_xy, landmarks, atol=0.01)


def test_yunet_on_onnxruntime_finds_what_opencv_finds(yunet_model: Path,
                                                      town_frames: list[np.ndarray]) -> None:
    """The pipeline runs YuNet's graph on ONNX Runtime and decodes it itself (2.4x faster
    than OpenCV 5.0 here): on real 1080p CCTV frames every face OpenCV's FaceDetectorYN finds
    is found, with the same box, score and landmarks, and nothing else."""
    detector = create_detector(yunet_cfg(yunet_model, min_face_px=10))
    detector.start()
    total = 0
    for frame in town_frames:
        got = detector.detect(frame)
        want = opencv_yunet_faces(yunet_model, frame, SCORE, detector.cfg.nms_iou, 10.0)
        assert len(got) == len(want)
        total += len(want)
        assert_same_faces(got, want)
    assert total >= 2 * len(town_frames)


def test_yunet_on_a_shrunk_odd_sized_crop_matches_opencv(yunet_model: Path,
                                                        town_frames: list[np.ndarray]) -> None:
    """A crop of odd width (a view into the frame, not contiguous) asked down to 640 px is
    shrunk with INTER_AREA as far as 12 px faces allow (scale 10 / 12), padded to multiples
    of 32 and mapped back: the faces are OpenCV's on the same shrunk image, scaled back."""
    detector = create_detector(yunet_cfg(yunet_model, min_face_px=12, max_input_side_px=640))
    detector.start()
    total = 0
    for frame in town_frames:
        crop = frame[150:950, 101:1200]  # 800 x 1099
        height, width = crop.shape[:2]
        scale = detector._scale(height, width, detector.full_sizes)
        assert scale == pytest.approx(10 / 12)
        size = (round(width * scale), round(height * scale))
        shrunk = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        want = opencv_yunet_faces(yunet_model, shrunk, SCORE, detector.cfg.nms_iou, 10.0)
        got = detector.detect(crop)
        sx, sy = width / size[0], height / size[1]
        want = [(np.clip(box * [sx, sy, sx, sy], 0, [width, height, width, height]), score,
                 landmarks * [sx, sy]) for box, score, landmarks in want
                if max((box[2] - box[0]) * sx, (box[3] - box[1]) * sy) >= 12.0]
        assert len(got) == len(want)
        total += len(want)
        assert_same_faces(got, want)
    assert total >= len(town_frames)


def test_yunet_reduced_input_maps_boxes_back_to_frame(yunet_model: Path,
                                                       photo: np.ndarray) -> None:
    full = create_detector(yunet_cfg(yunet_model, min_face_px=20))
    # the longer side (1280) is asked down to 640; 20 px faces at 0.5 are 10 px, still found
    half = create_detector(yunet_cfg(yunet_model, min_face_px=20, max_input_side_px=640))
    full.start()
    half.start()
    reference = full.detect(photo)
    reduced = half.detect(photo)
    assert len(reduced) >= 4
    assert_well_formed(reduced, photo)
    for det in reduced:
        assert max(_iou(det.bbox_xyxy, r.bbox_xyxy) for r in reference) > 0.7


def test_min_face_size_limits_input_reduction() -> None:
    from pipeline.detect.geometry import input_scale

    assert input_scale(1920, 12, 10, 1920) == 1.0
    assert input_scale(1920, 40, 10, 960) == pytest.approx(0.5)  # the cap wins
    assert input_scale(1920, 12, 10, 640) == pytest.approx(10 / 12)  # min faces win
    assert input_scale(1920, 8, 10, 640) == 1.0  # never enlarged


def test_roi_polygons_restrict_detections(mtcnn: Detector, photo: np.ndarray) -> None:
    everything = mtcnn.detect(photo)
    height, width = photo.shape[:2]
    left_triangle = [(0.0, 0.0), (width * 0.45, 0.0), (0.0, float(height))]
    right_box = [(width * 0.8, 0.0), (float(width), 0.0), (float(width), float(height)),
                 (width * 0.8, float(height))]
    polygons = [left_triangle, right_box]
    restricted = mtcnn.detect(photo, roi_polygons=polygons)
    contours = [np.asarray(p, np.float32).reshape(-1, 1, 2) for p in polygons]

    def inside(det: Detection) -> bool:
        x1, y1, x2, y2 = det.bbox_xyxy
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        return any(cv2.pointPolygonTest(c, (cx, cy), False) >= 0 for c in contours)

    expected = [d for d in everything if inside(d)]
    assert 1 <= len(restricted) < len(everything)
    assert all(inside(d) for d in restricted)
    assert len(restricted) == len(expected)
    for det in restricted:  # the same faces, in full-frame coordinates
        assert max(_iou(det.bbox_xyxy, e.bbox_xyxy) for e in expected) > 0.8
    # a polygon with no face in it yields nothing
    empty = [(0.0, height - 40.0), (40.0, height - 40.0), (40.0, float(height))]
    assert mtcnn.detect(photo, roi_polygons=[empty]) == []


def test_factory_names_the_missing_model_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "det_10g.onnx"
    for backend in ("yunet", "scrfd"):
        with pytest.raises(ModelError, match=str(missing)):
            create_detector(DetectorConfig(backend=backend, model_path=missing))


def test_corrupt_model_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    detector = create_detector(DetectorConfig(backend="scrfd", model_path=bad))
    with pytest.raises(ModelError, match=r"bad\.onnx"):
        detector.start()


def test_detect_checks_its_input(mtcnn: Detector) -> None:
    with pytest.raises(ValueError, match="expected shape"):
        mtcnn.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        mtcnn.detect(np.zeros((10, 10, 3), np.float32))
    unstarted = create_detector(DetectorConfig())
    with pytest.raises(PipelineError, match="start"):
        unstarted.detect(np.zeros((10, 10, 3), np.uint8))


def test_roi_polygon_masks_faces_outside_it(photo: np.ndarray) -> None:
    nowhere = [(0.0, 0.0), (30.0, 0.0), (0.0, 30.0)]
    detector = create_detector(DetectorConfig(min_face_px=20, score_threshold=SCORE))
    detector.start()
    assert len(detector.detect(photo)) >= 4
    assert detector.detect(photo, roi_polygons=[nowhere]) == []
    detector.stop()
    detector.stop()  # safe twice


def test_roi_polygon_shape_is_checked(mtcnn: Detector, photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="roi polygon 0: expected at least 3"):
        mtcnn.detect(photo, roi_polygons=[(0.0, 0.0), (30.0, 0.0), (0.0, 30.0)])


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_detection_path_never_imports_torch(photo: np.ndarray, tmp_path: Path) -> None:
    import subprocess
    import sys

    image_path = tmp_path / "photo.png"
    cv2.imwrite(str(image_path), photo)
    code = (
        "import sys, cv2\n"
        "from pipeline.config import DetectorConfig\n"
        "from pipeline.detect import create_detector\n"
        "from pipeline.align import align_face\n"
        "from pipeline.quality import face_quality\n"
        "d = create_detector(DetectorConfig(min_face_px=40)); d.start()\n"
        f"image = cv2.imread({str(image_path)!r})\n"
        "faces = d.detect(image)\n"
        "align_face(image, 48, faces[0].landmarks_xy)\n"
        "face_quality(image, faces[0].bbox_xyxy, faces[0].landmarks_xy)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
