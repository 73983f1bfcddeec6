"""The stage interface: every processing step has start / process / stop.

A stage owns no threads or queues; the runner (pipeline.runner) does. ``process`` takes one
input and returns its output, so a stage is testable by calling it directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Stage(ABC, Generic[In, Out]):
    name: str = "stage"

    def start(self) -> None:
        """Load models, open connections, warm up. Fail fast here, not on the first frame."""

    @abstractmethod
    def process(self, item: In) -> Out:
        """Handle one input."""

    def stop(self) -> None:
        """Release resources. Must be safe to call twice."""
