"""Live cameras: ``python -m pipeline.run --config configs/station.yaml`` (or ``cctv-run``).

Runs until SIGINT or SIGTERM (or ``--duration-s``), or until every camera has failed for
good. ``cluster.mode`` decides which cameras this worker takes (``--worker-id`` names it;
deploy/README.md); on SIGTERM its camera leases are released as soon as its cameras stop.
Each camera is decoded, analysed and supervised on its own; events and alerts go to Redis
Streams. With ``metrics.port`` set, one HTTP server answers /metrics, /livez, /readyz
and /status (pipeline/health_server.py). Config keys can be overridden from the environment
(``CCTV__REDIS__URL`` ...; see pipeline/config.py).

Exit status (docs/exit_codes.md): 0 stopped with every event and alert acknowledged by Redis;
2 bad config or arguments, or a start-up check failed (Redis refused the credentials, ACL,
TLS or URL scheme; no enabled camera; the metrics port cannot be bound); 3 stopped, but events
or alerts were not delivered (left in the spool, dropped or rejected) or Redis lost entries it
had acknowledged; 4 every camera failed for good (bad URL, missing file or credentials), so
the run stopped by itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from pipeline.cluster.modes import resolve_worker_id
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.memory import tune_malloc
from pipeline.runner import LiveRunner
from pipeline.secrets import setup_logging

log = logging.getLogger("pipeline.run")

EXIT_UNDELIVERED = 3
EXIT_ALL_CAMERAS_FAILED = 4
# how often the watcher looks for "every camera failed", in seconds
FAILED_CAMERAS_POLL_S = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--duration-s", type=float, help="stop after this many seconds")
    parser.add_argument("--status-interval-s", type=float, default=30.0,
                        help="log per-camera health this often")
    parser.add_argument("--worker-id", help="this worker's id in a cluster (default: "
                        "cluster.worker_id, else $POD_NAME, else the host name)")
    args = parser.parse_args(argv)
    tune_malloc()  # before the pipeline starts its threads (pipeline/memory.py)
    try:
        config = load_config(args.config)
        worker_id = resolve_worker_id(config.cluster, args.worker_id,
                                      os.environ.get("POD_NAME"), socket.gethostname())
    except PipelineError as err:
        setup_logging()
        log.error("%s", err)
        return 2
    setup_logging(config.logging.level, config.logging.format, config.station.id)
    if config.cluster.mode != "single":
        log.info("worker %s, cluster.mode %s", worker_id, config.cluster.mode)
    runner = LiveRunner(config, worker_id=worker_id)

    def _request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    all_failed = threading.Event()
    done = threading.Event()
    watcher = threading.Thread(target=_stop_when_all_cameras_fail,
                               args=(runner, all_failed, done), name="camera-watch",
                               daemon=True)
    watcher.start()
    try:
        runner.run(duration_s=args.duration_s, status_interval_s=args.status_interval_s)
    except PipelineError as err:
        log.error("%s", err)
        return 2
    finally:
        done.set()
        watcher.join(timeout=2)
    if all_failed.is_set():
        log.error("every camera failed for good (%s): exit %d",
                  _failure_summary(runner), EXIT_ALL_CAMERAS_FAILED)
        delivery_exit_code(runner)  # still log what was not delivered
        return EXIT_ALL_CAMERAS_FAILED
    return delivery_exit_code(runner)


def _stop_when_all_cameras_fail(runner: LiveRunner, all_failed: threading.Event,
                                done: threading.Event) -> None:
    """Stop the run once every camera has failed for good: nothing is left to analyse, and a
    supervisor (systemd, Kubernetes) should see a failed process, not an idle one."""
    while not done.wait(FAILED_CAMERAS_POLL_S):
        if runner.all_cameras_failed():
            all_failed.set()
            runner.stop()
            return


def _failure_summary(runner: LiveRunner) -> str:
    reasons = {camera_id: camera.health().last_error
               for camera_id, camera in runner.cameras.items()}
    reasons.update(runner.failed_cameras)
    return "; ".join(f"{camera_id}: {reason}" for camera_id, reason in sorted(reasons.items()))


def delivery_exit_code(runner: LiveRunner) -> int:
    """3 when the run left output undelivered or Redis lost some of it, else 0."""
    totals = {kind: runner.metrics.total(kind) for kind in
              ("events_not_delivered", "alerts_not_delivered", "redis_entries_lost")}
    if any(totals.values()):
        log.error("stopped with %d events and %d alerts not delivered, %d entries lost by "
                  "redis: exit 3", *totals.values())
        return EXIT_UNDELIVERED
    return 0


if __name__ == "__main__":
    sys.exit(main())
