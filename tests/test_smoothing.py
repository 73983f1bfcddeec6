"""Per-track smoothing: converges to what it sees, confidence grows with evidence."""

from __future__ import annotations

import itertools

import pytest

from pipeline.config import SmoothingConfig
from pipeline.records import EmotionResult
from pipeline.smoothing import EmotionSmoother

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def probs(top: str, p: float) -> EmotionResult:
    rest = (1 - p) / (len(CLASSES) - 1)
    return EmotionResult(CLASSES, tuple(p if c == top else rest for c in CLASSES), False)


def test_first_observation_is_taken_as_is_with_low_confidence() -> None:
    smoother = EmotionSmoother(SmoothingConfig(half_life_s=3.0, prior_strength=2.0))
    state = smoother.update("cam", 1, 0.0, probs("fear", 0.7))
    assert state.probability("fear") == pytest.approx(0.7)
    assert state.confidence == pytest.approx(1 / 3)
    assert state.observations == 1 and state.top_class == "fear"


def test_confidence_grows_with_evidence_and_probabilities_stay_normalised() -> None:
    smoother = EmotionSmoother(SmoothingConfig(half_life_s=3.0, prior_strength=2.0))
    confidences = []
    for i in range(10):
        state = smoother.update("cam", 1, i * 1000.0, probs("anger", 0.8))
        confidences.append(state.confidence)
        assert sum(state.probabilities) == pytest.approx(1.0)
    assert all(b > a for a, b in itertools.pairwise(confidences))
    assert 0.6 < confidences[-1] < 1.0


def test_recent_evidence_outweighs_old_by_half_life() -> None:
    smoother = EmotionSmoother(SmoothingConfig(half_life_s=1.0, prior_strength=1.0))
    smoother.update("cam", 1, 0.0, probs("happiness", 1.0))
    # one half-life later the old observation weighs 0.5 against 1.0 for the new one
    state = smoother.update("cam", 1, 1000.0, probs("fear", 1.0))
    assert state.probability("fear") == pytest.approx(2 / 3)
    assert state.evidence == pytest.approx(1.5)


def test_tracks_are_independent_and_end_track_resets() -> None:
    smoother = EmotionSmoother(SmoothingConfig())
    smoother.update("cam", 1, 0.0, probs("fear", 0.9))
    other = smoother.update("cam", 2, 0.0, probs("happiness", 0.9))
    assert other.top_class == "happiness"
    smoother.end_track("cam", 1)
    assert smoother.update("cam", 1, 10.0, probs("sadness", 0.9)).observations == 1


def test_expire_forgets_unobserved_tracks_in_stream_time() -> None:
    smoother = EmotionSmoother(SmoothingConfig(track_ttl_s=5.0))
    smoother.update("cam", 1, 0.0, probs("fear", 0.9))
    smoother.update("cam", 2, 4000.0, probs("fear", 0.9))
    assert smoother.expire("cam", 6000.0) == [1]
    assert len(smoother) == 1


def test_class_names_must_not_change() -> None:
    smoother = EmotionSmoother(SmoothingConfig())
    smoother.update("cam", 1, 0.0, probs("fear", 0.9))
    with pytest.raises(ValueError, match="expected classes"):
        smoother.update("cam", 1, 1.0, EmotionResult(("a", "b"), (0.5, 0.5), False))
