"""Per-track temporal smoothing of calibrated emotion probabilities, in stream time.

Each observation enters a time-decayed weighted average: the weight of past evidence halves
every ``half_life_s`` of stream time (``ts_ms``), so the result is deterministic on replay and
does not depend on how often a track is analysed. ``evidence`` is the decayed count of
observations; ``confidence = evidence / (evidence + prior_strength)`` grows with evidence
and falls again when a track goes unobserved.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import SmoothingConfig
from pipeline.records import EmotionResult


@dataclass(frozen=True)
class SmoothedEmotion:
    """A track's smoothed emotion state after its latest observation."""

    class_names: tuple[str, ...]
    probabilities: tuple[float, ...]
    confidence: float
    evidence: float
    observations: int
    ts_ms: float

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.probabilities):
            raise ValueError(f"SmoothedEmotion: expected {len(self.class_names)} probabilities, "
                             f"got {len(self.probabilities)}")

    @property
    def top_class(self) -> str:
        return self.class_names[max(range(len(self.probabilities)),
                                    key=self.probabilities.__getitem__)]

    def probability(self, class_name: str) -> float:
        return self.probabilities[self.class_names.index(class_name)]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.class_names, self.probabilities, strict=True))


@dataclass
class _TrackState:
    probabilities: list[float]
    evidence: float
    observations: int
    ts_ms: float


class EmotionSmoother:
    """Smoothed state per (camera, track). Not thread-safe: one owner (the rules stage)."""

    def __init__(self, cfg: SmoothingConfig) -> None:
        self.cfg = cfg
        self._half_life_ms = cfg.half_life_s * 1000.0
        self._tracks: dict[tuple[str, int], _TrackState] = {}
        self._class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, camera_id: str, track_id: int, ts_ms: float,
               emotion: EmotionResult) -> SmoothedEmotion:
        if self._class_names is None:
            self._class_names = tuple(emotion.class_names)
        elif tuple(emotion.class_names) != self._class_names:
            raise ValueError(f"EmotionSmoother: expected classes {self._class_names}, "
                             f"got {tuple(emotion.class_names)}")
        key = (camera_id, track_id)
        state = self._tracks.get(key)
        observed = [float(p) for p in emotion.probabilities]
        if state is None:
            state = _TrackState(observed, 1.0, 1, ts_ms)
            self._tracks[key] = state
        else:
            # Out-of-order timestamps (should not happen) decay nothing rather than amplify.
            decay = 0.5 ** (max(ts_ms - state.ts_ms, 0.0) / self._half_life_ms)
            prior = state.evidence * decay
            total = prior + 1.0
            state.probabilities = [(p * prior + q) / total
                                   for p, q in zip(state.probabilities, observed, strict=True)]
            state.evidence = total
            state.observations += 1
            state.ts_ms = max(ts_ms, state.ts_ms)
        return self._snapshot(self._class_names, state)

    def _snapshot(self, class_names: tuple[str, ...], state: _TrackState) -> SmoothedEmotion:
        return SmoothedEmotion(
            class_names=class_names,
            probabilities=tuple(state.probabilities),
            confidence=state.evidence / (state.evidence + self.cfg.prior_strength),
            evidence=state.evidence,
            observations=state.observations,
            ts_ms=state.ts_ms,
        )

    def end_track(self, camera_id: str, track_id: int) -> None:
        self._tracks.pop((camera_id, track_id), None)

    def expire(self, camera_id: str, now_ts_ms: float) -> list[int]:
        """Forget this camera's tracks unobserved for ``track_ttl_s``; returns their ids."""
        limit = now_ts_ms - self.cfg.track_ttl_s * 1000.0
        gone = [track for (camera, track), state in self._tracks.items()
                if camera == camera_id and state.ts_ms < limit]
        for track in gone:
            del self._tracks[(camera_id, track)]
        return gone
