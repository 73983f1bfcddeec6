"""Camera URL checks shared by config validation (so ``check_config`` names the field and
line) and the sources (which re-check before connecting). Pure functions, no I/O."""

from __future__ import annotations

from urllib.parse import urlsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")


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
    if port == 0:
        raise ValueError("port 0")
    return "network", scheme
