"""Where a stream entry came from: the worker, its lease epoch and station-unique track ids.

These ride as extra entry fields beside ``type``, ``msg_id`` and ``data`` (docs/events.md),
not inside the JSON: consumers built on the v1 message models, which refuse unknown keys in
``data``, keep working, and a reader that wants them asks :func:`entry_origin`.

============  ================================================================================
field         value
============  ================================================================================
worker_id     the worker that analysed the camera (``cluster.worker_id``)
lease_epoch   the fencing epoch of its lease on the camera, decimal; 0 outside leases mode
track_uid     face-track entries: the track, unique across cameras, workers and restarts
track_uids    alerts: the same for each of ``data.tracks``, comma-separated, in that order
============  ================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.records import CameraRun


@dataclass(frozen=True)
class EntryOrigin:
    worker_id: str
    lease_epoch: int
    track_uids: tuple[str, ...]


def origin_fields(run: CameraRun | None, track_ids: Sequence[int], *,
                  alert: bool = False) -> dict[str, str]:
    """The extra entry fields for an event (one track) or an alert (its tracks); none when
    the camera run is unknown (offline replay)."""
    if run is None:
        return {}
    uids = ",".join(run.track_uid(track_id) for track_id in track_ids)
    return {"worker_id": run.worker_id, "lease_epoch": str(run.lease_epoch),
            "track_uids" if alert else "track_uid": uids}


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def entry_origin(fields: Mapping) -> EntryOrigin | None:
    """The origin fields of a stream entry (bytes or str keys); None for entries written
    without them (replay, or a pipeline older than the cluster modes)."""
    decoded = {_text(k): _text(v) for k, v in fields.items()}
    worker = decoded.get("worker_id")
    if worker is None:
        return None
    try:
        epoch = int(decoded.get("lease_epoch", "0"))
    except ValueError:
        epoch = 0
    uids = decoded.get("track_uid") or decoded.get("track_uids") or ""
    return EntryOrigin(worker, epoch, tuple(u for u in uids.split(",") if u))
