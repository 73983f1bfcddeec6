"""Still images of an alert: the frame at the alert moment with the involved tracks' boxes
(other faces optionally blurred), and the restored face crops the classifier read.

Boxes are ``bbox_xyxy`` in frame pixels. No identity is drawn or stored: a box is labelled
with its track number (a per-camera counter) and the rule's score only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from pipeline.annotate import track_colour_bgr
from pipeline.errors import EvidenceError

BoxXyxy = tuple[float, float, float, float]
_BLUR_MARGIN = 0.25  # of the box size, on each side: hair and chin too
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def blur_boxes(image_bgr: np.ndarray, boxes: Sequence[BoxXyxy]) -> np.ndarray:
    """A copy of ``image_bgr`` (H, W, 3 uint8) with each box (grown by a quarter of its
    size on each side) pixelated beyond recognition."""
    out = image_bgr.copy()
    height, width = out.shape[:2]
    for x1, y1, x2, y2 in boxes:
        mx, my = (x2 - x1) * _BLUR_MARGIN, (y2 - y1) * _BLUR_MARGIN
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
        if right - left < 1 or bottom - top < 1:
            continue
        region = out[top:bottom, left:right]
        small = cv2.resize(region, (max(1, (right - left) // 8), max(1, (bottom - top) // 8)),
                           interpolation=cv2.INTER_AREA)
        out[top:bottom, left:right] = cv2.resize(small, (right - left, bottom - top),
                                                 interpolation=cv2.INTER_NEAREST)
    return out


def render_snapshot(image_bgr: np.ndarray, involved: Mapping[int, BoxXyxy],
                    labels: Mapping[int, str], others: Sequence[BoxXyxy] = (),
                    blur_others: bool = False, caption: str = "") -> np.ndarray:
    """The frame with each involved track's box and label drawn; with ``blur_others``
    the ``others`` boxes (faces not in the alert) are blurred first."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 \
            or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise EvidenceError(f"snapshot: expected a uint8 (H, W, 3) BGR frame, got "
                            f"{getattr(image_bgr, 'dtype', type(image_bgr).__name__)} "
                            f"{getattr(image_bgr, 'shape', '')}")
    out = blur_boxes(image_bgr, others) if blur_others and others else image_bgr.copy()
    for track_id, (x1, y1, x2, y2) in involved.items():
        colour = track_colour_bgr(track_id)
        cv2.rectangle(out, (round(x1), round(y1)), (round(x2), round(y2)), colour, 2)
        text = f"#{track_id} {labels.get(track_id, '')}".strip()
        cv2.putText(out, text, (round(x1), max(10, round(y1) - 4)), _FONT, 0.4, colour, 1,
                    cv2.LINE_AA)
    if caption:  # along the bottom edge, where it hides no box label
        height = out.shape[0]
        cv2.rectangle(out, (0, height - 16), (out.shape[1], height), (0, 0, 0), cv2.FILLED)
        cv2.putText(out, caption, (4, height - 4), _FONT, 0.4, (0, 0, 255), 1, cv2.LINE_AA)
    return out


def encode_image(image_bgr: np.ndarray, ext: str, jpeg_quality: int = 90) -> bytes:
    """``image_bgr`` encoded as ``.jpg`` (at ``jpeg_quality``) or ``.png``; EvidenceError
    when OpenCV cannot."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(image_bgr), params)
    if not ok:
        raise EvidenceError(f"cannot encode a {image_bgr.shape} image as {ext}")
    return encoded.tobytes()
