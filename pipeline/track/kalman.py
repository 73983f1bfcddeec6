"""Constant-velocity Kalman filter on a face box (centre x, centre y, width, height).

Time is stream time in seconds, so a filter advanced over skipped or dropped frames moves the
box by the elapsed time, not by a frame count. Noise scales with the box height (as in
ByteTrack / BoT-SORT), so a 16 px face and a 200 px face are equally easy to follow.
"""

from __future__ import annotations

import numpy as np

# Standard deviations as fractions of box height: position per observation, velocity per
# second. Tuned for faces moving up to about a box width per 0.2 s.
_POS_STD = 1.0 / 20.0
_VEL_STD = 25.0 / 160.0
_INIT_VEL_STD = 25.0 * 10.0 / 160.0
_MIN_SIDE_PX = 1.0


def xyxy_to_cxcywh(bbox_xyxy: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = bbox_xyxy
    return np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1], dtype=np.float64)


def cxcywh_to_xyxy(box: np.ndarray) -> tuple[float, float, float, float]:
    cx, cy = float(box[0]), float(box[1])
    w, h = max(float(box[2]), _MIN_SIDE_PX), max(float(box[3]), _MIN_SIDE_PX)
    return (cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)


class BoxKalman:
    """State: (cx, cy, w, h) in pixels and their velocities in pixels per second."""

    def __init__(self, bbox_xyxy: tuple[float, float, float, float]) -> None:
        box = xyxy_to_cxcywh(bbox_xyxy)
        self.mean = np.concatenate([box, np.zeros(4)])
        side = max(box[3], _MIN_SIDE_PX)
        std = np.array([2 * _POS_STD * side] * 4 + [_INIT_VEL_STD * side] * 4)
        self.covariance = np.diag(std**2)
        self._observe = np.eye(4, 8)

    @property
    def bbox_xyxy(self) -> tuple[float, float, float, float]:
        return cxcywh_to_xyxy(self.mean[:4])

    def predict(self, dt_s: float) -> None:
        """Advance the state by ``dt_s`` seconds of stream time (no-op for dt <= 0)."""
        if dt_s <= 0.0:
            return
        motion = np.eye(8)
        motion[:4, 4:] = np.eye(4) * dt_s
        side = max(self.mean[3], _MIN_SIDE_PX)
        # Random-walk noise on the velocity grows with elapsed time; position noise with it.
        q_pos = (_POS_STD * side) ** 2 * dt_s * 25.0
        q_vel = (_VEL_STD * side) ** 2 * dt_s * 25.0
        noise = np.diag([q_pos] * 4 + [q_vel] * 4)
        self.mean = motion @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], _MIN_SIDE_PX)
        self.covariance = motion @ self.covariance @ motion.T + noise

    def update(self, bbox_xyxy: tuple[float, float, float, float]) -> None:
        """Correct the state with an observed box."""
        measured = xyxy_to_cxcywh(bbox_xyxy)
        side = max(self.mean[3], _MIN_SIDE_PX)
        r = np.diag([(_POS_STD * side) ** 2] * 4)
        h = self._observe
        projected_cov = h @ self.covariance @ h.T + r
        gain = np.linalg.solve(projected_cov, h @ self.covariance).T
        self.mean = self.mean + gain @ (measured - h @ self.mean)
        self.covariance = (np.eye(8) - gain @ h) @ self.covariance
