"""Real redis-server fixtures on a free loopback port, built on the pipeline's EmbeddedRedis.

``redis_server`` (function scoped: each test gets an empty server with its own data folder)
yields an :class:`EmbeddedRedis` with ``url``, ``host``, ``port``, ``stop()`` and ``start()``
(restart on the same port and data folder, for outage tests). ``redis_client`` is a client
for it. ``redis_server_factory`` starts servers with extra arguments (ACL file, TLS).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from pipeline.sinks.embedded import EmbeddedRedis, find_redis_server, server_version


def redis_binary_supports_tls(binary: Path) -> bool:
    """Whether redis-server was built with TLS (BUILD_TLS=yes)."""
    return b"tls-cert-file" in binary.read_bytes()


def make_test_ca(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost, via openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not found; cannot make test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}" for name in
             ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "ext.cnf")}
    paths["ext.cnf"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(paths["ca.key"]), "-out", str(paths["ca.crt"]))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(paths["server.key"]), "-out", str(paths["server.csr"]))
    run("x509", "-req", "-in", str(paths["server.csr"]), "-CA", str(paths["ca.crt"]),
        "-CAkey", str(paths["ca.key"]), "-CAcreateserial", "-days", "2",
        "-extfile", str(paths["ext.cnf"]), "-out", str(paths["server.crt"]))
    return {"ca": paths["ca.crt"], "cert": paths["server.crt"], "key": paths["server.key"]}


@pytest.fixture(scope="session")
def redis_binary() -> Path:
    return find_redis_server()


@pytest.fixture(scope="session")
def redis_version(redis_binary: Path) -> tuple[int, int, int]:
    return server_version(redis_binary)


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., EmbeddedRedis]]:
    started: list[EmbeddedRedis] = []

    def make(name: str = "redis", **kwargs: object) -> EmbeddedRedis:
        server = EmbeddedRedis(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., EmbeddedRedis]) -> EmbeddedRedis:
    return redis_server_factory()


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    yield client
    client.close()
