"""What a camera URL points at, checked once at start-up, and the URL used to connect.

The config URL never holds a password (config validation refuses that); credentials are
resolved from the environment or a file only when connecting, and the URL that carries them
is never logged or stored: logs and health use the config URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pipeline.config import CameraConfig
from pipeline.errors import SourceError
from pipeline.secrets import mask_secrets, resolve_credentials, url_with_credentials

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")

SourceKind = Literal["network", "file"]


class PermanentSourceError(SourceError):
    """Retrying cannot help: bad URL, missing file, missing credentials, not a video."""


@dataclass(frozen=True)
class SourceUrl:
    """A checked camera URL: ``display`` is safe to log, ``target`` is what PyAV opens
    (before credentials are added)."""

    kind: SourceKind
    scheme: str
    target: str
    display: str


def parse_source_url(url: str) -> SourceUrl:
    """Classify ``url`` as a network stream or a file; raise a clear SourceError if it is bad."""
    display = mask_secrets(url)
    text = url.strip()
    if not text:
        raise PermanentSourceError("bad url: empty")
    if "://" not in text:
        return SourceUrl(kind="file", scheme="file", target=text, display=display)
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as err:
        raise PermanentSourceError(f"bad url {display!r}: {err}") from err
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not parts.path:
            raise PermanentSourceError(f"bad url {display!r}: no file path")
        return SourceUrl(kind="file", scheme="file", target=parts.path, display=display)
    if scheme not in NETWORK_SCHEMES:
        raise PermanentSourceError(
            f"bad url {display!r}: unsupported scheme {scheme!r}, expected one of "
            f"{', '.join(NETWORK_SCHEMES)} or a file path")
    if not parts.hostname:
        raise PermanentSourceError(f"bad url {display!r}: no host")
    if port == 0:
        raise PermanentSourceError(f"bad url {display!r}: port 0")
    return SourceUrl(kind="network", scheme=scheme, target=text, display=display)


def connect_url(camera: CameraConfig, source_url: SourceUrl) -> str:
    """The URL to open right now, with credentials inserted. Never log the result."""
    if source_url.kind == "file":
        return source_url.target
    username, password = resolve_credentials(camera.credentials)
    return url_with_credentials(source_url.target, username, password)
