"""Camera URL checks shared by config validation (so ``check_config`` names the field and
line) and the sources (which re-check before connecting). Pure functions, no I/O.

A value without ``://`` is a file path, unless it starts like a URL whose ``//`` was mistyped
(``rtsp:/host``, ``rtsp//host``, ``rtsp:host``): that is refused. Whether a file path exists
is checked by ``check_config`` (not here: the file may be mounted later).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")
_MISTYPED_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)(:/?(?!/)|//)", re.IGNORECASE)
_DOTTED_QUAD = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def check_camera_url(url: str) -> tuple[str, str]:
    """Return ``(kind, scheme)``: ``("file", "file")`` or ``("network", scheme)``.

    Raises:
        ValueError: naming what is wrong (empty, unknown scheme such as ``rtps``, no host,
            a non-numeric or out-of-range port, port 0, a ``file://`` URL without a path).
    """
    text = url.strip()
    if not text:
        raise ValueError("camera url is empty")
    if "://" not in text:
        mistyped = _MISTYPED_URL.match(text)
        if mistyped and mistyped.group("scheme").lower() in (*NETWORK_SCHEMES, "file"):
            raise ValueError(f"looks like a {mistyped.group('scheme')} URL with a mistyped "
                             f"'://' (got {text[:mistyped.end() + 12]!r}...)")
        return "file", "file"
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as err:
        raise ValueError(f"bad port or address: {err}") from err
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not parts.path:
            raise ValueError("file:// url has no file path")
        return "file", "file"
    if scheme not in NETWORK_SCHEMES:
        raise ValueError(f"unsupported scheme {scheme!r}, expected one of "
                         f"{', '.join(NETWORK_SCHEMES)} or a file path")
    if not parts.hostname:
        raise ValueError("no host")
    if any(ch.isspace() for ch in parts.netloc):
        raise ValueError(f"white space in the host part {parts.netloc!r}")
    if _DOTTED_QUAD.match(parts.hostname):
        try:
            ipaddress.IPv4Address(parts.hostname)
        except ValueError as err:
            raise ValueError(f"bad IPv4 address {parts.hostname!r}: {err}") from err
    if port == 0:
        raise ValueError("port 0")
    return "network", scheme
