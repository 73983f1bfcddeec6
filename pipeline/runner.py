"""The runner owns threads and queues; stages own none.

Replay (:func:`run_replay`): per input file, a decode thread fills a blocking bounded queue
and the calling thread analyses every frame in order, enhancing and classifying each frame's
selected crops at once, so results are identical run after run.

Live (:class:`LiveRunner`): per camera a supervised decode thread (newest frame wins, drops
counted) and an analysis thread; one emotion worker owns the models and batches crops from
all cameras; one output thread alone smooths, applies the rules and publishes. Per camera,
crops and track ends stay in order from analysis to output, as in replay, so live and replay
publish the same per-track story. A failing camera is logged, counted and retried by its
supervisor; it never stops the others.

Cameras can start and stop while the run goes on (:meth:`LiveRunner.start_camera`,
:meth:`LiveRunner.stop_cameras`): ``cluster.mode`` decides which ones (pipeline/cluster/);
in leases mode a coordinator thread moves cameras between workers, and at stop the leases
are released as soon as the cameras are stopped, before the output drains.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.analyze import CameraAnalyzer, CropRequest, DetectionCadence, FrameAnalysis
from pipeline.channel import AnalysisChannel, ChannelItem, TracksEnded
from pipeline.classify import ClassifiedFace, EmotionStage
from pipeline.cluster.coordinator import ClusterState
from pipeline.cluster.metrics import ClusterCollector
from pipeline.cluster.modes import startup_cameras
from pipeline.cluster.runtime import ClusterRuntime
from pipeline.config import AppConfig, CameraConfig, EnhanceConfig
from pipeline.detect import Detector, create_detector
from pipeline.errors import PipelineError, SourceError
from pipeline.evidence import EvidenceRecorder
from pipeline.health_server import ProbeResult
from pipeline.metrics import RunMetrics, StageTiming
from pipeline.output_metrics import OutputStateCollector
from pipeline.publish import EventOutput
from pipeline.queues import BlockingQueue, LatestQueue, QueueClosed
from pipeline.records import CameraRun, FaceEvent
from pipeline.sources import (
    CameraHealthCollector,
    CameraState,
    DecodeReport,
    SupervisedCamera,
    camera_id_for,
    list_videos,
    replay_file,
)
from pipeline.sources.decode import DecodedFrame

log = logging.getLogger(__name__)
# (camera id, events in order, track ids that ended after them) for EventOutput.handle
OutputOp = tuple[str, list[FaceEvent], list[int]]


@dataclass(frozen=True)
class _CameraThreads:
    """One started camera: its own stop event, decode and analysis threads."""

    stop: threading.Event
    decode: threading.Thread
    analyse: threading.Thread


@dataclass(frozen=True)
class ReplayOptions:
    inputs: Path
    realtime: bool = False
    annotate_path: Path | None = None
    analysis_fps: float | None = None  # None: from config; 0: every frame


@dataclass
class ReplaySummary:
    frames: int = 0
    faces_detected: int = 0
    tracks: int = 0
    events_published: int = 0  # acknowledged by Redis
    alerts_published: int = 0
    events_not_delivered: int = 0  # not acknowledged: left in the spool, dropped or rejected
    alerts_not_delivered: int = 0
    redis_entries_lost: int = 0  # acknowledged, then lost by Redis (eviction, restart)
    non_face_rejected: int = 0
    dropped_frames: int = 0
    wall_s: float = 0.0
    files_ok: int = 0
    files_failed: int = 0
    failed_files: list[str] = field(default_factory=list)
    damaged_packets: int = 0
    timestamp_discontinuities: int = 0
    damaged_files: list[str] = field(default_factory=list)  # "path: what was wrong"
    emotion_counts: dict[str, int] = field(default_factory=dict)
    stage_timings: list[StageTiming] = field(default_factory=list)
    evidence_dir: str | None = None  # None: evidence off
    evidence_written: int = 0  # files
    evidence_failed: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def add_decode_report(self, path: str, report: DecodeReport) -> None:
        self.damaged_packets += report.damaged_packets
        self.timestamp_discontinuities += report.timestamp_discontinuities
        if report.damaged:
            what = [f"{report.damaged_packets} damaged packets skipped"]
            if report.ended_early:
                what.append(report.ended_early)
            self.damaged_files.append(f"{path}: {'; '.join(what)}")

    def to_json(self) -> dict:
        return {
            "frames": self.frames, "faces_detected": self.faces_detected,
            "tracks": self.tracks, "events_published": self.events_published,
            "alerts_published": self.alerts_published,
            "events_not_delivered": self.events_not_delivered,
            "alerts_not_delivered": self.alerts_not_delivered,
            "redis_entries_lost": self.redis_entries_lost,
            "non_face_rejected": self.non_face_rejected, "dropped_frames": self.dropped_frames,
            "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 2),
            "files_ok": self.files_ok, "files_failed": self.files_failed,
            "failed_files": self.failed_files, "damaged_packets": self.damaged_packets,
            "timestamp_discontinuities": self.timestamp_discontinuities,
            "damaged_files": self.damaged_files, "emotion_counts": self.emotion_counts,
            "stage_ms": {t.stage: round(t.mean_ms, 3) for t in self.stage_timings},
            "evidence_dir": self.evidence_dir, "evidence_written": self.evidence_written,
            "evidence_failed": self.evidence_failed,
        }


def replay_camera(config: AppConfig, path: Path, analysis_fps: float | None) -> CameraConfig:
    """The camera settings for a replayed file: the config camera whose url is this file, if
    any, else the first configured camera's settings, else defaults; id from the file name."""
    template = None
    for camera in config.cameras:
        if Path(camera.url).expanduser().resolve() == path.resolve():
            template = camera
    if template is None:
        template = config.cameras[0] if config.cameras else None
        camera_id = camera_id_for(path)
    else:
        camera_id = template.id
    fields = template.model_dump() if template else {}
    fields.update(id=camera_id or "replay", url=str(path))
    if analysis_fps is not None:
        fields["analysis_fps"] = analysis_fps if analysis_fps > 0 else None
    return CameraConfig.model_validate(fields)


def camera_enhance(config: AppConfig) -> dict[str, EnhanceConfig]:
    """Camera id -> its own enhance section, for the cameras that have one."""
    return {c.id: c.enhance for c in config.cameras if c.enhance is not None}


def _prefetch(frames: Iterator[DecodedFrame], queue: BlockingQueue,
              errors: list[BaseException], cadence: DetectionCadence | None) -> None:
    """Decode ahead of analysis; convert to BGR here, in parallel with analysis, the frames
    it will read: detection passes by ``cadence`` (the analyser's own, replayed on the same
    frame times), every frame when ``cadence`` is None (the annotated video needs them)."""
    try:
        for frame in frames:
            if cadence is None or cadence.due(frame.ts_ms):
                frame.image_bgr  # noqa: B018 - converts once, kept on the frame
            queue.put(frame)
    except QueueClosed:
        return
    except BaseException as err:
        errors.append(err)
    finally:
        queue.close()


def _replay_file(config: AppConfig, camera: CameraConfig, frames: Iterator[DecodedFrame],
                 emotion: EmotionStage, output: EventOutput, metrics: RunMetrics,
                 summary: ReplaySummary, annotator: object | None,
                 evidence: EvidenceRecorder | None = None) -> None:
    detector = create_detector(config.detector)
    detector.start()
    queue: BlockingQueue[DecodedFrame] = BlockingQueue(config.source.replay_queue_size)
    errors: list[BaseException] = []
    cadence = None if annotator is not None else DetectionCadence(camera.analysis_fps)
    decoder = threading.Thread(target=_prefetch, args=(frames, queue, errors, cadence),
                               name=f"decode-{camera.id}", daemon=True)
    decoder.start()
    analyzer = CameraAnalyzer(camera, config, detector, metrics)
    last: DecodedFrame | None = None
    flushed = False

    def flush_tracks() -> None:
        """End every track and publish its pending crop: whatever stopped the file, what
        was already analysed is not lost."""
        nonlocal flushed
        if flushed or last is None:
            return
        flushed = True
        crops, ended = analyzer.finish(last.wall_ts_s)
        output.handle([c.event for c in _faces(_classify(emotion, crops, metrics, evidence))],
                      ended, camera.id)

    try:
        while True:
            try:
                frame = queue.get()
            except QueueClosed:
                break
            last = frame
            summary.frames += 1
            metrics.count(camera.id, "frames_decoded")
            analysis = analyzer.process(frame)
            if evidence is not None:
                evidence.note_faces(camera.id, frame.ts_ms, analysis.faces)
            classified = _faces(_classify(emotion, analysis.crops, metrics, evidence))
            output.handle([c.event for c in classified], analysis.ended_track_ids, camera.id)
            if annotator is not None:
                annotator.add(frame, analysis, [c.event for c in classified],
                              {c.event.track_id: c.restored_bgr for c in classified
                               if c.event.emotion.sr_applied})
        flush_tracks()
        if errors:
            raise errors[0]
    except BaseException:
        try:
            flush_tracks()
        except Exception:
            log.exception("camera %s: could not publish the tracks pending when the file "
                          "stopped", camera.id)
        raise
    finally:
        queue.close()
        decoder.join(timeout=5)
        detector.stop()


def _classify(emotion: EmotionStage, crops: list[CropRequest], metrics: RunMetrics,
              evidence: EvidenceRecorder | None = None) -> list[ClassifiedFace]:
    """Enhance + classify ``crops``; the result is aligned with them. Crops the classifier
    rejects as not a face (``is_face`` False) are counted here; callers drop them. The
    restored crops are shown to ``evidence`` (before any alert they cause)."""
    if not crops:
        return []
    with metrics.time_stage("enhance+classify"):
        classified = emotion.process(crops)
    if evidence is not None:
        evidence.note_crops(classified)
    for camera_id, n in Counter(crop.camera_id for crop in crops).items():
        metrics.count(camera_id, "crops_classified", n)
    rejected = 0
    for face in classified:
        if not face.is_face:
            metrics.count(face.event.camera_id, "non_face_rejected")
            rejected += 1
            continue
        metrics.count(face.event.camera_id, "events")
        if face.event.emotion.sr_applied:
            metrics.count(face.event.camera_id, "sr_applied")
    if rejected:
        log.debug("dropped %d non-face crops (p >= threshold)", rejected)
    return classified


def _faces(classified: list[ClassifiedFace]) -> list[ClassifiedFace]:
    return [c for c in classified if c.is_face]


def _start_evidence(config: AppConfig, metrics: RunMetrics,
                    stack: ExitStack) -> EvidenceRecorder | None:
    """The evidence recorder and its worker thread when ``evidence.enabled``; ``stack``
    closes it, letting the worker finish what is pending (register it before anything that
    must stop first: the stack unwinds in reverse)."""
    if not config.evidence.enabled:
        return None
    recorder = EvidenceRecorder(config.evidence, metrics,
                                max_gap_s=config.source.max_timestamp_gap_s)
    worker = _spawn("evidence", recorder.serve)

    def stop() -> None:
        recorder.close()
        _join([worker], timeout_s=60.0)

    stack.callback(stop)
    log.info("evidence: on; clips, snapshots and crops go to %s", recorder.store.location)
    return recorder


def run_replay(config: AppConfig, options: ReplayOptions) -> ReplaySummary:
    """Replay a file or folder through the whole pipeline; returns the run summary."""
    metrics = RunMetrics()
    summary = ReplaySummary()
    emotions: Counter[str] = Counter()
    start = time.perf_counter()
    with ExitStack() as stack:
        emotion = EmotionStage(config.classify, config.enhance, config.select.crop_size_px,
                               camera_enhance(config))
        emotion.start()
        stack.callback(emotion.stop)
        evidence = _start_evidence(config, metrics, stack)
        output = stack.enter_context(EventOutput(config, metrics, emotion.class_names,
                                                 evidence=evidence))
        annotator = None
        if options.annotate_path is not None:
            from pipeline.annotate import ReplayAnnotator

            annotator = stack.enter_context(ReplayAnnotator(options.annotate_path))
            output.alert_listeners.append(annotator.mark_alert)
        for path in list_videos(options.inputs):
            camera = replay_camera(config, path, options.analysis_fps)
            log.info("replaying %s as camera %s (analysis %s fps)", path, camera.id,
                     camera.analysis_fps or "every frame")
            report = DecodeReport()
            frames = replay_file(path, camera_id=camera.id, realtime=options.realtime,
                                 source=config.source, report=report, hwaccel=camera.hwaccel,
                                 packets=evidence.ring(camera.id) if evidence else None)
            try:
                _replay_file(config, camera, frames, emotion, output, metrics, summary,
                             annotator, evidence)
            except SourceError as err:
                log.error("file %s failed: %s", path, err)
                summary.files_failed += 1
                summary.failed_files.append(str(path))
                continue
            finally:
                summary.add_decode_report(str(path), report)
            summary.files_ok += 1
        output.finish_evidence()
        output.flush()
        emotions.update(output.top_emotions)
        if evidence is not None:
            stats = evidence.stats()
            summary.evidence_dir = evidence.store.location
            summary.evidence_written, summary.evidence_failed = (stats.files_written,
                                                                 stats.files_failed)
    # read after the output closed: the publisher has drained its spool, counts are final
    summary.events_published = output.events_published
    summary.alerts_published = output.alerts_published
    summary.events_not_delivered = output.events_not_delivered
    summary.alerts_not_delivered = output.alerts_not_delivered
    summary.redis_entries_lost = output.entries_lost
    summary.wall_s = time.perf_counter() - start
    summary.faces_detected = metrics.total("faces_detected")
    summary.tracks = metrics.total("tracks")
    summary.non_face_rejected = metrics.total("non_face_rejected")
    summary.emotion_counts = dict(emotions)
    summary.stage_timings = metrics.stage_timings()
    if summary.files_ok == 0 and summary.files_failed == 0:
        raise PipelineError(f"no video files found in {options.inputs}")
    return summary


class LiveRunner:
    """Live cameras: supervised decoders, per-camera analysis, one emotion worker, one output
    owner.

    Threads: per camera a decode thread (newest frame wins, drops counted) and an analysis
    thread; one emotion worker that batches crops from every camera; one output thread that
    alone runs smoothing, rules and publishing (so no Redis call happens on a camera thread).
    Per camera, crops and track-ended markers travel in order on one
    :class:`~pipeline.channel.AnalysisChannel` (crops may be dropped under load, markers
    never), then as ``(camera, events, ended)`` operations on a blocking queue to the output
    thread, so each track's events reach the smoother and Redis in the order replay gives.

    For the health endpoints (pipeline/health_server.py) it answers :meth:`liveness`,
    :meth:`readiness` and :meth:`status` from snapshots, on any thread.
    """

    def __init__(self, config: AppConfig, worker_id: str | None = None) -> None:
        """``worker_id``: this worker's id (pipeline.run resolves it); default
        ``cluster.worker_id``, else ``local``."""
        self.config = config
        self.worker_id = worker_id or config.cluster.worker_id or "local"
        self.metrics = RunMetrics()
        self._stop = threading.Event()
        self._camera_runs: dict[str, _CameraThreads] = {}
        self._camera_lock = threading.Lock()
        self._cluster: ClusterRuntime | None = None
        self._cluster_thread: threading.Thread | None = None
        self._camera_threads: list[threading.Thread] = []
        self._cameras: dict[str, SupervisedCamera] = {}
        self.failed_cameras: dict[str, str] = {}  # camera id -> why it could not start
        self._channel: AnalysisChannel | None = None
        self._ops: BlockingQueue[OutputOp] | None = None
        self._workers: list[threading.Thread] = []
        # for the health endpoints (read by other threads; each is one assignment)
        self._phase = "starting"  # starting | running | stopping | stopped
        self._heartbeat = time.monotonic()
        self._started_wall = time.time()
        self._output: EventOutput | None = None
        self._evidence: EvidenceRecorder | None = None  # evidence.enabled
        self._detector: Detector | None = None  # one, shared by every camera's thread

    @property
    def cameras(self) -> dict[str, SupervisedCamera]:
        return self._cameras

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration_s: float | None = None, status_interval_s: float = 30.0) -> None:
        """Run until :meth:`stop` (or SIGINT/SIGTERM via the CLI) or ``duration_s`` elapses."""
        config = self.config
        cameras = [c for c in config.cameras if c.enabled]
        if not cameras:
            raise PipelineError("no enabled cameras in the config")
        self._enabled_cameras = cameras
        cameras = startup_cameras(config.cluster, cameras, self.worker_id)
        self.metrics.register(
            CameraHealthCollector(lambda: [c.health() for c in list(self._cameras.values())]))
        self.metrics.register(OutputStateCollector(
            lambda: self._output.state() if self._output is not None else None))
        self.metrics.register(ClusterCollector(self.cluster_state))
        if config.metrics.port is not None:
            self.metrics.serve(config.metrics.port, config.metrics.host, probes=self)
        try:
            self._run(cameras, duration_s, status_interval_s)
        finally:
            self._phase = "stopped"
            self.metrics.close()

    def _run(self, cameras: list[CameraConfig], duration_s: float | None,
             status_interval_s: float) -> None:
        config = self.config
        with ExitStack() as stack:
            emotion = EmotionStage(config.classify, config.enhance, config.select.crop_size_px,
                                   camera_enhance(config))
            emotion.start()
            stack.callback(emotion.stop)
            # One detector (one set of ONNX Runtime sessions) for every camera: each camera's
            # analysis thread calls it; detector.threads is per call (issue 14)
            self._detector = create_detector(config.detector)
            self._detector.start()
            stack.callback(self._detector.stop)
            if config.cluster.mode != "single":
                self._cluster = ClusterRuntime(config.cluster, config.redis,
                                               config.station.id, self._enabled_cameras,
                                               self.worker_id, control=self)
                stack.callback(self._cluster.close)
            self._evidence = _start_evidence(config, self.metrics, stack)
            output = stack.enter_context(EventOutput(
                config, self.metrics, emotion.class_names,
                shared_cooldowns=self._cluster.cooldowns if self._cluster else None,
                evidence=self._evidence))
            self._output = output
            self._channel = AnalysisChannel(max_crops=config.classify.max_batch_size * 8)
            # the output thread must keep up; when it cannot, the emotion worker waits here
            # and crops pile up (and are dropped, counted) in the channel instead
            self._ops = BlockingQueue(maxsize=1024)
            stack.callback(self._join_all)
            for camera in cameras:
                self.start_camera(camera, CameraRun(self.worker_id, 0, secrets.token_hex(8)))
            if cameras and not self._cameras:
                raise PipelineError(f"no camera could be started: {self.failed_cameras}")
            if not cameras:
                log.info("worker %s (cluster.mode %s) starts with no camera", self.worker_id,
                         config.cluster.mode)
            self._workers = [_spawn("emotion", self._emotion_worker, emotion),
                             _spawn("output", self._output_worker, output)]
            if self._cluster is not None and self._cluster.coordinator is not None:
                self._cluster_thread = _spawn("cluster", self._cluster.run_coordinator,
                                              self._stop)
            deadline = None if duration_s is None else time.monotonic() + duration_s
            next_status = time.monotonic() + status_interval_s
            self._phase = "running"
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._stop.wait(0.2)
                if time.monotonic() >= next_status:
                    next_status += status_interval_s
                    self._log_status(output)
            self._phase = "stopping"
            self._stop.set()

    def _join_all(self) -> None:
        """Stop in pipeline order: the cluster coordinator, cameras (which hand over their
        open tracks), their leases, then the emotion worker drains the channel, then the
        output thread drains its queue."""
        self._stop.set()
        if self._cluster_thread is not None:
            _join([self._cluster_thread])
        self.stop_cameras(list(self._camera_runs), forget=False)  # health stays readable
        _join(self._camera_threads)
        if self._cluster is not None:
            self._cluster.release_all()
        if self._channel is not None:
            self._channel.close()
        _join(self._workers[:1])
        if self._ops is not None:
            self._ops.close()
        _join(self._workers[1:])

    # -- cameras that start and stop while the run goes on ----------------------------------
    def start_camera(self, camera: CameraConfig, run: CameraRun) -> bool:
        """Start decoding and analysing ``camera`` as ``run`` (worker, lease epoch); False
        (logged, counted, in :attr:`failed_cameras`) when it cannot be constructed."""
        frames: LatestQueue[DecodedFrame] = LatestQueue(self.config.source.live_queue_size)
        stop = threading.Event()
        try:
            supervised = SupervisedCamera(
                camera, self.config.source, frames, stop,
                packets=self._evidence.ring(camera.id) if self._evidence else None)
        except PipelineError as err:  # one bad camera never stops the others
            log.error("camera %s: not started: %s", camera.id, err)
            self.metrics.count(camera.id, "camera_start_failed")
            self.failed_cameras[camera.id] = str(err)
            return False
        threads = _CameraThreads(
            stop, _spawn(f"decode-{camera.id}", supervised.run),
            _spawn(f"analyse-{camera.id}", self._analyse_camera, camera, frames, stop, run))
        with self._camera_lock:
            self._camera_runs[camera.id] = threads
            self._cameras[camera.id] = supervised
            self.failed_cameras.pop(camera.id, None)
            self._camera_threads = [*self._camera_threads, threads.decode, threads.analyse]
        self.metrics.set_analysis_target(camera.id, camera.analysis_fps)
        return True

    def stop_cameras(self, camera_ids: list[str] | tuple[str, ...], forget: bool = True) -> None:
        """Stop these cameras together; returns once their analysis threads have handed
        their open tracks to the output (the ordered path) and their decoders closed.
        ``forget``: drop them from :attr:`cameras` (a camera moved to another worker); at the
        end of the run they stay, so their health can still be read."""
        with self._camera_lock:
            runs = [self._camera_runs.pop(c) for c in camera_ids if c in self._camera_runs]
            for camera_id in camera_ids:
                self.failed_cameras.pop(camera_id, None)
        for run in runs:
            run.stop.set()
        _join([run.analyse for run in runs])
        _join([run.decode for run in runs])
        gone = {t for run in runs for t in (run.analyse, run.decode)}
        with self._camera_lock:
            for camera_id in camera_ids:
                if forget and camera_id not in self._camera_runs:
                    self._cameras.pop(camera_id, None)
                    self.metrics.clear_analysis_target(camera_id)
            self._camera_threads = [t for t in self._camera_threads if t not in gone]

    def cluster_state(self) -> ClusterState:
        """Which cameras this worker holds, and in leases mode the cluster as it sees it."""
        if self._cluster is not None and self._cluster.coordinator is not None:
            return self._cluster.coordinator.state()
        held = {camera_id: 0 for camera_id in sorted(self._camera_runs)}
        return ClusterState(self.config.cluster.mode, self.worker_id, len(held),
                            redis_up=True, held=held)

    def _analyse_camera(self, camera: CameraConfig, frames: LatestQueue[DecodedFrame],
                        stop: threading.Event, run: CameraRun | None = None) -> None:
        analyzer = CameraAnalyzer(camera, self.config, self._detector, self.metrics, run=run,
                                  persist_prior=True)
        last: DecodedFrame | None = None
        try:
            while not stop.is_set():
                try:
                    # converted to BGR only if this frame is a detection pass
                    frame = frames.get(timeout=0.5)
                except queue.Empty:
                    continue
                except QueueClosed:
                    return
                try:
                    analysis: FrameAnalysis = analyzer.process(frame)
                except Exception:
                    self.metrics.count(camera.id, "frame_errors")
                    log.exception("camera %s: frame %d failed", camera.id, frame.index)
                    continue
                if self._evidence is not None:
                    self._evidence.note_faces(camera.id, frame.ts_ms, analysis.faces)
                last = frame
                self._hand_over(camera.id, analysis.crops, analysis.ended_track_ids)
            if last is not None:  # stopping: the open tracks' pending crops are not lost
                self._hand_over(camera.id, *analyzer.finish(last.wall_ts_s))
        except QueueClosed:
            return

    def _hand_over(self, camera_id: str, crops: list[CropRequest], ended: list[int]) -> None:
        """Crops, then the marker of the tracks that ended with them, in order."""
        for crop in crops:
            self.metrics.count(camera_id, "crops_dropped", self._channel.put_crop(crop))
        if ended:
            self._channel.put_marker(TracksEnded(camera_id, tuple(ended)))

    def _emotion_worker(self, emotion: EmotionStage) -> None:
        cfg = self.config.classify
        try:
            while True:
                try:
                    batch = self._channel.get_batch(cfg.max_batch_size,
                                                    cfg.max_wait_ms / 1000.0)
                except QueueClosed:
                    return
                for op in self._classify_in_order(emotion, batch):
                    self._ops.put(op)
        finally:
            self._ops.close()

    def _classify_in_order(self, emotion: EmotionStage,
                           batch: list[ChannelItem]) -> list[OutputOp]:
        """One classifier call for the batch's crops; output operations that keep, per
        camera, each event before the end marker that followed its crop."""
        crops = [item for item in batch if isinstance(item, CropRequest)]
        try:
            classified: list[ClassifiedFace | None] = list(
                _classify(emotion, crops, self.metrics, self._evidence))
        except Exception:
            log.exception("emotion batch of %d failed", len(crops))
            self.metrics.count("all", "classify_errors")
            classified = [None] * len(crops)  # the markers still go through
        results = iter(classified)
        pending: dict[str, list[FaceEvent]] = {}
        ops: list[OutputOp] = []
        for item in batch:
            if isinstance(item, CropRequest):
                face = next(results)
                if face is not None and face.is_face:
                    pending.setdefault(item.camera_id, []).append(face.event)
            else:
                ops.append((item.camera_id, pending.pop(item.camera_id, []),
                            list(item.track_ids)))
        ops += [(camera_id, events, []) for camera_id, events in pending.items()]
        return ops

    def _output_worker(self, output: EventOutput) -> None:
        """The single output owner: smoothing, rules and publishing happen only here."""
        while True:
            try:
                camera_id, events, ended = self._ops.get(timeout=0.2)
            except queue.Empty:
                output.poll()
                continue
            except QueueClosed:  # cameras stopped: their alerts' evidence is written now
                output.finish_evidence()
                return
            try:
                output.handle(events, ended, camera_id)
            except Exception:
                log.exception("camera %s: output of %d events failed", camera_id, len(events))
                self.metrics.count(camera_id, "output_errors")

    # -- health endpoints (pipeline/health_server.py) ---------------------------------------
    def all_cameras_failed(self) -> bool:
        """True once the run is going and every enabled camera failed for good: it could not
        be constructed, or its supervisor gave up (state FAILED)."""
        if self._phase != "running":
            return False
        cameras = list(self._cameras.values())
        return bool(cameras) and all(camera.health().state is CameraState.FAILED
                                     for camera in cameras)

    def liveness(self) -> ProbeResult:
        """Alive unless the run loop stopped ticking for ``metrics.liveness_timeout_s`` or
        the emotion or output worker thread died. Start-up and shutdown count as alive."""
        phase = self._phase
        if phase != "running":
            return ProbeResult(True, phase)
        age_s = time.monotonic() - self._heartbeat
        if age_s > self.config.metrics.liveness_timeout_s:
            return ProbeResult(False, f"run loop has not ticked for {age_s:.1f} s")
        dead = [t.name for t in self._workers if not t.is_alive()]
        if dead:
            return ProbeResult(False, f"worker thread(s) died: {', '.join(dead)}")
        return ProbeResult(True, "running")

    def readiness(self) -> ProbeResult:
        """Ready when running, with at least one camera that has not failed for good, and
        output accepted: Redis reachable or the spool below its limits."""
        if self._phase != "running":
            return ProbeResult(False, self._phase)
        if self.all_cameras_failed():
            return ProbeResult(False, "every camera failed")
        output = self._output
        state = output.state() if output is not None else None
        if state is None or state.publisher is None:
            return ProbeResult(False, "output not started")
        if not state.redis_up and not state.spool_accepting:
            return ProbeResult(False, "redis unreachable and the spool is full")
        return ProbeResult(True, "redis up" if state.redis_up else
                           "redis unreachable; spooling to disk")

    def status(self) -> dict[str, object]:
        """JSON-ready snapshot for ``/status``: run phase, per camera state, decoded and
        analysed fps, frame and crop drops, last event time; publisher and spool state.
        Times are Unix seconds, rates per second."""
        output = self._output
        state = output.state() if output is not None else None
        last_frame = state.last_event_frame_ts_s if state is not None else {}
        last_publish = state.last_event_publish_ts_s if state is not None else {}
        analysers = {t.name.removeprefix("analyse-"): t.is_alive() for t in
                     self._camera_threads if t.name.startswith("analyse-")}
        cameras: dict[str, object] = {}
        for camera_id, camera in list(self._cameras.items()):
            health = camera.health()
            cameras[camera_id] = {
                "state": health.state.value,
                "state_since_ts_s": round(health.state_since_wall_ts_s, 3),
                "url": health.url,
                "decoded_fps": round(health.fps, 2),
                "analysed_fps": round(self.metrics.rate("frames_analysed", camera_id), 2),
                "analysis_running": analysers.get(camera_id, False),
                "frames_decoded": health.frames_decoded,
                "frames_analysed": self.metrics.total("frames_analysed", camera_id),
                "frames_dropped": health.frames_dropped,
                "crops_dropped": self.metrics.total("crops_dropped", camera_id),
                "faces_detected": self.metrics.total("faces_detected", camera_id),
                "events": self.metrics.total("events", camera_id),
                "alerts": self.metrics.total("alerts", camera_id),
                "reconnects": health.reconnects,
                "errors": health.errors,
                "decode_errors": health.decode_errors,
                "last_error": health.last_error,
                "last_frame_ts_s": health.last_frame_wall_ts_s,
                "last_event_frame_ts_s": last_frame.get(camera_id),
                "last_event_publish_ts_s": last_publish.get(camera_id),
            }
        for camera_id, reason in self.failed_cameras.items():
            cameras[camera_id] = {"state": "not_started", "last_error": reason}
        publisher: dict[str, object] | None = None
        spool: dict[str, object] | None = None
        if state is not None and state.publisher is not None:
            stats = state.publisher
            publisher = {
                "redis_up": stats.redis_up,
                "events_queued": stats.queued_events, "events_published": stats.published_events,
                "alerts_queued": stats.queued_alerts, "alerts_published": stats.published_alerts,
                "events_not_delivered": stats.events_not_delivered,
                "alerts_not_delivered": stats.alerts_not_delivered,
                "write_failures": stats.write_failures,
                "rejected": stats.rejected_events + stats.rejected_alerts,
                "entries_lost": stats.entries_lost, "server_restarts": stats.server_restarts,
            }
            spool = {
                "dir": str(self.config.spool.dir), "depth": stats.spool_depth,
                "depth_bytes": state.spool_depth_bytes,
                "max_messages": state.spool_max_messages, "max_bytes": state.spool_max_bytes,
                "accepting": state.spool_accepting,
                "dropped": stats.dropped_events + stats.dropped_alerts,
                "spooled": stats.spooled, "flushed": stats.flushed_from_spool,
            }
        live, ready = self.liveness(), self.readiness()
        return {
            "station": self.config.station.id, "phase": self._phase,
            "started_ts_s": round(self._started_wall, 3),
            "uptime_s": round(time.time() - self._started_wall, 3),
            "live": {"ok": live.ok, "reason": live.reason},
            "ready": {"ok": ready.ok, "reason": ready.reason},
            "cameras": cameras, "publisher": publisher, "spool": spool,
            "cluster": self.cluster_state().to_json(),
        }

    def _log_status(self, output: EventOutput) -> None:
        for camera_id, camera in self._cameras.items():
            health = camera.health()
            log.info("camera %s: %s", camera_id, health)
        log.info("events published %d, alerts %d", output.events_published,
                 output.alerts_published)


def _spawn(name: str, target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _join(threads: list[threading.Thread], timeout_s: float = 10.0) -> None:
    for thread in threads:
        thread.join(timeout=timeout_s)
        if thread.is_alive():
            log.warning("thread %s did not stop within %.0f s", thread.name, timeout_s)
