"""Stream names. One events stream per station and camera, one alerts stream per station.

Names are ``{prefix}:{station}:events:{camera}``, ``{prefix}:{station}:alerts``,
``{prefix}:{station}:evidence`` (alert evidence references, when evidence is enabled) and
``{prefix}:{station}:dead-letter``; the ACL file in deploy/redis grants on these patterns.
"""

from __future__ import annotations

import re

_NAME_PART = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check(kind: str, value: str) -> str:
    if not _NAME_PART.match(value):
        raise ValueError(f"{kind}: expected 1-64 characters of [A-Za-z0-9_.-], got {value!r}")
    return value


def events_stream(prefix: str, station_id: str, camera_id: str) -> str:
    return (f"{_check('prefix', prefix)}:{_check('station_id', station_id)}"
            f":events:{_check('camera_id', camera_id)}")


def alerts_stream(prefix: str, station_id: str) -> str:
    return f"{_check('prefix', prefix)}:{_check('station_id', station_id)}:alerts"


def dead_letter_stream(prefix: str, station_id: str) -> str:
    return f"{_check('prefix', prefix)}:{_check('station_id', station_id)}:dead-letter"


def evidence_stream(prefix: str, station_id: str) -> str:
    return f"{_check('prefix', prefix)}:{_check('station_id', station_id)}:evidence"
