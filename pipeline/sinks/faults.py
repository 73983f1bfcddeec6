"""Which Redis errors go away by themselves (transient) and which never will (permanent).

redis-py maps most error replies to exception classes and strips the code from the message
(``NOPERM ...`` becomes ``NoPermissionError("this user has no permissions ...")``), so the
class is what tells them apart; codes it does not map (``BUSY``, ``NOREPLICAS``, ``MISCONF``,
``WRONGTYPE``, ``NOGROUP``) stay as the first word of a plain ``ResponseError``.

=====================================  =========  ==========================================
error                                  kind       what the pipeline does
=====================================  =========  ==========================================
connection refused / reset / closed    transient  spool, retry with backoff
timeout (connect or read)              transient  spool, retry with backoff
LOADING, BUSY, OOM, READONLY,          transient  spool, retry with backoff
MASTERDOWN, TRYAGAIN, CLUSTERDOWN,
NOREPLICAS, MISCONF, UNBLOCKED,
max clients
NOPERM (ACL refuses command or key)    permanent  start-up: exit 2; run: entries rejected
WRONGPASS, NOAUTH, other AUTH errors   permanent  start-up: exit 2; run: spooled, error logged
TLS certificate does not verify,       permanent  start-up: exit 2; run: spooled, error logged
other TLS handshake failures
WRONGTYPE, ERR (syntax...), MOVED,     permanent  entries rejected (never spooled)
protocol errors (not a Redis server)
=====================================  =========  ==========================================
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

import redis
from redis import exceptions as rx

from pipeline.secrets import mask_secrets

# Plain ResponseError codes (not mapped to a class by redis-py) that clear by themselves.
_TRANSIENT_CODES = frozenset({"BUSY", "LOADING", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN",
                              "CLUSTERDOWN", "NOREPLICAS", "MISCONF", "UNBLOCKED"})
# redis-py classes that carry a stripped code, most specific first.
_CLASS_CODES: tuple[tuple[type[BaseException], str, bool], ...] = (
    (rx.NoPermissionError, "NOPERM", False),
    (rx.AuthenticationWrongNumberOfArgsError, "AUTH", False),
    (rx.OutOfMemoryError, "OOM", True),
    (rx.ReadOnlyError, "READONLY", True),
    (rx.MasterDownError, "MASTERDOWN", True),
    (rx.ClusterDownError, "CLUSTERDOWN", True),
    (rx.TryAgainError, "TRYAGAIN", True),
    (rx.AskError, "MOVED", False),  # MovedError too: a cluster node; cluster is not supported
    (rx.BusyLoadingError, "LOADING", True),
    (rx.DataError, "DATA", False),
    (rx.InvalidResponse, "PROTOCOL", False),
)


@dataclass(frozen=True)
class RedisFault:
    """What kind of error a Redis exception is. ``code`` is the Redis error code (``NOPERM``,
    ``OOM``...) or ours for errors without one (``CONNECTION``, ``TIMEOUT``, ``TLS``,
    ``TLS-VERIFY``, ``PROTOCOL``); ``cause`` is a readable line with secrets masked."""

    transient: bool
    code: str
    cause: str

    @property
    def permanent(self) -> bool:
        return not self.transient


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from (redis-py wraps socket and ssl errors)."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _tls_fault(err: BaseException, text: str) -> RedisFault | None:
    chain = _chain(err)
    if (any(isinstance(e, ssl.SSLCertVerificationError) for e in chain)
            or "certificate verify failed" in text):
        return RedisFault(False, "TLS-VERIFY",
                          f"the server's TLS certificate does not verify against "
                          f"redis.tls.ca_file (or the system CAs): {text}")
    benign = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLWantReadError,
              ssl.SSLWantWriteError, ssl.SSLSyscallError)
    for link in chain:
        if isinstance(link, ssl.SSLError) and not isinstance(link, benign):
            return RedisFault(False, "TLS", f"TLS handshake failed: {text}")
    return None


def _auth_code(text: str) -> str:
    """redis-py raises AuthenticationError for WRONGPASS, NOAUTH (incl. "HELLO must be called
    with the client already authenticated") and AUTH sent to a server without a password."""
    lowered = text.lower()
    if "username-password" in lowered or "invalid password" in lowered:
        return "WRONGPASS"
    if "without any password configured" in lowered or "no password is set" in lowered:
        return "AUTH"
    return "NOAUTH"


def classify_redis_error(err: BaseException) -> RedisFault:
    """Classify an exception raised by redis-py (or a socket error under it).

    Never raises. Unknown errors are permanent: retrying what we do not understand forever
    would hide it, and the entries involved are counted as not delivered.
    """
    text = mask_secrets(str(err)) or type(err).__name__
    if isinstance(err, (rx.AuthenticationError, rx.AuthorizationError)):
        code = _auth_code(text)
        return RedisFault(False, code, f"{code}: {text}")
    for cls, code, transient in _CLASS_CODES:
        if isinstance(err, cls):
            return RedisFault(transient, code, f"{code}: {text}")
    if isinstance(err, rx.ResponseError):
        word = text.split(" ", 1)[0]
        # an upper-case first word is the reply's code; redis-py strips "ERR"
        code = word if word.isalpha() and word.isupper() else "ERR"
        return RedisFault(code in _TRANSIENT_CODES, code, text)
    if isinstance(err, (rx.TimeoutError, socket.timeout)):
        return RedisFault(True, "TIMEOUT", f"timeout: {text}")
    if isinstance(err, (rx.ConnectionError, OSError)):
        tls = _tls_fault(err, text)
        if tls is not None:
            return tls
        return RedisFault(True, "CONNECTION", text)
    if isinstance(err, redis.RedisError):
        return RedisFault(False, "REDIS", text)
    return RedisFault(False, type(err).__name__, text)


def is_nogroup(err: BaseException) -> bool:
    """A consumer group (or its stream) no longer exists: ``NOGROUP No such key ... or
    consumer group ...``."""
    return isinstance(err, rx.ResponseError) and str(err).startswith("NOGROUP")


def explain_refusal(fault: RedisFault, username: str) -> str:
    """A line for the operator: what Redis refused and which setting to look at."""
    if fault.code == "WRONGPASS":
        return (f"redis refused the credentials of user {username!r} ({fault.cause}); check "
                f"redis.credentials and the server's ACL file")
    if fault.code == "AUTH":
        return (f"redis refused authentication ({fault.cause}); the server has no password "
                f"for this user: check redis.credentials and the server's ACL file")
    if fault.code == "NOAUTH":
        return (f"redis requires authentication ({fault.cause}); set redis.credentials "
                f"(username_env, password_env or password_file)")
    if fault.code == "TLS-VERIFY":
        return f"{fault.cause}; check redis.tls.ca_file and the server's certificate"
    if fault.code == "TLS":
        return (f"{fault.cause}; check that redis.url's port is the server's tls-port and "
                f"the redis.tls files")
    if fault.code == "NOPERM":
        return (f"the ACL refuses user {username!r} ({fault.cause}); see "
                f"deploy/redis/users.acl")
    return fault.cause
