"""Tracker + selector on real detections: YuNet on the demo clip, detection every 5th frame.

The demo scene is static and the camera matrices are known, so mapping a track's boxes back
into the scene must give one fixed face: an id switch would jump to a neighbour's position.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.config import SelectConfig, TrackerConfig
from pipeline.demo_clip import FRAME_WH, build_demo_clip, camera_matrices, demo_scene
from pipeline.records import Detection, TrackedFace
from pipeline.select import CropSelector, Selection
from pipeline.track import FaceTracker

FPS = 25
SECONDS = 4
DETECT_EVERY = 5


def yunet_detections(detector: cv2.FaceDetectorYN, image: np.ndarray) -> list[Detection]:
    _, rows = detector.detect(image)
    if rows is None:
        return []
    return [Detection(bbox_xyxy=(float(r[0]), float(r[1]), float(r[0] + r[2]),
                                 float(r[1] + r[3])),
                      score=float(r[14]), landmarks_xy=r[4:14].reshape(5, 2).astype(np.float32))
            for r in rows]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory, yunet_model: Path) -> dict:
    clip = build_demo_clip(tmp_path_factory.mktemp("demo") / "demo.mp4", SECONDS, FPS)
    detector = cv2.FaceDetectorYN.create(str(yunet_model), "", FRAME_WH, 0.5, 0.3, 200)
    tracker = FaceTracker(TrackerConfig(), "demo")
    selector = CropSelector(SelectConfig(interval_s=1.0))
    faces: list[TrackedFace] = []
    selections: list[Selection] = []
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            image = frame.to_ndarray(format="bgr24")
            ts_ms = index * 1000.0 / FPS
            if index % DETECT_EVERY == 0:
                tracked = tracker.update(index, ts_ms, yunet_detections(detector, image))
                for face in tracked:
                    chosen = selector.offer(face, face.score, image)
                    if chosen is not None:
                        selections.append(chosen)
            else:
                tracked = tracker.predict(index, ts_ms)
            faces += tracked
    summaries = tracker.ended_tracks()
    tracker.flush()
    summaries += tracker.ended_tracks()
    for summary in summaries:
        chosen = selector.end_track(summary.track_id)
        if chosen is not None:
            selections.append(chosen)
    scene = demo_scene()
    matrices = camera_matrices((scene.shape[1], scene.shape[0]), SECONDS, FPS)
    return {"faces": faces, "summaries": summaries, "selections": selections,
            "matrices": matrices, "frames": index + 1}


def inside_frame(face: TrackedFace, margin_px: float = 3.0) -> bool:
    x1, y1, x2, y2 = face.bbox_xyxy
    return (x1 >= margin_px and y1 >= margin_px and x2 <= FRAME_WH[0] - margin_px
            and y2 <= FRAME_WH[1] - margin_px)


def scene_centre(face: TrackedFace, matrix: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = face.bbox_xyxy
    frame_xy = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    return (frame_xy - matrix[:, 2]) / matrix[0, 0]


def test_tracks_follow_one_face_each_through_camera_motion(tracked_run: dict) -> None:
    by_track: dict[int, list[np.ndarray]] = {}
    for face in tracked_run["faces"]:
        # Faces cut by the frame border get shrinking boxes whose centres shift: skip them.
        if not face.is_predicted and inside_frame(face):
            by_track.setdefault(face.track_id, []).append(
                scene_centre(face, tracked_run["matrices"][face.frame_index]))
    detection_frames = tracked_run["frames"] // DETECT_EVERY
    long_tracks = [t for t, pts in by_track.items() if len(pts) >= detection_frames - 4]
    assert len(long_tracks) >= 6, "expected most faces tracked through the whole clip"
    for track_id, points in by_track.items():
        points = np.array(points)
        drift = np.linalg.norm(points - np.median(points, axis=0), axis=1).max()
        # Faces are ~24 px apart-or-more in the scene; a switch would jump that far.
        assert drift < 8.0, f"track {track_id} moved {drift:.1f} scene px: an id switch"


def test_predicted_boxes_stay_on_the_face_between_detections(tracked_run: dict) -> None:
    errors = []
    anchors: dict[int, np.ndarray] = {}
    for face in tracked_run["faces"]:
        centre = scene_centre(face, tracked_run["matrices"][face.frame_index])
        if not inside_frame(face):
            anchors.pop(face.track_id, None)
        elif not face.is_predicted:
            anchors[face.track_id] = centre
        elif face.track_id in anchors:
            errors.append(np.linalg.norm(centre - anchors[face.track_id]))
    assert len(errors) > 100
    assert np.median(errors) < 3.0
    assert np.percentile(errors, 95) < 8.0


def test_ids_are_unique_increasing_and_summaries_match(tracked_run: dict) -> None:
    summaries = tracked_run["summaries"]
    ids = [s.track_id for s in summaries]
    assert len(ids) == len(set(ids))
    first_seen = {}
    for face in tracked_run["faces"]:
        first_seen.setdefault(face.track_id, face.frame_index)
    order = sorted(first_seen, key=lambda t: (first_seen[t], t))
    assert order == sorted(order)  # ids are handed out in order of appearance
    assert set(first_seen) == set(ids)


def test_each_track_is_analysed_at_most_once_per_second(tracked_run: dict) -> None:
    selections = tracked_run["selections"]
    by_track: dict[int, list[Selection]] = {}
    for selection in selections:
        by_track.setdefault(selection.track_id, []).append(selection)
    # Every track gets analysed; none more often than the number of 1 s windows it spans.
    assert set(by_track) == {s.track_id for s in tracked_run["summaries"]}
    for summary in tracked_run["summaries"]:
        span_s = (summary.last_seen_ts_ms - summary.first_seen_ts_ms) / 1000.0
        assert len(by_track[summary.track_id]) <= int(span_s) + 1
    for selection in selections:
        x1, y1, x2, y2 = selection.bbox_in_patch_xyxy()
        height, width = selection.patch_bgr.shape[:2]
        assert 0 < (x1 + x2) / 2 < width and 0 < (y1 + y2) / 2 < height
        assert height * width < 0.05 * FRAME_WH[0] * FRAME_WH[1]  # a patch, not the frame
