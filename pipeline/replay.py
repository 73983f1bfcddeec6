"""Offline replay of recorded footage.

    python -m pipeline.replay --config CONFIG --input PATH [--realtime] [--annotate OUT.mp4]
                              [--summary-json OUT.json]

PATH is a video file or a folder of videos. Every frame is decoded and processed in order;
results are the same run after run. A file that cannot be decoded is reported and skipped.

Exit status (docs/exit_codes.md): 0 every event and alert acknowledged by Redis; 1 no input
file could be analysed; 2 bad config or arguments, or a start-up check failed (Redis refused
the credentials, ACL, TLS or URL scheme), or the ``--summary-json`` file could not be written
(the summary is still printed); 3 the run finished but events or alerts were not
delivered (the summary says how many) or Redis lost entries it had acknowledged; 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.memory import tune_malloc
from pipeline.runner import ReplayOptions, ReplaySummary, run_replay
from pipeline.secrets import setup_logging

log = logging.getLogger("pipeline.replay")


def format_summary(summary: ReplaySummary, outputs: dict[str, Path | None] | None = None
                   ) -> str:
    """The run summary as a markdown table; ``outputs``: files written (name -> path), listed
    at the end when given."""
    rows = [
        ("files ok / failed", f"{summary.files_ok} / {summary.files_failed}"),
        ("frames", str(summary.frames)),
        ("faces detected", str(summary.faces_detected)),
        ("tracks", str(summary.tracks)),
        ("crops rejected as not a face", str(summary.non_face_rejected)),
        ("events published", str(summary.events_published)),
        ("alerts published", str(summary.alerts_published)),
        ("events not delivered", str(summary.events_not_delivered)),
        ("alerts not delivered", str(summary.alerts_not_delivered)),
        ("entries lost by redis", str(summary.redis_entries_lost)),
        ("dropped frames", str(summary.dropped_frames)),
        ("damaged packets skipped", str(summary.damaged_packets)),
        ("timestamp discontinuities", str(summary.timestamp_discontinuities)),
        ("wall time (s)", f"{summary.wall_s:.2f}"),
        ("throughput (fps)", f"{summary.fps:.1f}"),
    ]
    if summary.evidence_dir is not None:
        rows += [("evidence files written / failed",
                  f"{summary.evidence_written} / {summary.evidence_failed}"),
                 ("evidence dir", summary.evidence_dir)]
    rows += [("damaged file", text) for text in summary.damaged_files]
    rows += [(f"top emotion: {name}", str(count))
             for name, count in sorted(summary.emotion_counts.items(), key=lambda kv: -kv[1])]
    rows += [(f"stage {t.stage} (ms/call)", f"{t.mean_ms:.2f} x {t.calls}")
             for t in summary.stage_timings]
    rows += [(name, str(path)) for name, path in (outputs or {}).items() if path is not None]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--input", required=True, type=Path, help="video file or folder")
    parser.add_argument("--realtime", action="store_true", help="pace frames at their timestamps")
    parser.add_argument("--annotate", type=Path, help="write an annotated MP4 here")
    parser.add_argument("--summary-json", type=Path, help="write the run summary as JSON here")
    parser.add_argument("--analysis-fps", type=float,
                        help="detections per second of video (overrides the config; "
                             "0 = every frame)")
    args = parser.parse_args(argv)
    tune_malloc()  # before the pipeline starts its threads (pipeline/memory.py)
    try:
        config = load_config(args.config)
        setup_logging(config.logging.level)
        options = ReplayOptions(inputs=args.input, realtime=args.realtime,
                                annotate_path=args.annotate, analysis_fps=args.analysis_fps)
        summary = run_replay(config, options)
    except PipelineError as err:
        setup_logging()
        log.error("%s", err)
        return 2
    except KeyboardInterrupt:
        return 130
    written: Path | None = None
    if args.summary_json:
        try:
            args.summary_json.parent.mkdir(parents=True, exist_ok=True)
            args.summary_json.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
            written = args.summary_json
        except OSError as err:  # the run's results still reach the terminal below
            log.error("cannot write --summary-json %s: %s", args.summary_json, err)
    annotated = args.annotate if args.annotate is not None and args.annotate.is_file() else None
    print(format_summary(summary, {"annotated video": annotated, "summary json": written}))
    code = exit_code(summary)
    if code == 0 and args.summary_json and written is None:
        return 2
    return code


def exit_code(summary: ReplaySummary) -> int:
    """1 when no file could be analysed, 3 when output was not delivered or was lost."""
    if summary.files_ok == 0:
        return 1
    undelivered = summary.events_not_delivered + summary.alerts_not_delivered
    if undelivered or summary.redis_entries_lost:
        log.error("%d events and %d alerts not delivered, %d entries lost by redis: exit 3",
                  summary.events_not_delivered, summary.alerts_not_delivered,
                  summary.redis_entries_lost)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
