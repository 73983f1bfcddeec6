"""One exception root for the runtime, so callers can catch everything we raise on purpose."""

from __future__ import annotations

import os
from pathlib import Path


class PipelineError(Exception):
    """Root of every error the pipeline raises deliberately."""


class ConfigError(PipelineError):
    """A configuration file or value is invalid; the message names the field."""


class SourceError(PipelineError):
    """A video source could not be opened, read or decoded."""


class ModelError(PipelineError):
    """A model artifact is missing, malformed or does not match its manifest."""


class SinkError(PipelineError):
    """Publishing events (Redis) failed."""


class RedisRefusedError(SinkError):
    """Redis refused us for a reason that retrying cannot fix: credentials (WRONGPASS,
    NOAUTH), ACL (NOPERM on the product's keys), TLS (certificate, wrong scheme), or a
    server set up to evict the product's streams when the config says to refuse that."""


class RedisUnavailableError(SinkError):
    """Redis stayed unreachable (or busy, loading, read-only) longer than the caller waits."""


class EvidenceError(PipelineError):
    """Alert evidence (a clip, snapshot or crop) could not be made, stored or deleted."""


def shown_path(path: object) -> str:
    """``path`` for an error message; a relative path also names the working directory it
    is read from (config paths such as ``../shared/...`` are relative to where the command
    runs, not to the config file); None is shown as ``not set``."""
    if path is None:
        return "not set"
    path = Path(str(path))
    if path.is_absolute():
        return str(path)
    return f"{path} (relative to the working directory {os.getcwd()})"
