"""Pipelined XADD without redis-py's per-argument packing, which caps it near 20k entries/s.

Commands are packed to RESP here and sent on a connection from the client's pool, so
authentication, TLS and timeouts are the client's. Replies are read one per command; an error
reply becomes that command's result and the rest of the batch still goes through.
"""

from __future__ import annotations

import redis


def pack_command(*args: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def pack_xadd(stream: str, fields: dict[str, str], maxlen: int) -> bytes:
    """``XADD stream MAXLEN ~ maxlen * field value ...``"""
    args = [b"XADD", stream.encode(), b"MAXLEN", b"~", str(maxlen).encode(), b"*"]
    for key, value in fields.items():
        args.append(key.encode())
        args.append(value.encode())
    return pack_command(*args)


def execute_packed(client: redis.Redis, commands: list[bytes]) -> list[object]:
    """Send packed commands in one write; returns one reply or ResponseError per command.

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
