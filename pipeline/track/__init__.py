"""Multi-face tracking: ByteTrack-style association with a constant-velocity Kalman filter."""

from pipeline.track.tracker import FaceTracker, TrackSummary

__all__ = ["FaceTracker", "TrackSummary"]
