"""Secrets (camera and Redis passwords) come from environment variables or files named in
config, are inserted into URLs only at the moment of connecting, and are masked in logs."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline.config import CredentialsConfig
from pipeline.errors import ConfigError

MASK = "***"

_registry_lock = threading.Lock()
_registered_secrets: set[str] = set()
# user:password@ inside any URL, whatever the scheme
_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]+)@")


def register_secret(value: str) -> None:
    """Remember a secret so that :class:`SecretMaskingFilter` removes it from every log line."""
    if value and len(value) >= 3:
        with _registry_lock:
            _registered_secrets.add(value)
            _registered_secrets.add(quote(value, safe=""))


def mask_secrets(text: str) -> str:
    """Mask URL passwords and every registered secret in ``text``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    with _registry_lock:
        secrets = sorted(_registered_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class SecretMaskingFilter(logging.Filter):
    """Rewrites each record's message (after %-formatting) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


def resolve_credentials(credentials: CredentialsConfig | None,
                        env: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """Return ``(username, password)`` from the environment / files; registers the password."""
    if credentials is None:
        return None, None
    env = os.environ if env is None else env
    username = None
    password = None
    if credentials.username_env:
        username = env.get(credentials.username_env)
        if username is None:
            raise ConfigError(f"credentials.username_env: environment variable "
                              f"{credentials.username_env} is not set")
    if credentials.password_env:
        password = env.get(credentials.password_env)
        if password is None:
            raise ConfigError(f"credentials.password_env: environment variable "
                              f"{credentials.password_env} is not set")
    elif credentials.password_file:
        try:
            password = credentials.password_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"credentials.password_file: cannot read "
                              f"{credentials.password_file}: {err.strerror}") from err
    if password:
        register_secret(password)
    return username, password


def url_with_credentials(url: str, username: str | None, password: str | None) -> str:
    """Insert user and password into a URL (for connecting only; never log the result)."""
    if not username and not password:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = quote(username or "", safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))


_CAMERA_THREAD = re.compile(r"^(?:decode|analyse|open)-(?P<camera>[A-Za-z0-9_.-]{1,64})$")
_CAMERA_MESSAGE = re.compile(r"^camera (?P<camera>[A-Za-z0-9_.-]{1,64})[:\s]")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    ``station``, ``camera`` (when the line is about one: the record's ``camera`` attribute,
    else a camera thread's name, else a message starting ``camera <id>``), ``thread`` and,
    with an exception, ``exception``. Message and exception are masked again here, so a
    handler without :class:`SecretMaskingFilter` still leaks nothing registered."""

    def __init__(self, station: str | None = None) -> None:
        super().__init__()
        self._station = station

    def format(self, record: logging.LogRecord) -> str:
        message = mask_secrets(record.getMessage())
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": message,
            "station": self._station, "camera": _camera_of(record, message),
            "thread": record.threadName,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = mask_secrets(record.exc_text)
        return json.dumps(payload, ensure_ascii=False, default=str)


def _camera_of(record: logging.LogRecord, message: str) -> str | None:
    camera = getattr(record, "camera", None)
    if camera:
        return str(camera)
    match = _CAMERA_THREAD.match(record.threadName or "") or _CAMERA_MESSAGE.match(message)
    return match["camera"] if match else None


def setup_logging(level: str = "INFO", fmt: str = "text", station: str | None = None) -> None:
    """Root logging with secret masking on every handler. Call once from an entry point.
    ``fmt`` "json" writes :class:`JsonLogFormatter` lines tagged with ``station``."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for handler in root.handlers:
        if not any(isinstance(f, SecretMaskingFilter) for f in handler.filters):
            handler.addFilter(SecretMaskingFilter())
        if fmt == "json":
            handler.setFormatter(JsonLogFormatter(station))
    root.setLevel(level)
