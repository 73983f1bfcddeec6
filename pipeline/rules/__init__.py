"""Alert rules over smoothed per-track emotion state."""

from pipeline.rules.alert import Alert, AlertTrack
from pipeline.rules.engine import AlertEngine, validate_rules

__all__ = ["Alert", "AlertEngine", "AlertTrack", "validate_rules"]
