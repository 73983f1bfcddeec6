"""Pipelined XADD without redis-py's per-argument packing, which caps it near 20k entries/s.

Commands are packed to RESP here and sent on a connection from the client's pool, so
authentication, TLS and timeouts are the client's. Replies are read one per command; an error
reply becomes that command's result and the rest of the batch still goes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.connection import AbstractConnection


def pack_command(*args: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def pack_xadd(stream: str, fields: dict[str, str], maxlen: int, *, nomkstream: bool = False,
              minid: str | None = None) -> bytes:
    """``XADD stream [NOMKSTREAM] MAXLEN ~ maxlen * field value ...``, or ``MINID ~ minid``
    instead of the length cap when ``minid`` is given (XADD takes one trim strategy).

    With ``nomkstream`` Redis replies nil instead of creating a stream that does not exist:
    that is how the publisher notices a stream that vanished (needs Redis >= 6.2)."""
    args = [b"XADD", stream.encode()]
    if nomkstream:
        args.append(b"NOMKSTREAM")
    if minid is None:
        args += [b"MAXLEN", b"~", str(maxlen).encode()]
    else:
        args += [b"MINID", b"~", minid.encode()]
    args.append(b"*")
    for key, value in fields.items():
        args.append(key.encode())
        args.append(value.encode())
    return pack_command(*args)


def execute_packed(client: redis.Redis, commands: list[bytes]) -> list[object]:
    """Send packed commands in one write; returns one reply (``None`` for a nil reply) or
    ResponseError per command.

    Connection errors and timeouts propagate (the connection is dropped, since part of the
    batch may or may not have been applied)."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([b"".join(commands)])
        replies: list[object] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as err:
                replies.append(err)
        return replies
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


@contextmanager
def borrowed_connection(client: redis.Redis) -> Iterator[AbstractConnection]:
    """A connection from the client's pool (connected, authenticated, its connect hook run);
    dropped instead of returned when an error leaves it in an unknown state."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        yield connection
    except redis.ResponseError:
        raise  # an error reply was read in full: the connection is fine
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def command(connection: AbstractConnection, *args: str | bytes) -> object:
    """Run one command on ``connection``; error replies raise as redis-py exceptions.

    A reply error is read in full, so the connection stays usable after it."""
    connection.send_command(*args)
    return connection.read_response()
