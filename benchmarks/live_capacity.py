"""Live capacity: how many looping 1080p25 RTSP cameras one ``pipeline.run`` keeps up with.

    python benchmarks/live_capacity.py --config CONFIG --json OUT [--clip CLIP]
        [--max-cameras 8] [--warmup-s 20] [--window-s 40] [--min-cameras 1]

Serves CLIP (default: the Town Centre 1080p25 clip, looping in real time) from one RTSP
server on loopback as N cameras and, for N = min-cameras, +1, ..., runs the real
``python -m pipeline.run`` with CONFIG (its cameras replaced by the N RTSP ones, each with the
``analysis_fps`` and ``hwaccel`` of CONFIG's first camera; a private Redis; metrics on a free
port). After ``--warmup-s`` from the moment every camera is analysing, it measures over
``--window-s``:

- per camera: analysed fps (detection passes per second: the rate ``analysis_fps`` asks for),
  frames taken by analysis per second, decoded fps, dropped frames (and their share of the
  decoded ones), frame-to-Redis latency p50 / p95 (the Redis entry id's time minus the
  event's frame ``wall_ts_s``), the share of detection passes narrowed by the size prior and
  the detector's input megapixels per pass;
- the process: CPU (% of one core) and RSS at the end of the window (VmRSS, and VmHWM), and
  the mean time per call of each stage (``cctv_stage_seconds``);
  the RTSP server's CPU too, since it shares the machine.

A run holds when every camera's analysed fps is at least 90 % of ``analysis_fps``. It stops
after the first N that does not hold (or at ``--max-cameras``) and reports ``cameras_held``,
the largest N that held. The face-size prior state (``detector.size_prior.state_dir``) is one
temporary folder for the whole benchmark, so camera k starts run N+1 with what it learnt in
run N, as after a restart. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.train.ferplus import default_shared_dir  # noqa: E402
from pipeline.sinks.embedded import EmbeddedRedis  # noqa: E402
from pipeline.sinks.streams import events_stream  # noqa: E402
from tests.helpers.rtsp_server import RtspServerProcess, free_port  # noqa: E402

HOLD_FRACTION = 0.9
STATION = "capacity"
READY_TIMEOUT_S = 180.0
COUNTED = ("detector_runs", "frames_analysed", "detect_size_guided", "detector_input_px")
INHERITED_CAMERA_KEYS = ("hwaccel",)


def camera_config(base: dict, n: int, url: str, redis_url: str, work: Path,
                  metrics_port: int, analysis_fps: float) -> dict:
    """``base`` (a config tree) with N cameras on ``url``, a private Redis, spool and prior
    state under ``work``, metrics on ``metrics_port``, one worker, evidence off, alert rules
    on every camera."""
    tree = json.loads(json.dumps(base))  # deep copy
    tree["station"] = {"id": STATION}
    # decode settings of the config's first camera (hwaccel) apply to every benchmark camera
    inherited = {key: value for key, value in ((base.get("cameras") or [{}])[0]).items()
                 if key in INHERITED_CAMERA_KEYS}
    tree["cameras"] = [{"id": f"cam-{i + 1}", "url": url, "analysis_fps": analysis_fps,
                        **inherited} for i in range(n)]
    tree["redis"] = {**tree.get("redis", {}), "embedded": False, "url": redis_url,
                     "credentials": None, "tls": None, "consumer_credentials": None}
    tree["spool"] = {**tree.get("spool", {}), "dir": str(work / f"spool-{n}")}
    tree["metrics"] = {**tree.get("metrics", {}), "port": metrics_port, "host": "127.0.0.1"}
    tree["cluster"] = {"mode": "single"}
    tree["evidence"] = {"enabled": False}
    # the config's alert rules may name its own cameras: here they watch the benchmark's
    for rule in tree.get("alerts", {}).get("rules", []):
        rule.pop("cameras", None)
    detector = tree.setdefault("detector", {})
    detector["size_prior"] = {**detector.get("size_prior", {}),
                              "state_dir": str(work / "detector_state")}
    return tree


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def counters(port: int) -> dict[tuple[str, str], float]:
    """(camera, kind) -> value of the catch-all ``cctv_events_total`` counter."""
    out = {}
    for family in text_string_to_metric_families(_get(port, "/metrics")):
        if family.name != "cctv_events":
            continue
        for sample in family.samples:
            if sample.name == "cctv_events_total" and sample.labels.get("kind") in COUNTED:
                out[(sample.labels["camera"], sample.labels["kind"])] = sample.value
    return out


def stage_seconds(port: int) -> dict[str, tuple[float, float]]:
    """stage -> (seconds, calls) so far, from the ``cctv_stage_seconds`` histogram."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(_get(port, "/metrics")):
        if family.name != "cctv_stage_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            if sample.name.endswith("_sum"):
                sums[stage] = sample.value
            elif sample.name.endswith("_count"):
                counts[stage] = sample.value
    return {stage: (sums[stage], counts.get(stage, 0.0)) for stage in sums}


def stage_ms_per_call(first: dict[str, tuple[float, float]],
                      last: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean milliseconds per call of each stage between two :func:`stage_seconds` reads."""
    out = {}
    for stage, (seconds, calls) in last.items():
        before_s, before_calls = first.get(stage, (0.0, 0.0))
        if calls > before_calls:
            out[stage] = round(1000 * (seconds - before_s) / (calls - before_calls), 2)
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


class Sample:
    """What is read at one instant: counters and camera status of the pipeline, CPU times."""

    def __init__(self, port: int, pid: int, server_pid: int | None) -> None:
        self.t = time.monotonic()
        self.wall = time.time()
        self.counts = counters(port)
        self.stages = stage_seconds(port)
        self.status = json.loads(_get(port, "/status"))["cameras"]
        self.cpu_s = proc_cpu_s(pid)
        self.server_cpu_s = proc_cpu_s(server_pid) if server_pid else 0.0


def wait_until_analysing(port: int, process: subprocess.Popen, cameras: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pipeline.run exited with {process.returncode}")
        try:
            status = json.loads(_get(port, "/status"))
            analysing = [c for c in status["cameras"].values()
                         if c.get("frames_analysed", 0) > 0]
            if status["phase"] == "running" and len(analysing) == cameras:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"cameras not all analysing within {READY_TIMEOUT_S:.0f} s")


def latencies_s(redis_url: str, camera_id: str, start_wall: float, end_wall: float) -> list[float]:
    """Frame-to-Redis seconds of the camera's events added inside the window."""
    import redis

    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(events_stream("cctv", STATION, camera_id),
                            min=str(int(start_wall * 1000)), max=str(int(end_wall * 1000)))
    out = []
    for entry_id, fields in entries:
        added_s = int(entry_id.decode().split("-")[0]) / 1000.0
        data = json.loads(fields[b"data"])
        out.append(added_s - float(data["wall_ts_s"]))
    return out


def measure(n: int, tree: dict, args: argparse.Namespace, work: Path, redis_url: str,
            server: RtspServerProcess, analysis_fps: float) -> dict:
    port = free_port()
    config = work / f"cameras-{n}.yaml"
    config.write_text(yaml.safe_dump(camera_config(tree, n, server.url(args.clip.name),
                                                   redis_url, work, port, analysis_fps)))
    log_path = work / f"run-{n}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "pipeline.run", "--config",
                                    str(config)], cwd=REPO, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    server_pid = server.pid
    try:
        wait_until_analysing(port, process, n)
        time.sleep(args.warmup_s)
        first = Sample(port, process.pid, server_pid)
        time.sleep(args.window_s)
        last = Sample(port, process.pid, server_pid)
        memory = proc_memory_mb(process.pid)
    except Exception as err:
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.is_file() else ""
        raise RuntimeError(f"{n} camera(s): {err}; pipeline.run log ends:\n{tail}") from err
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    span = last.t - first.t
    per_camera = []
    for i in range(n):
        cam = f"cam-{i + 1}"

        def delta(kind: str, cam: str = cam) -> float:
            return last.counts.get((cam, kind), 0.0) - first.counts.get((cam, kind), 0.0)

        def status_delta(key: str, cam: str = cam) -> float:
            return float(last.status[cam].get(key) or 0) - float(first.status[cam].get(key) or 0)

        passes = delta("detector_runs")
        decoded = status_delta("frames_decoded")
        dropped = status_delta("frames_dropped")
        latency = latencies_s(redis_url, cam, first.wall, last.wall)
        per_camera.append({
            "camera": cam,
            "analysed_fps": round(passes / span, 2),
            "frames_analysed_fps": round(delta("frames_analysed") / span, 2),
            "decoded_fps": round(decoded / span, 2),
            "dropped_frames": int(dropped),
            "dropped_fraction": round(dropped / decoded, 3) if decoded else None,
            "events": len(latency),
            "latency_p50_s": round(float(np.percentile(latency, 50)), 3) if latency else None,
            "latency_p95_s": round(float(np.percentile(latency, 95)), 3) if latency else None,
            "size_guided_fraction": round(delta("detect_size_guided") / passes, 3)
            if passes else None,
            "detector_input_mpx_per_pass": round(delta("detector_input_px") / passes / 1e6, 3)
            if passes else None,
        })
    held = all(c["analysed_fps"] >= HOLD_FRACTION * analysis_fps for c in per_camera)
    return {
        "cameras": n, "held": held, "window_s": round(span, 1),
        "process": {"cpu_percent": round(100 * (last.cpu_s - first.cpu_s) / span, 1),
                    "rss_mb": round(memory.get("VmRSS", 0.0), 1),
                    "peak_rss_mb": round(memory.get("VmHWM", 0.0), 1)},
        "rtsp_server_cpu_percent": round(100 * (last.server_cpu_s - first.server_cpu_s) / span,
                                         1),
        "stage_ms_per_call": stage_ms_per_call(first.stages, last.stages),
        "per_camera": per_camera,
    }


def _latency(camera: dict) -> str:
    return f"{camera['latency_p50_s']} / {camera['latency_p95_s']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--clip", type=Path,
                        default=default_shared_dir() / "data/cctv/town_centre_1080p25.mp4")
    parser.add_argument("--min-cameras", type=int, default=1)
    parser.add_argument("--max-cameras", type=int, default=8)
    parser.add_argument("--warmup-s", type=float, default=20.0,
                        help="after every camera analyses: start-up, arenas, prior learning")
    parser.add_argument("--window-s", type=float, default=40.0)
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        parser.error(f"--clip: {args.clip} not found (set CCTV_SHARED)")
    if not 1 <= args.min_cameras <= args.max_cameras:
        parser.error(f"expected 1 <= --min-cameras <= --max-cameras, got {args.min_cameras} "
                     f"and {args.max_cameras}")
    tree = yaml.safe_load(args.config.read_text()) or {}
    first_camera = (tree.get("cameras") or [{}])[0]
    analysis_fps = float(first_camera.get("analysis_fps") or 5.0)
    runs = []
    with tempfile.TemporaryDirectory(prefix="live-capacity-") as tmp:
        work = Path(tmp)
        media = work / "media"
        media.mkdir()
        shutil.copy(args.clip, media / args.clip.name)  # the RTSP server skips symlinks
        redis_server = EmbeddedRedis(work / "redis", persistence="rdb")
        server = RtspServerProcess(media, work / "rtsp.log")
        redis_server.start()
        server.start()
        try:
            for n in range(args.min_cameras, args.max_cameras + 1):
                run = measure(n, tree, args, work, redis_server.url, server, analysis_fps)
                runs.append(run)
                print(f"{n} camera(s): {'held' if run['held'] else 'did not hold'}; "
                      f"analysed fps {[c['analysed_fps'] for c in run['per_camera']]}",
                      flush=True)
                if not run["held"]:
                    break
        finally:
            server.stop()
            redis_server.stop()
    held = [r["cameras"] for r in runs if r["held"]]
    rss = {r["cameras"]: r["process"]["rss_mb"] for r in runs}
    extra = [rss[n + 1] - rss[n] for n in sorted(rss) if n + 1 in rss]
    result = {
        "date": time.strftime("%Y-%m-%d"), "config": str(args.config), "clip": str(args.clip),
        "detector": (tree.get("detector") or {}).get("backend", "mtcnn"),
        "analysis_fps": analysis_fps, "hold_fraction": HOLD_FRACTION,
        "warmup_s": args.warmup_s, "window_s": args.window_s,
        "machine": f"{platform.node()} {platform.machine()} cpus={os.cpu_count()}",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cameras_held": max(held) if held else 0,
        "rss_per_extra_camera_mb": round(float(np.mean(extra)), 1) if extra else None,
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"config {args.config}, detector {result['detector']}, analysis_fps {analysis_fps}")
    print("| cameras | held | analysed fps per camera | dropped | latency p50 / p95 s | "
          "CPU % | RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        cams = run["per_camera"]
        print(f"| {run['cameras']} | {'yes' if run['held'] else 'no'} | "
              f"{', '.join(str(c['analysed_fps']) for c in cams)} | "
              f"{', '.join(str(c['dropped_fraction']) for c in cams)} | "
              f"{', '.join(_latency(c) for c in cams)} | "
              f"{run['process']['cpu_percent']} | {run['process']['rss_mb']} |")
    print(f"cameras_held {result['cameras_held']}; RSS per extra camera "
          f"{result['rss_per_extra_camera_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
