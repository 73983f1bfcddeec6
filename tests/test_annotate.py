"""Annotated video: boxes, ids and labels drawn, written as H.264 that decodes back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.annotate import (
    SR_CROP_SIDE_PX,
    AnnotatedVideoWriter,
    draw_annotations,
    track_colour_bgr,
)
from pipeline.errors import PipelineError
from pipeline.records import TrackedFace

W, H = 320, 240


def face(track_id: int, bbox: tuple[float, float, float, float], index: int = 0,
         predicted: bool = False) -> TrackedFace:
    return TrackedFace(camera_id="cam", track_id=track_id, frame_index=index, ts_ms=index * 40.0,
                       bbox_xyxy=bbox, score=0.9, is_predicted=predicted)


def background() -> np.ndarray:
    return np.full((H, W, 3), 90, dtype=np.uint8)


def test_draw_annotations_draws_boxes_labels_and_crops_without_touching_input() -> None:
    image = background()
    crop = np.zeros((16, 16, 3), dtype=np.uint8)
    crop[:, :, 2] = 200
    out = draw_annotations(image, [face(1, (40, 60, 80, 100)), face(2, (280, 100, 310, 130))],
                           {1: "fear 0.81"}, sr_crops={2: crop})
    assert np.all(image == 90)  # the frame is not modified
    assert out[80, 40].tolist() == list(track_colour_bgr(1))  # left edge of box 1
    assert out[60, 60].tolist() == list(track_colour_bgr(1))  # top edge
    assert out[80, 60].tolist() == [90, 90, 90]  # inside the box stays clear
    label_area = out[44:58, 40:110]
    assert (label_area == 0).all(axis=2).sum() > 50  # label background drawn above the box
    # No room right of box 2, so its enlarged crop sits on the left of the box.
    x = 280 - 3 - SR_CROP_SIDE_PX
    assert out[100 + SR_CROP_SIDE_PX // 2, x + SR_CROP_SIDE_PX // 2].tolist() == [0, 0, 200]


def test_predicted_boxes_are_thinner() -> None:
    out = draw_annotations(background(), [face(3, (100, 100, 140, 140), predicted=True)], {})
    colour = list(track_colour_bgr(3))
    assert out[120, 100].tolist() == colour and out[120, 101].tolist() == [90, 90, 90]


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(PipelineError, match="BGR"):
        draw_annotations(np.zeros((10, 10), dtype=np.uint8), [], {})
    with pytest.raises(PipelineError, match="sr_crops"):
        draw_annotations(background(), [face(1, (10, 10, 30, 30))], {},
                         sr_crops={1: np.zeros((8, 8), dtype=np.uint8)})


def test_annotated_clip_decodes_with_boxes_drawn(tmp_path: Path) -> None:
    path = tmp_path / "out" / "annotated.mp4"
    rng = np.random.default_rng(0)
    with AnnotatedVideoWriter(path, fps=25, size_wh=(W, H)) as writer:
        for i in range(30):
            image = (rng.integers(60, 100, size=(H, W, 3))).astype(np.uint8)
            faces = [face(1, (40 + i, 60, 80 + i, 100), i), face(2, (200, 120, 240, 170), i)]
            writer.write_annotated(image, faces, {1: "neutral", 2: "anger"})
        with pytest.raises(PipelineError, match="shape"):
            writer.write(np.zeros((H + 1, W, 3), dtype=np.uint8))
    assert writer.frame_count == 30
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 30
    for i in (0, 15, 29):
        left_edge = frames[i][70:90, 40 + i].astype(int).mean(axis=0)
        assert np.abs(left_edge - track_colour_bgr(1)).max() < 60, left_edge
        edge = frames[i][130:160, 200].astype(int).mean(axis=0)
        assert np.abs(edge - track_colour_bgr(2)).max() < 60, edge
        inside = frames[i][140, 220].astype(int)
        assert inside.max() < 130  # noise background, not box colour


def test_writer_pads_odd_frame_sizes(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with AnnotatedVideoWriter(path, fps=10, size_wh=(161, 121)) as writer:
        for _ in range(3):
            writer.write(np.full((121, 161, 3), 200, dtype=np.uint8))
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (122, 162, 3)
    assert abs(int(frames[0][60, 80, 0]) - 200) < 6


def test_replay_annotator_keeps_latest_emotion_per_track_and_frame_rate(tmp_path: Path) -> None:
    from dataclasses import dataclass

    from pipeline.annotate import ReplayAnnotator
    from pipeline.records import EmotionResult, FaceEvent, Frame

    @dataclass(frozen=True)
    class Analysis:  # the fields ReplayAnnotator reads from the runner's FrameAnalysis
        faces: list[TrackedFace]
        ended_track_ids: list[int]

    emotion = EmotionResult(class_names=("neutral", "fear"), probabilities=(0.2, 0.8),
                            sr_applied=False)
    path = tmp_path / "replay.mp4"
    with ReplayAnnotator(path) as annotator:
        for i in range(12):
            frame = Frame(camera_id="cam", index=i, ts_ms=i * 100.0, image_bgr=background())
            faces = [face(1, (40, 60, 80, 100), i)]
            events = [FaceEvent(camera_id="cam", track_id=1, frame_index=i, ts_ms=i * 100.0,
                                wall_ts_s=0.0, bbox_xyxy=(40, 60, 80, 100), face_size_px=40.0,
                                quality=0.5, emotion=emotion, first_seen_ts_ms=0.0,
                                last_seen_ts_ms=i * 100.0)] if i == 2 else []
            annotator.add(frame, Analysis(faces, [1] if i == 8 else []), events)
        # A frame of another size (the next file of a folder) is resized, not rejected.
        big = Frame(camera_id="cam2", index=0, ts_ms=0.0,
                    image_bgr=np.zeros((2 * H, 2 * W, 3), dtype=np.uint8))
        annotator.add(big, Analysis([], []), [])
    assert annotator.frame_count == 13
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == 10.0  # from the 100 ms frame step
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 13 and frames[0].shape == (H, W, 3)
    edge = frames[5][70:90, 40].astype(int).mean(axis=0)
    assert np.abs(edge - track_colour_bgr(1)).max() < 60

    def label_width(image: np.ndarray) -> int:
        return int((image[44:58, 40:200] < 30).all(axis=2).any(axis=0).sum())

    # "#1" alone before the event, "#1 fear 0.80" from the event until the track ends.
    widths = [label_width(frames[i]) for i in range(12)]
    assert all(widths[i] > widths[0] + 20 for i in range(2, 9))
    assert all(abs(widths[i] - widths[0]) < 4 for i in (1, 9, 10, 11))
