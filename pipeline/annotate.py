"""Annotated output video: face boxes, track ids, emotion labels, optional enlarged crops."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from pipeline.errors import PipelineError
from pipeline.media_io import H264Writer
from pipeline.records import FaceEvent, Frame, TrackedFace
from pipeline.rules.alert import Alert

# Saturated BGR colours that stay distinguishable after H.264 compression.
PALETTE_BGR: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0), (0, 0, 255), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0),
    (0, 128, 255), (255, 0, 128),
)
SR_CROP_SIDE_PX = 64
ALERT_MARK_MS = 2000.0  # an alert is marked on the video this long (stream time)
ALERT_COLOUR_BGR = (0, 0, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_colour_bgr(track_id: int) -> tuple[int, int, int]:
    """A fixed colour per track id, so a face keeps its colour through the video."""
    return PALETTE_BGR[track_id % len(PALETTE_BGR)]


def draw_annotations(image_bgr: np.ndarray, faces: list[TrackedFace], labels: dict[int, str],
                     sr_crops: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Return a copy of ``image_bgr`` with each face's box, ``#id`` and label drawn.

    Detected faces get a 2 px box, motion-predicted ones a 1 px box. ``sr_crops`` maps a
    track id to a face image (e.g. the SR output) shown enlarged beside its box.
    """
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 \
            or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise PipelineError(f"draw_annotations: expected a uint8 (H, W, 3) BGR image, got "
                            f"{getattr(image_bgr, 'dtype', type(image_bgr).__name__)} "
                            f"{getattr(image_bgr, 'shape', '')}")
    out = image_bgr.copy()
    for face in faces:
        colour = track_colour_bgr(face.track_id)
        x1, y1, x2, y2 = (round(v) for v in face.bbox_xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1 if face.is_predicted else 2)
        text = f"#{face.track_id}"
        if face.track_id in labels:
            text += f" {labels[face.track_id]}"
        _put_label(out, text, (x1, y1), colour)
        crop = (sr_crops or {}).get(face.track_id)
        if crop is not None:
            _paste_crop(out, crop, (x1, y1, x2, y2), colour)
    return out


def draw_alert_mark(image_bgr: np.ndarray, text: str) -> None:
    """Mark an alert moment in place: a red frame border and ``text`` in a banner."""
    height, width = image_bgr.shape[:2]
    cv2.rectangle(image_bgr, (0, 0), (width - 1, height - 1), ALERT_COLOUR_BGR, 4)
    (w, h), baseline = cv2.getTextSize(text, _FONT, 0.5, 1)
    cv2.rectangle(image_bgr, (4, height - h - baseline - 10), (min(width - 4, w + 12), height - 4),
                  ALERT_COLOUR_BGR, cv2.FILLED)
    cv2.putText(image_bgr, text, (8, height - baseline - 7), _FONT, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)


def _put_label(image: np.ndarray, text: str, anchor_xy: tuple[int, int],
               colour: tuple[int, int, int]) -> None:
    scale, thickness = 0.4, 1
    (w, h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    x = int(np.clip(anchor_xy[0], 0, max(0, image.shape[1] - w)))
    y = anchor_xy[1] - 3 if anchor_xy[1] - h - baseline - 3 >= 0 else anchor_xy[1] + h + 3
    cv2.rectangle(image, (x, y - h - 2), (x + w, y + baseline - 1), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x, y), _FONT, scale, colour, thickness, cv2.LINE_AA)


def _paste_crop(image: np.ndarray, crop: np.ndarray, box_xyxy: tuple[int, int, int, int],
                colour: tuple[int, int, int]) -> None:
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise PipelineError(f"sr_crops: expected uint8 (H, W, 3) BGR crops, got {crop.dtype} "
                            f"{crop.shape}")
    side = SR_CROP_SIDE_PX
    tile = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
    height, width = image.shape[:2]
    x, y = box_xyxy[2] + 3, box_xyxy[1]
    if x + side > width:  # no room on the right of the box: put it on the left
        x = box_xyxy[0] - 3 - side
    x = int(np.clip(x, 0, max(0, width - side)))
    y = int(np.clip(y, 0, max(0, height - side)))
    region = image[y:y + side, x:x + side]
    region[:] = tile[:region.shape[0], :region.shape[1]]
    cv2.rectangle(image, (x, y), (x + region.shape[1] - 1, y + region.shape[0] - 1), colour, 1)


class AnnotatedVideoWriter:
    """H.264 MP4 writer for annotated frames (no B-frames). Context manager; close is idempotent.

    The file shows faces, so it is made readable and writable by its owner only (0600),
    whatever the umask, before any frame is written."""

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # made empty with its mode first: the encoder then writes into it, mode kept
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        self._writer = H264Writer(path, fps=fps, size_wh=size_wh, crf=20)

    @property
    def path(self) -> Path:
        return self._writer.path

    @property
    def frame_count(self) -> int:
        return self._writer.frame_count

    @property
    def size_wh(self) -> tuple[int, int]:
        return self._writer.size_wh

    def write(self, image_bgr: np.ndarray) -> None:
        self._writer.write(image_bgr)

    def write_annotated(self, image_bgr: np.ndarray, faces: list[TrackedFace],
                        labels: dict[int, str],
                        sr_crops: dict[int, np.ndarray] | None = None) -> None:
        self.write(draw_annotations(image_bgr, faces, labels, sr_crops))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _FrameAnalysisLike(Protocol):
    faces: list[TrackedFace]
    ended_track_ids: list[int]


class ReplayAnnotator:
    """Replay's ``--annotate`` output: one MP4 with every frame, boxes and latest emotions.

    The runner calls :meth:`add` once per frame with the frame's analysis and the events
    classified from it. A track keeps showing its latest emotion until it ends. The frame
    rate comes from the first two frames' timestamps; frames of a later file with another
    size are resized to the first file's size.
    """

    def __init__(self, path: str | Path, default_fps: float = 25.0) -> None:
        self.path = Path(path)
        self._default_fps = default_fps
        self._writer: AnnotatedVideoWriter | None = None
        self._first: tuple[Frame, np.ndarray] | None = None
        self._labels: dict[tuple[str, int], str] = {}
        self._crops: dict[tuple[str, int], np.ndarray] = {}
        self._alerts: dict[str, list] = {}  # camera -> [text, stream time first shown or None]

    @property
    def frame_count(self) -> int:
        return (self._writer.frame_count if self._writer else 0) + (1 if self._first else 0)

    def mark_alert(self, alert: Alert) -> None:
        """Mark the camera's frames from the next one added for ``ALERT_MARK_MS``: a red
        border and the rule, the alert's stream time and its tracks."""
        tracks = " ".join(f"#{t.track_id}" for t in alert.tracks)
        self._alerts[alert.camera_id] = [
            f"ALERT {alert.rule_id} ({alert.severity}) at {alert.ts_ms / 1000:.1f} s {tracks}",
            None]

    def add(self, frame: Frame, analysis: _FrameAnalysisLike, events: list[FaceEvent],
            restored_crops: dict[int, np.ndarray] | None = None) -> None:
        """``restored_crops``: track id -> the SR output the classifier saw; each track's
        latest one is shown beside its box until the track ends."""
        for event in events:
            self._labels[(event.camera_id, event.track_id)] = (
                f"{event.emotion.top_class} {max(event.emotion.probabilities):.2f}")
        for track_id, crop in (restored_crops or {}).items():
            self._crops[(frame.camera_id, track_id)] = crop
        labels = {tid: text for (cam, tid), text in self._labels.items() if cam == frame.camera_id}
        crops = {tid: crop for (cam, tid), crop in self._crops.items() if cam == frame.camera_id}
        image = draw_annotations(frame.image_bgr, analysis.faces, labels, crops or None)
        mark = self._alerts.get(frame.camera_id)
        if mark is not None:
            mark[1] = frame.ts_ms if mark[1] is None else mark[1]
            if frame.ts_ms - mark[1] <= ALERT_MARK_MS:
                draw_alert_mark(image, mark[0])
            else:
                del self._alerts[frame.camera_id]
        for track_id in analysis.ended_track_ids:
            self._labels.pop((frame.camera_id, track_id), None)
            self._crops.pop((frame.camera_id, track_id), None)
        if self._writer is None and self._first is None:
            self._first = (frame, image)
            return
        writer = self._writer
        if writer is None and self._first is not None:
            first_frame, first_image = self._first
            writer = self._open(first_image, frame.ts_ms - first_frame.ts_ms)
        if writer is not None:
            _write_resized(writer, image)

    def close(self) -> None:
        if self._writer is None and self._first is not None:
            self._open(self._first[1], 0.0)
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> ReplayAnnotator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self, first_image: np.ndarray, step_ms: float) -> AnnotatedVideoWriter:
        fps = 1000.0 / step_ms if 1000.0 / 120.0 <= step_ms <= 1000.0 else self._default_fps
        height, width = first_image.shape[:2]
        self._writer = AnnotatedVideoWriter(self.path, fps=fps, size_wh=(width, height))
        self._first = None
        _write_resized(self._writer, first_image)
        return self._writer


def _write_resized(writer: AnnotatedVideoWriter, image: np.ndarray) -> None:
    width, height = writer.size_wh
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    writer.write(image)
