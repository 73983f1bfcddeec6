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
from pipeline.url_check import NETWORK_SCHEMES, check_camera_url

__all__ = ["NETWORK_SCHEMES", "PermanentSourceError", "SourceUrl", "connect_url",
           "parse_source_url"]

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
    try:
        kind, scheme = check_camera_url(url)
    except ValueError as err:
        raise PermanentSourceError(f"bad url {display!r}: {err}") from err
    text = url.strip()
    if kind == "file":
        target = urlsplit(text).path if text.lower().startswith("file://") else text
        return SourceUrl(kind="file", scheme="file", target=target, display=display)
    return SourceUrl(kind="network", scheme=scheme, target=text, display=display)


def connect_url(camera: CameraConfig, source_url: SourceUrl) -> str:
    """The URL to open right now, with credentials inserted. Never log the result."""
    if source_url.kind == "file":
        return source_url.target
    username, password = resolve_credentials(camera.credentials)
    return url_with_credentials(source_url.target, username, password)
