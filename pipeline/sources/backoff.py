"""Exponential reconnect backoff with jitter, so many cameras do not retry in lock step."""

from __future__ import annotations

import random

from pipeline.config import ReconnectConfig


class Backoff:
    """``initial * multiplier**n`` capped at ``max_delay_s``, then +-``jitter_fraction``."""

    def __init__(self, config: ReconnectConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay_s(self) -> float:
        config = self._config
        base_s = min(config.max_delay_s,
                     config.initial_delay_s * config.multiplier ** self._attempt)
        if base_s < config.max_delay_s:  # stop growing at the cap (no float overflow)
            self._attempt += 1
        jitter_s = base_s * config.jitter_fraction * self._rng.uniform(-1.0, 1.0)
        return min(config.max_delay_s, max(0.0, base_s + jitter_s))

    def reset(self) -> None:
        """Call after a connection that worked, so the next failure retries quickly."""
        self._attempt = 0
