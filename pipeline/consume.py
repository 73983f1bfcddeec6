"""Reference Redis consumer: ``python -m pipeline.consume --config CONFIG --group NAME``.

Reads the station's alerts stream (``--streams events|all`` adds the cameras' event streams)
in a consumer group, prints each message as a readable line or as JSON (one per line),
acknowledges it after printing, reclaims entries that a crashed consumer left pending for
``--claim-idle-ms``, and moves unparseable entries to the dead-letter stream.
Stops on SIGTERM / SIGINT (after the entry in hand), ``--max-messages`` or ``--idle-exit-s``.
While Redis is unreachable it reconnects with backoff (``redis.reconnect``); a vanished
consumer group is re-created from 0 and what may be missing is logged.

Exit status (docs/exit_codes.md): 0 done; 1 Redis refused the consumer mid-run or stayed
unreachable past ``--idle-exit-s``; 2 bad config or arguments, or Redis refused the consumer
at start-up (credentials, ACL, TLS); 3 done, but entries were lost (pending entries trimmed
before they were acknowledged, or a consumer group had to be re-created).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from datetime import datetime, timezone

from pipeline.config import AppConfig, load_config
from pipeline.errors import PipelineError, RedisRefusedError
from pipeline.events import AlertV1, EvidenceV1, Message
from pipeline.secrets import mask_secrets, setup_logging
from pipeline.sinks.client import create_redis_client
from pipeline.sinks.consumer import StreamConsumer
from pipeline.sinks.embedded import embedded_url
from pipeline.sinks.streams import (
    alerts_stream,
    dead_letter_stream,
    events_stream,
    evidence_stream,
)

log = logging.getLogger("pipeline.consume")


def readable_line(message: Message) -> str:
    """One line per message; evidence references one per line below their message."""
    when = datetime.fromtimestamp(message.wall_ts_s, tz=timezone.utc).isoformat(
        timespec="seconds")
    if isinstance(message, AlertV1):
        evidence = "".join(f"\n  evidence (pending) {uri}" for uri in message.evidence)
        return (f"{when} ALERT {message.severity.upper()} {message.station_id}/"
                f"{message.camera_id} rule={message.rule_id}: {message.summary} "
                f"[msg {message.msg_id}]{evidence}")
    if isinstance(message, EvidenceV1):
        return _evidence_lines(when, message)
    return (f"{when} EVENT {message.station_id}/{message.camera_id} track={message.track_id} "
            f"top={message.smoothed.top_class} conf={message.smoothed.confidence:.2f} "
            f"sr={'yes' if message.sr_applied else 'no'} [msg {message.msg_id}]")


def _evidence_lines(when: str, message: EvidenceV1) -> str:
    written = sum(ref.status == "written" for ref in message.refs)
    lines = [f"{when} EVIDENCE {message.station_id}/{message.camera_id} "
             f"alert={message.alert_msg_id} rule={message.rule_id}: {written} of "
             f"{len(message.refs)} files written, window {message.requested_start_ms / 1000:.2f}"
             f"-{message.requested_end_ms / 1000:.2f} s"
             f"{'' if message.complete else ' (incomplete)'} [msg {message.msg_id}]"]
    for ref in message.refs:
        span = (f"{ref.start_ms / 1000:.2f} s" if ref.start_ms == ref.end_ms
                else f"{ref.start_ms / 1000:.2f}-{ref.end_ms / 1000:.2f} s")
        detail = (f"sha256={ref.sha256} bytes={ref.bytes}" if ref.status == "written"
                  else "FAILED")
        lines.append(f"  {ref.kind} {ref.uri} {span} {detail}")
    lines += [f"  note: {note}" for note in message.notes]
    return "\n".join(lines)


def streams_for(cfg: AppConfig, which: str) -> list[str]:
    """Stream names to read; "alerts" includes the evidence stream when evidence is on."""
    prefix, station = cfg.redis.stream_prefix, cfg.station.id
    streams = []
    if which in ("alerts", "all"):
        streams.append(alerts_stream(prefix, station))
        if cfg.evidence.enabled:
            streams.append(evidence_stream(prefix, station))
    if which in ("events", "all"):
        streams += [events_stream(prefix, station, camera.id) for camera in cfg.cameras]
    return streams


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.consume", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the pipeline's YAML config")
    parser.add_argument("--group", required=True, help="consumer group name")
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}",
                        help="consumer name within the group (default: host-pid)")
    parser.add_argument("--streams", choices=("alerts", "events", "all"), default="alerts")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--batch", type=int, default=100, help="entries per read")
    parser.add_argument("--block-ms", type=int, default=1000, help="XREADGROUP BLOCK")
    parser.add_argument("--claim-idle-ms", type=int, default=60_000,
                        help="reclaim others' pending entries idle this long (XAUTOCLAIM)")
    parser.add_argument("--start-id", default="0",
                        help="where a new group starts: 0 = all retained, $ = only new")
    parser.add_argument("--max-messages", type=int, help="exit after handling this many")
    parser.add_argument("--idle-exit-s", type=float, help="exit after this long with nothing")
    parser.add_argument("--log-level", default=None, help="default: the config's")
    args = parser.parse_args(argv)
    for name in ("batch", "block_ms", "claim_idle_ms"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
        setup_logging(args.log_level or cfg.logging.level)
        url = embedded_url(cfg.redis) if cfg.redis.embedded else cfg.redis.url
        client = create_redis_client(
            cfg.redis, url=url,
            credentials=cfg.redis.consumer_credentials or cfg.redis.credentials, retries=2)
    except PipelineError as err:
        sys.stderr.write(f"error: {mask_secrets(str(err))}\n")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    consumer = StreamConsumer(
        client, streams_for(cfg, args.streams), args.group, args.consumer,
        dead_letter_stream(cfg.redis.stream_prefix, cfg.station.id), batch=args.batch,
        block_ms=args.block_ms, claim_idle_ms=args.claim_idle_ms, start_id=args.start_id,
        reconnect=cfg.redis.reconnect)

    def show(_stream: str, _entry_id: str, message: Message) -> None:
        line = (message.model_dump_json(by_alias=True) if args.format == "json"
                else readable_line(message))
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        consumer.run(show, max_messages=args.max_messages, idle_exit_s=args.idle_exit_s,
                     stop=stop)
    except RedisRefusedError as err:
        log.error("consumer %s stopped: %s", args.consumer, mask_secrets(str(err)))
        return 1 if consumer.ready else 2
    except PipelineError as err:
        log.error("consumer %s stopped: %s", args.consumer, mask_secrets(str(err)))
        return 1
    finally:
        client.close()
    stats = consumer.stats()
    log.info("consumer %s done: %d handled, %d duplicates dropped, %d dead-lettered, "
             "%d reclaimed, %d lost (trimmed before acknowledged), %d groups re-created, "
             "%d reconnects", args.consumer, stats.handled, stats.duplicates,
             stats.dead_lettered, stats.reclaimed, stats.lost, stats.groups_recreated,
             stats.reconnects)
    return 3 if stats.loss_seen else 0


if __name__ == "__main__":
    sys.exit(main())
