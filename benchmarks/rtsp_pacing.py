"""Does the test RTSP server pace every session in real time? Frame arrival gaps per session.

    python benchmarks/rtsp_pacing.py --json OUT [--clip CLIP] [--sessions 8] [--seconds 30]

Serves CLIP (default: the Town Centre 1080p25 clip, looping) from the test RTSP server the
capacity benchmark uses (``tests/helpers/rtsp_server.py``) and reads it as ``--sessions``
RTSP clients at once, each in its own thread with PyAV, demuxing only (no decoding, so the
client side costs next to nothing). After a 5 s start-up it reports per session the packets
per second and the gaps between packets: p50, p99, max and how many exceed 200 ms. A server
that keeps up shows gaps of one frame interval (40 ms at 25 fps) in every session.

Why it exists: before the server got one reader thread per session, the 7th session on a
2-core machine stalled for up to 2.8 s at a time and then sent a burst, which made one camera
of the live capacity benchmark look starved (docs/RESULTS.md, "Live capacity", session 6).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.eval.report import command_line, print_table, write_json  # noqa: E402
from engines.train.ferplus import default_shared_dir  # noqa: E402
from tests.helpers.rtsp_server import serve_copy  # noqa: E402

START_UP_S = 5.0
LONG_GAP_MS = 200.0


def read_arrivals(url: str, stop: threading.Event, out: list[float]) -> None:
    """Append the arrival time (monotonic s) of each video packet of ``url`` to ``out``
    until ``stop``."""
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10.0, 5.0)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if stop.is_set():
                return
            if packet.size:
                out.append(time.monotonic())


def session_stats(arrivals: list[float], started: float) -> dict:
    """Packets per second and gap statistics (ms) after the start-up; raises ValueError
    when fewer than two packets arrived after it."""
    times = np.array([t for t in arrivals if t >= started + START_UP_S])
    if len(times) < 2:
        raise ValueError(f"only {len(times)} packets arrived after the {START_UP_S:g} s start-up")
    gaps = np.diff(times) * 1000.0
    return {"packets_per_s": round(float((len(times) - 1) / (times[-1] - times[0])), 2),
            "gap_p50_ms": round(float(np.percentile(gaps, 50)), 1),
            "gap_p99_ms": round(float(np.percentile(gaps, 99)), 1),
            "gap_max_ms": round(float(gaps.max()), 1),
            "gaps_over_200_ms": int((gaps > LONG_GAP_MS).sum())}


def measure(clip: Path, sessions: int, seconds: float) -> list[dict]:
    """Per-session statistics of ``sessions`` clients reading ``clip`` for ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        server = serve_copy(clip, Path(tmp))
        try:
            url = server.url(clip.name)
            stop = threading.Event()
            arrivals: list[list[float]] = [[] for _ in range(sessions)]
            started = time.monotonic()
            readers = [threading.Thread(target=read_arrivals, args=(url, stop, arrivals[i]),
                                        daemon=True) for i in range(sessions)]
            for reader in readers:
                reader.start()
            time.sleep(START_UP_S + seconds)
            stop.set()
            for reader in readers:
                reader.join(timeout=10)
        finally:
            server.stop()
    return [{"session": i, **session_stats(times, started)} for i, times in enumerate(arrivals)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--clip", type=Path,
                        default=default_shared_dir() / "data/cctv/town_centre_1080p25.mp4")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        parser.error(f"--clip: no video at {args.clip}")
    rows = measure(args.clip, args.sessions, args.seconds)
    print_table(rows, [("session", "session", 7, ""), ("pkt/s", "packets_per_s", 7, ".1f"),
                       ("p50 ms", "gap_p50_ms", 7, ".1f"), ("p99 ms", "gap_p99_ms", 7, ".1f"),
                       ("max ms", "gap_max_ms", 8, ".1f"),
                       (">200 ms", "gaps_over_200_ms", 7, "")])
    write_json(args.json, {"date": date.today().isoformat(), "clip": str(args.clip),
                           "sessions": args.sessions, "seconds": args.seconds,
                           "command": command_line("benchmarks/rtsp_pacing.py", argv),
                           "per_session": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
