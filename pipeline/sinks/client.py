"""Build a redis-py client from :class:`RedisConfig`: credentials from the environment, TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from pipeline.config import CredentialsConfig, RedisConfig
from pipeline.errors import ConfigError
from pipeline.secrets import mask_secrets, resolve_credentials


def _existing(field: str, path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"redis.tls.{field}: file not found: {path}")
    return str(path)


def create_redis_client(cfg: RedisConfig, *, url: str | None = None,
                        credentials: CredentialsConfig | None = None,
                        env: dict[str, str] | None = None,
                        retries: int = 0,
                        on_connect: Callable[[AbstractConnection], None] | None = None,
                        ) -> redis.Redis:
    """A client for ``url`` (default ``cfg.url``), authenticated with ``credentials``
    (default ``cfg.credentials``). Secrets are passed as arguments, never put in the URL.

    ``retries`` is how many times redis-py silently retries a command after a connection
    error; the publisher uses 0 so an outage reaches its spool at once.

    ``on_connect`` replaces redis-py's connection set-up for every new connection; it must
    call ``connection.on_connect()`` (authentication, database) first. The publisher uses it
    to read the server's run id on each reconnect, before anything is written on it.

    Raises ConfigError for a bad URL, missing TLS files or TLS settings on a redis:// URL.
    """
    url = url or cfg.url
    username, password = resolve_credentials(
        credentials if credentials is not None else cfg.credentials, env)
    kwargs: dict[str, object] = {
        "socket_connect_timeout": cfg.connect_timeout_s,
        "socket_timeout": cfg.socket_timeout_s,
        "retry": Retry(NoBackoff(), retries),
    }
    if on_connect is not None:
        kwargs["redis_connect_func"] = on_connect
    if username:
        kwargs["username"] = username
    if password:
        kwargs["password"] = password
    if url.startswith("rediss://"):
        tls = cfg.tls
        if tls is not None:
            kwargs["ssl_ca_certs"] = _existing("ca_file", tls.ca_file)
            kwargs["ssl_certfile"] = _existing("cert_file", tls.cert_file)
            kwargs["ssl_keyfile"] = _existing("key_file", tls.key_file)
            kwargs["ssl_check_hostname"] = tls.check_hostname
        kwargs["ssl_cert_reqs"] = "required"
    elif cfg.tls is not None:
        raise ConfigError(f"redis.tls is set but redis.url is not rediss://: {mask_secrets(url)}")
    try:
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as err:
        raise ConfigError(f"redis.url: {mask_secrets(str(err))}") from err
