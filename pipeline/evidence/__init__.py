"""Alert evidence an operator can act on: a clip cut from each camera's packet ring buffer
(stream copy), a snapshot with the involved tracks' boxes, the restored face crops; stored
with retention and an audit log; referenced from the alert and a follow-up message.

Modules: ``ring`` (packet ring buffer), ``clip`` (MP4 by stream copy), ``snapshot`` (still
images), ``context`` (recent boxes and crops), ``store`` (store interface, local store,
retention, audit), ``produce`` (one alert's files and message), ``recorder`` (threads and
timing).
"""

from pipeline.evidence.recorder import EvidenceRecorder, EvidenceStats
from pipeline.evidence.store import EvidenceStore, LocalEvidenceStore, StoredObject

__all__ = ["EvidenceRecorder", "EvidenceStats", "EvidenceStore", "LocalEvidenceStore",
           "StoredObject"]
