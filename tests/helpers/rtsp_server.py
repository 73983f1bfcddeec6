"""Real RTSP server fixture on 127.0.0.1: aio-rtsp-toolkit's RTSP/TCP file server.

The server runs in a subprocess (``python tests/helpers/rtsp_server.py DIR PORT``) so a
test can stop it and start it again on the same port. It serves the files in DIR;
``?play_count=0`` in the URL makes it loop a clip forever, in real time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT_S = 15.0
# Sessions one server streams at once without one of them waiting for a reader thread.
MAX_SESSIONS = 64
CLIP_NAME = "clip.mp4"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class RtspServerProcess:
    """A real RTSP server in a subprocess, restartable on the same port."""

    def __init__(self, media_dir: Path, log_path: Path, port: int | None = None) -> None:
        self.media_dir = Path(media_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self._process: subprocess.Popen | None = None

    def url(self, name: str = CLIP_NAME, loop: bool = True) -> str:
        query = "?play_count=0" if loop else ""
        return f"rtsp://127.0.0.1:{self.port}/{name}{query}"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs (for CPU accounting), else None."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), str(self.media_dir),
                 str(self.port)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"RTSP server exited with {self._process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if _accepts(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"RTSP server did not accept on port {self.port} within "
                           f"{READY_TIMEOUT_S} s")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but no data flows, like a
        hung camera."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused process would not act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        # The port must be free again before a restart on it is attempted.
        deadline = time.monotonic() + 5
        while _accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()


def serve_copy(clip: Path, folder: Path) -> RtspServerProcess:
    """A started server whose media folder (``folder/media``) holds a copy of ``clip``;
    ``.url(clip.name)`` loops it. The caller stops it."""
    import shutil

    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, media / clip.name)
    server = RtspServerProcess(media, folder / "rtsp.log")
    server.start()
    return server


@pytest.fixture(scope="session")
def rtsp_media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a 2 s 160x120 25 fps H.264 clip (no B-frames) named ``clip.mp4``."""
    from tests.helpers.media import make_clip

    media_dir = tmp_path_factory.mktemp("rtsp_media")
    make_clip(media_dir / CLIP_NAME, count=50, fps=25, width=160, height=120)
    return media_dir


@pytest.fixture
def rtsp_server(rtsp_media_dir: Path, tmp_path: Path) -> Iterator[RtspServerProcess]:
    """A running RTSP server on a free loopback port; ``.url()`` loops ``clip.mp4``."""
    server = RtspServerProcess(rtsp_media_dir, tmp_path / "rtsp_server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _serve(media_dir: str, port: int) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from aio_rtsp_toolkit import server as rtsp

    class _InfoLogger:
        """The toolkit logs every RTCP report at debug level; keep the log readable."""

        def debug(self, message: str) -> None:
            pass

        def info(self, message: str) -> None:
            print("INFO", message, flush=True)

        warning = error = critical = info

    rtsp.logger = _InfoLogger()

    async def serve() -> None:
        # Each playing session reads its file in a thread of the loop's default executor
        # (asyncio.to_thread), which has only cpu_count + 4 threads: on a 2-core machine the
        # 7th looping session stalled for up to 2.8 s at a time and then sent its frames in a
        # burst (measured, docs/RESULTS.md "Live capacity"). A thread per session, up to
        # MAX_SESSIONS.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=MAX_SESSIONS, thread_name_prefix="rtsp-session"))
        await rtsp.RtspServer(media_dir, host="127.0.0.1", port=port).serve_forever()

    # SIGTERM keeps its default action: the process dies at once and the OS closes every
    # client connection, which is what a camera that loses power looks like to a client.
    asyncio.run(serve())


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
