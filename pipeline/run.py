"""Live cameras: ``python -m pipeline.run --config configs/station.yaml``.

Runs until SIGINT or SIGTERM (or ``--duration-s``). Each camera is decoded, analysed and
supervised on its own; events and alerts go to Redis Streams.

Exit status (docs/exit_codes.md): 0 stopped with every event and alert acknowledged by Redis;
2 bad config or arguments, or a start-up check failed (Redis refused the credentials, ACL,
TLS or URL scheme; no enabled camera); 3 stopped, but events or alerts were not delivered
(left in the spool, dropped or rejected) or Redis lost entries it had acknowledged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.runner import LiveRunner
from pipeline.secrets import setup_logging

log = logging.getLogger("pipeline.run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.run", description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--duration-s", type=float, help="stop after this many seconds")
    parser.add_argument("--status-interval-s", type=float, default=30.0,
                        help="log per-camera health this often")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except PipelineError as err:
        setup_logging()
        log.error("%s", err)
        return 2
    setup_logging(config.logging.level)
    runner = LiveRunner(config)

    def _request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        runner.run(duration_s=args.duration_s, status_interval_s=args.status_interval_s)
    except PipelineError as err:
        log.error("%s", err)
        return 2
    return delivery_exit_code(runner)


def delivery_exit_code(runner: LiveRunner) -> int:
    """3 when the run left output undelivered or Redis lost some of it, else 0."""
    totals = {kind: runner.metrics.total(kind) for kind in
              ("events_not_delivered", "alerts_not_delivered", "redis_entries_lost")}
    if any(totals.values()):
        log.error("stopped with %d events and %d alerts not delivered, %d entries lost by "
                  "redis: exit 3", *totals.values())
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
