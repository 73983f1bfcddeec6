"""Start-up checks of the Redis server the publisher writes to, and the facts it remembers.

- Write access: ``XADD key NOMKSTREAM MAXLEN ~ n 0-0 probe 1`` on each stream the run will
  write. Redis checks the ACL (NOPERM) before running a command, and XADD refuses the id
  0-0 before it looks at the key, so an allowed probe writes nothing and answers "The ID
  specified in XADD must be greater than 0-0". Works for a user that may only XADD.
- Server identity: ``run_id`` from ``INFO server`` (changes on every restart or failover).
- Eviction: ``maxmemory-policy`` from ``INFO memory``, else ``CONFIG GET``; when the ACL
  refuses both, the check is the operator's (deploy/redis/README.md).
- Stream lengths: ``EXISTS`` + ``XLEN`` (metadata only, never entries).
- Wrong scheme: ``redis://`` against a TLS port (the server resets the connection) or
  ``rediss://`` against a plain port (the handshake times out) are told apart from an
  outage by trying the other protocol once.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from redis import exceptions as rx
from redis.connection import AbstractConnection

from pipeline.errors import RedisRefusedError
from pipeline.secrets import mask_secrets
from pipeline.sinks.faults import classify_redis_error
from pipeline.sinks.resp import command

_PROBE_REPLY = "must be greater than 0-0"


@dataclass(frozen=True)
class EvictionPolicy:
    policy: str
    maxmemory_bytes: int | None

    @property
    def evicts_streams(self) -> bool:
        """allkeys-* evicts any key, our streams included; volatile-* only keys with a TTL,
        and the pipeline never sets one on its streams."""
        return self.policy.startswith("allkeys-")


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _info_fields(reply: object) -> dict[str, str]:
    fields: dict[str, str] = {}
    if isinstance(reply, dict):  # a client that parsed it already
        return {str(k): _text(v) for k, v in reply.items()}
    for line in _text(reply).splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def read_run_id(connection: AbstractConnection) -> str | None:
    """The server's run id, or None when the reply has none.

    Raises NoPermissionError when the ACL refuses INFO; connection errors propagate."""
    return _info_fields(command(connection, "INFO", "server")).get("run_id") or None


def read_eviction_policy(connection: AbstractConnection) -> EvictionPolicy | None:
    """``maxmemory-policy`` (and ``maxmemory``) via INFO, else CONFIG GET; None when the ACL
    refuses both. Connection errors propagate."""
    try:
        fields = _info_fields(command(connection, "INFO", "memory"))
        if "maxmemory_policy" in fields:
            maxmemory = fields.get("maxmemory", "")
            return EvictionPolicy(fields["maxmemory_policy"],
                                  int(maxmemory) if maxmemory.isdigit() else None)
    except rx.NoPermissionError:
        pass
    try:
        reply = command(connection, "CONFIG", "GET", "maxmemory-policy")
    except rx.NoPermissionError:
        return None
    if isinstance(reply, dict):  # RESP3 map
        pairs = {_text(k): _text(v) for k, v in reply.items()}
    else:
        flat = list(reply) if isinstance(reply, list) else []
        pairs = {_text(k): _text(v) for k, v in zip(flat[::2], flat[1::2], strict=False)}
    policy = pairs.get("maxmemory-policy")
    return EvictionPolicy(policy, None) if policy else None


def check_write_access(connection: AbstractConnection, streams: Sequence[str], *,
                       username: str, pattern: str) -> None:
    """Prove that the ACL lets us XADD to each of ``streams`` without writing anything.

    Raises RedisRefusedError naming the user, stream and key pattern on NOPERM or another
    permanent refusal (Redis < 6.2 without NOMKSTREAM included). Transient errors (OOM,
    LOADING, READONLY...) and connection errors propagate unchanged for the caller."""
    for stream in streams:
        try:
            reply = command(connection, "XADD", stream, "NOMKSTREAM", "MAXLEN", "~", "1000",
                            "0-0", "probe", "1")
        except rx.ResponseError as err:
            if _PROBE_REPLY in str(err):
                continue
            fault = classify_redis_error(err)
            if fault.transient:
                raise
            if fault.code == "NOPERM":
                raise RedisRefusedError(
                    f"redis user {username!r} may not XADD to {stream} ({fault.cause}); the "
                    f"ACL must allow XADD on keys matching {pattern} (redis.stream_prefix and "
                    f"station.id make the names; see deploy/redis/users.acl)") from err
            raise RedisRefusedError(
                f"redis refused the XADD the pipeline uses on {stream}: {fault.cause} "
                f"(Redis >= 6.2 is required for XADD NOMKSTREAM)") from err
        raise RedisRefusedError(f"redis accepted XADD {stream} with id 0-0 (reply "
                                f"{_text(reply)!r}): expected it to refuse that id; "
                                f"is this a Redis-compatible server older than 6.2?")


def stream_lengths(connection: AbstractConnection,
                   streams: Sequence[str]) -> dict[str, int | None]:
    """Length of each stream, None for a stream that does not exist.

    Raises NoPermissionError when the ACL refuses EXISTS or XLEN."""
    lengths: dict[str, int | None] = {}
    for stream in streams:
        exists = _int(command(connection, "EXISTS", stream))
        lengths[stream] = _int(command(connection, "XLEN", stream)) if exists else None
    return lengths


def _int(reply: object) -> int:
    if not isinstance(reply, (int, bytes, str)):
        raise rx.InvalidResponse(f"expected an integer reply, got {reply!r}")
    return int(reply)


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        return None
    return parts.hostname, parts.port or 6379


def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False


def _speaks_plain_resp(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR", b"-WRONGPASS"))


def diagnose_scheme(url: str, timeout_s: float) -> str | None:
    """Why a connection that reached the port failed, when the cause is the URL scheme:
    a message for a plain URL against a TLS port or the reverse, else None."""
    target = _host_port(url)
    if target is None:
        return None
    host, port = target
    shown = mask_secrets(url)
    if url.startswith("redis://") and _speaks_tls(host, port, timeout_s):
        return (f"redis.url is {shown}, but {host}:{port} speaks TLS: use rediss:// "
                f"(and redis.tls.ca_file)")
    if url.startswith("rediss://") and _speaks_plain_resp(host, port, timeout_s):
        return (f"redis.url is {shown}, but {host}:{port} speaks plain Redis, not TLS: "
                f"use redis:// or the server's tls-port")
    return None


def client_username(client: redis.Redis) -> str:
    return str(client.connection_pool.connection_kwargs.get("username") or "default")
