"""Notice when Redis loses entries it had acknowledged, and say how many.

Two kinds of evidence, both cheap:

- A stream vanished: the publisher writes with ``XADD ... NOMKSTREAM``, so a stream that was
  evicted (``maxmemory-policy allkeys-*``), deleted, or lost in a restart without its data
  answers nil instead of being silently re-created. Every entry it held is lost, and so are
  its consumer groups.
- The server restarted or failed over: its ``run_id`` (INFO server) changed between two
  connections. Each stream is then compared with what it held after our last acknowledged
  write: missing, or shorter (restart from an older snapshot or AOF, a replica that lagged).

"What it held" is the stream's length from ``XLEN`` after each batch; when the ACL refuses
XLEN it is counted from our acknowledged writes (capped at the stream's MAXLEN), which
over-counts entries that age trimming has removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamLoss:
    """``entries`` acknowledged entries of ``stream`` that Redis no longer holds."""

    stream: str
    entries: int
    vanished: bool  # the whole stream, and its consumer groups, are gone
    reason: str

    def describe(self) -> str:
        if self.vanished and not self.entries:
            return (f"redis stream {self.stream} vanished (it held no entries; its consumer "
                    f"groups are gone too) ({self.reason})")
        what = ("the stream vanished with its consumer groups" if self.vanished
                else "the stream is shorter than the entries acknowledged")
        return (f"redis lost {self.entries} acknowledged entries of {self.stream}: {what} "
                f"({self.reason})")


class LossTracker:
    """Per stream: does it exist, and how many entries should Redis hold; plus the run id."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self._exists: dict[str, bool] = {}
        self._held: dict[str, int] = {}

    def streams(self) -> list[str]:
        """Streams known to exist (the ones a restart can lose)."""
        return [s for s, exists in self._exists.items() if exists]

    def held(self, stream: str) -> int:
        return self._held.get(stream, 0)

    def baseline(self, lengths: dict[str, int | None]) -> None:
        """Lengths read at start-up (None: the stream does not exist yet)."""
        for stream, length in lengths.items():
            self._exists[stream] = length is not None
            self._held[stream] = length or 0

    def acked(self, stream: str, cap: int) -> None:
        """Redis acknowledged one XADD to ``stream`` (whose MAXLEN is ``cap``)."""
        self._exists[stream] = True
        self._held[stream] = min(self._held.get(stream, 0) + 1, cap)

    def known(self, stream: str) -> bool:
        """Whether the stream's existence and length are known (baseline or our writes)."""
        return stream in self._exists

    def length(self, stream: str, length: int, *, cap: int,
               trimmed: bool) -> StreamLoss | None:
        """XLEN after our writes: the exact count. Shorter than what we know was written,
        when our own XADD could not have trimmed it (no MINID in the batch, below the MAXLEN
        cap), means entries went missing: the stream was evicted and re-created by another
        client (a consumer re-creating its group), or another client trimmed it."""
        expected = self._held.get(stream, 0)
        self._held[stream] = length
        if trimmed or expected >= cap or length >= expected or not self._exists.get(stream):
            return None
        return StreamLoss(stream, expected - length, vanished=False,
                          reason="evicted and re-created by another client, or trimmed by "
                                 "another client")

    def missing_on_write(self, stream: str) -> StreamLoss | None:
        """``XADD NOMKSTREAM`` answered nil: the stream does not exist. A loss when it
        existed before (the first write of a new stream is no loss)."""
        existed = self._exists.get(stream, False)
        held = self._held.get(stream, 0)
        self._exists[stream] = False
        self._held[stream] = 0
        if not existed:
            return None
        return StreamLoss(stream, held, vanished=True,
                          reason="evicted under an allkeys-* maxmemory-policy, deleted, or "
                                 "redis restarted without its data")

    def server_seen(self, run_id: str,
                    lengths: dict[str, int | None] | None) -> list[StreamLoss]:
        """A connection reached the server with ``run_id``; ``lengths`` are the known
        streams' lengths now (None when they cannot be read). Returns the losses when the
        run id changed (a restart or failover), else nothing."""
        previous, self.run_id = self.run_id, run_id
        if previous is None or previous == run_id or lengths is None:
            return []
        reason = f"redis restarted or failed over: run id {previous[:8]}... -> {run_id[:8]}..."
        return list(self._compare(lengths, reason))

    def _compare(self, lengths: dict[str, int | None], reason: str) -> Iterable[StreamLoss]:
        for stream, now in lengths.items():
            before = self._held.get(stream, 0)
            if not self._exists.get(stream, False):
                continue
            if now is None:
                self._exists[stream] = False
                self._held[stream] = 0
                yield StreamLoss(stream, before, vanished=True, reason=reason)
            elif now < before:
                self._held[stream] = now
                yield StreamLoss(stream, before - now, vanished=False, reason=reason)
            else:
                self._held[stream] = now
