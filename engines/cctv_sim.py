"""Camera simulator: face crops degraded the way a CCTV camera degrades them.

One module, used by emotion training, emotion evaluation and SR pair making. Per face:

1. optical blur: Gaussian on the high-resolution face, ``sigma`` given in low-resolution
   (output) pixels and scaled to the input resolution;
2. area downscale (``cv2.INTER_AREA``) to the face size (the side of the square crop, px);
3. compositing into consecutive frames of a real clip: several faces per frame, each held
   for ``hold_frames`` frames and moving up to ``max_speed_px`` per frame; faces appear
   staggered so the encoder sees a steady load, as in a street scene;
4. per-frame sensor noise (Gaussian, 0-255 units) over the whole frame's luma;
5. a real encoder through PyAV: libx264 or libx265 with a fixed GOP, no B-frames and a
   VBV-capped average bitrate (one encoder thread, so the bitstream is repeatable);
6. the face cut out of the decoded frame 1 to ``hold_frames - 1`` frames after it appeared
   (so wherever the GOP puts it: just after a keyframe or many P-frames later).

Faces are gray (FER+). They are written into the luma plane with the limited-range BT.601
mapping ``Y = 16 + 219 g / 255`` and read back with its inverse, which is what the decoder's
RGB conversion in the pipeline does. ``codec="jpeg"`` is the cheap alternative: steps 1, 2,
noise on the face and a JPEG round trip, no video.

``bitrate_kbps`` is the rate of the clip's full frame. With ``crop_hw`` a region of the clip
is encoded at the same bits per pixel (``bitrate * crop area / frame area``), 4x faster for a
quarter of 1080p; :func:`simulate_faces` is deterministic for a given seed either way.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

log = logging.getLogger(__name__)

SIM_VERSION = 2  # bump when the output of simulate_faces changes for the same inputs
# 2: sensor noise is added after the faces are composited (v1 left faces noise-free)
Codec = Literal["h264", "hevc", "jpeg"]
_ENCODERS = {"h264": ("libx264", "x264-params", "h264"),
             "hevc": ("libx265", "x265-params", "hevc")}


class SimulatorError(ValueError):
    """Bad simulator input (clip, sizes, settings); the message names the problem."""


@dataclass(frozen=True)
class CameraSettings:
    """What one simulated camera does to the faces in its view."""

    codec: Codec = "h264"
    bitrate_kbps: float = 1000.0
    gop_frames: int = 25
    fps: int = 25
    preset: str = "veryfast"
    noise_sigma: float = 2.0
    jpeg_quality: int = 40
    faces_per_frame: int = 24
    hold_frames: int = 6
    max_speed_px: float = 2.0
    crop_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.codec not in ("h264", "hevc", "jpeg"):
            raise SimulatorError(f"codec: expected h264|hevc|jpeg, got {self.codec!r}")
        if not self.bitrate_kbps > 0:
            raise SimulatorError(f"bitrate_kbps: expected > 0, got {self.bitrate_kbps}")
        if self.gop_frames < 1 or self.hold_frames < 2 or self.faces_per_frame < 1:
            raise SimulatorError(
                f"expected gop_frames >= 1, hold_frames >= 2, faces_per_frame >= 1, got "
                f"{self.gop_frames}, {self.hold_frames}, {self.faces_per_frame}")
        if not 1 <= self.jpeg_quality <= 100:
            raise SimulatorError(f"jpeg_quality: expected 1-100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class BackgroundClip:
    """Frames of a real clip as yuv420p arrays ``(H * 3 // 2, W)`` uint8 (even H and W)."""

    path: str
    frames_yuv: tuple[np.ndarray, ...]

    @property
    def frame_hw(self) -> tuple[int, int]:
        h2, w = self.frames_yuv[0].shape
        return h2 * 2 // 3, w


@functools.lru_cache(maxsize=2)
def load_background(path: str, max_frames: int = 100) -> BackgroundClip:
    """Decode up to ``max_frames`` frames of ``path`` (cached per process).

    Raises :class:`SimulatorError` when the file is missing or has no decodable video.
    """
    import av

    p = Path(path)
    if not p.is_file():
        raise SimulatorError(f"background clip: expected a video file, got none at {p}")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                w, h = frame.width // 2 * 2, frame.height // 2 * 2
                frames.append(frame.reformat(width=w, height=h, format="yuv420p").to_ndarray())
                if len(frames) >= max_frames:
                    break
    except (av.FFmpegError, IndexError) as err:
        raise SimulatorError(f"background clip {p}: cannot decode video: {err}") from err
    if not frames:
        raise SimulatorError(f"background clip {p}: expected video frames, got none")
    return BackgroundClip(str(p), tuple(frames))


def blur_and_downscale(face: np.ndarray, size_px: int, blur_sigma_lr: float) -> np.ndarray:
    """Optical blur (sigma in output pixels) then INTER_AREA downscale to ``size_px`` square."""
    h, w = face.shape[:2]
    img = face
    if blur_sigma_lr > 0:
        s = blur_sigma_lr * max(h, w) / size_px
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=s, sigmaY=s)
    if (h, w) == (size_px, size_px):
        return img.copy()
    return cv2.resize(img, (size_px, size_px), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class _Placement:
    face: int
    appear: int
    cut: int
    x0: float
    y0: float
    vx: float
    vy: float

    def xy(self, t: int) -> tuple[int, int]:
        dt = t - self.appear
        return round(self.x0 + self.vx * dt), round(self.y0 + self.vy * dt)


def _plan(n: int, sizes: np.ndarray, frame_hw: tuple[int, int], s: CameraSettings,
          rng: np.random.Generator) -> list[_Placement]:
    """Place faces in slots on a grid; each slot shows one face after another."""
    travel = s.max_speed_px * (s.hold_frames - 1)
    cell = math.ceil(int(sizes.max()) + 2 * travel + 4)
    rows, cols = frame_hw[0] // cell, frame_hw[1] // cell
    if rows * cols == 0:
        raise SimulatorError(f"frame {frame_hw} is smaller than one face cell of {cell} px")
    n_slots = min(s.faces_per_frame, rows * cols, n)
    cells = rng.choice(rows * cols, size=n_slots, replace=False)
    plan = []
    for j in range(n):
        slot, k = j % n_slots, j // n_slots
        phase = slot % s.hold_frames
        appear = phase + k * s.hold_frames
        cy, cx = divmod(int(cells[slot]), cols)
        size = int(sizes[j])
        lo = travel + 2
        hi_x, hi_y = cell - size - travel - 2, cell - size - travel - 2
        x0 = cx * cell + rng.uniform(lo, max(lo, hi_x))
        y0 = cy * cell + rng.uniform(lo, max(lo, hi_y))
        vx, vy = rng.uniform(-s.max_speed_px, s.max_speed_px, size=2)
        cut = appear + int(rng.integers(1, s.hold_frames))
        plan.append(_Placement(j, appear, cut, x0, y0, float(vx), float(vy)))
    return plan


def _gray_to_luma(g: np.ndarray) -> np.ndarray:
    return (16.0 + g.astype(np.float32) * (219.0 / 255.0) + 0.5).astype(np.uint8)


def _luma_to_gray(y: np.ndarray) -> np.ndarray:
    g = (y.astype(np.float32) - 16.0) * (255.0 / 219.0)
    return np.clip(g + 0.5, 0, 255).astype(np.uint8)


def _open_codecs(s: CameraSettings, frame_hw: tuple[int, int], bitrate_bps: int):
    import av

    enc_name, params_key, dec_name = _ENCODERS[s.codec]
    enc = av.CodecContext.create(enc_name, "w")
    enc.height, enc.width = frame_hw
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, s.fps)
    enc.framerate = Fraction(s.fps, 1)
    enc.bit_rate = bitrate_bps
    enc.gop_size = s.gop_frames
    enc.max_b_frames = 0
    enc.thread_count = 1
    kbps = max(1, bitrate_bps // 1000)
    params = (f"keyint={s.gop_frames}:min-keyint={s.gop_frames}:scenecut=0:bframes=0:"
              f"vbv-maxrate={kbps}:vbv-bufsize={kbps}")
    if s.codec == "hevc":
        params += ":pools=1:frame-threads=1:log-level=error"
    enc.options = {"preset": s.preset, params_key: params}
    enc.open()
    dec = av.CodecContext.create(dec_name, "r")
    dec.thread_count = 1
    return enc, dec


def _simulate_video(faces_lr: Sequence[np.ndarray], s: CameraSettings, clip: BackgroundClip,
                    rng: np.random.Generator) -> list[np.ndarray]:
    import av

    full_h, full_w = clip.frame_hw
    fh, fw = s.crop_hw or (full_h, full_w)
    fh, fw = min(fh, full_h) // 4 * 4, min(fw, full_w) // 2 * 2
    oy = int(rng.integers(0, (full_h - fh) // 2 + 1)) * 2
    ox = int(rng.integers(0, (full_w - fw) // 2 + 1)) * 2
    sizes = np.asarray([f.shape[0] for f in faces_lr])
    plan = _plan(len(faces_lr), sizes, (fh, fw), s, rng)
    n_frames = max(p.appear for p in plan) + s.hold_frames
    start = int(rng.integers(0, len(clip.frames_yuv)))
    bitrate = int(s.bitrate_kbps * 1000 * (fh * fw) / (full_h * full_w))
    enc, dec = _open_codecs(s, (fh, fw), bitrate)
    luma = [_gray_to_luma(f) for f in faces_lr]
    by_frame: dict[int, list[_Placement]] = {}
    cuts: dict[int, list[_Placement]] = {}
    for p in plan:
        for t in range(p.appear, p.appear + s.hold_frames):
            by_frame.setdefault(t, []).append(p)
        cuts.setdefault(p.cut, []).append(p)
    out: list[np.ndarray | None] = [None] * len(faces_lr)
    period = 2 * len(clip.frames_yuv) - 2 if len(clip.frames_yuv) > 1 else 1

    def take(frames: list) -> None:
        for frame in frames:
            t = int(frame.pts)
            y = frame.to_ndarray()[:fh]
            for p in cuts.get(t, ()):
                x, yy = p.xy(t)
                size = sizes[p.face]
                out[p.face] = _luma_to_gray(y[yy:yy + size, x:x + size])

    for t in range(n_frames):
        k = (start + t) % period  # ping-pong through the clip: no hard cut at the loop
        k = k if k < len(clip.frames_yuv) else period - k
        src = clip.frames_yuv[k]
        yuv = np.empty((fh * 3 // 2, fw), np.uint8)
        yuv[:fh] = src[oy:oy + fh, ox:ox + fw]
        # chroma planes: U then V, each (full_h/2, full_w/2) stored as full_h/4 rows of full_w
        for plane in range(2):
            src_c = src[full_h + plane * full_h // 4: full_h + (plane + 1) * full_h // 4]
            src_c = src_c.reshape(full_h // 2, full_w // 2)
            dst_c = src_c[oy // 2:(oy + fh) // 2, ox // 2:(ox + fw) // 2]
            yuv[fh + plane * fh // 4: fh + (plane + 1) * fh // 4] = dst_c.reshape(fh // 4, fw)
        for p in by_frame.get(t, ()):
            x, yy = p.xy(t)
            size = sizes[p.face]
            yuv[yy:yy + size, x:x + size] = luma[p.face]
            # neutral chroma under the gray face
            cy0, cx0, cs = yy // 2, x // 2, (size + 1) // 2
            for plane in range(2):
                c = yuv[fh + plane * fh // 4: fh + (plane + 1) * fh // 4].reshape(fh // 2, fw // 2)
                c[cy0:cy0 + cs, cx0:cx0 + cs] = 128
        if s.noise_sigma > 0:  # sensor noise on the whole picture, faces included
            y_plane = yuv[:fh].astype(np.float32)
            y_plane += rng.standard_normal((fh, fw), dtype=np.float32) * np.float32(s.noise_sigma)
            yuv[:fh] = np.clip(y_plane + 0.5, 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = t
        for packet in enc.encode(frame):
            take(dec.decode(packet))
    for packet in enc.encode(None):
        take(dec.decode(packet))
    take(dec.decode(None))
    missing = [i for i, o in enumerate(out) if o is None]
    if missing:
        raise SimulatorError(f"decoder returned no frame for {len(missing)} faces "
                             f"(first face {missing[0]})")
    return [o for o in out if o is not None]


def simulate_faces(faces: Sequence[np.ndarray], sizes_px: Sequence[int],
                   blur_sigmas_lr: Sequence[float], settings: CameraSettings,
                   clip_path: str | Path | None, seed: int | Sequence[int]) -> list[np.ndarray]:
    """Degrade gray faces as one camera would; return the cut-out crops.

    Args:
        faces: gray uint8 faces ``(H, W)`` (square; FER+ is 48x48).
        sizes_px: face side in the camera frame, px, one per face (>= 4).
        blur_sigmas_lr: optical blur sigma in output pixels, one per face (0 = none).
        settings: the camera (codec, bitrate, GOP, noise, ...).
        clip_path: background clip; required unless ``settings.codec == "jpeg"``.
        seed: makes layout, noise and motion repeatable.

    Returns:
        One gray uint8 ``(size, size)`` crop per face, in input order.

    Raises:
        SimulatorError: mismatched lengths, a size below 4 px, a non-gray face, a missing clip.
    """
    if not (len(faces) == len(sizes_px) == len(blur_sigmas_lr)):
        raise SimulatorError(f"expected equal lengths, got {len(faces)} faces, "
                             f"{len(sizes_px)} sizes, {len(blur_sigmas_lr)} sigmas")
    if len(faces) == 0:
        return []
    for i, f in enumerate(faces):
        if f.dtype != np.uint8 or f.ndim != 2:
            raise SimulatorError(f"face {i}: expected a gray uint8 (H, W) array, got "
                                 f"{f.dtype} {f.shape}")
    if min(sizes_px) < 4:
        raise SimulatorError(f"sizes_px: expected >= 4, got {min(sizes_px)}")
    rng = np.random.default_rng(seed)
    lr = [blur_and_downscale(f, int(sz), float(b))
          for f, sz, b in zip(faces, sizes_px, blur_sigmas_lr, strict=True)]
    if settings.codec == "jpeg":
        from engines.train.degradations import gaussian_noise, jpeg

        return [jpeg(gaussian_noise(x, settings.noise_sigma, rng), settings.jpeg_quality)
                for x in lr]
    if clip_path is None:
        raise SimulatorError(f"codec {settings.codec}: expected a background clip path, got None")
    return _simulate_video(lr, settings, load_background(str(clip_path)), rng)


# --- whole data sets: random cameras per chunk, parallel, cached ---------------------------

@dataclass(frozen=True)
class SimRanges:
    """Distribution of cameras and faces for simulating a data set (training mix)."""

    min_size_px: int = 10
    max_size_px: int = 48
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_sigma: tuple[float, float] = (0.5, 6.0)
    bitrate_kbps: tuple[float, float] = (300.0, 4000.0)
    hevc_prob: float = 0.2
    jpeg_prob: float = 0.1
    jpeg_quality: tuple[int, int] = (20, 70)
    gop_frames: tuple[int, ...] = (12, 25, 50)
    crop_hw: tuple[int, int] | None = (540, 960)
    chunk: int = 480


@dataclass(frozen=True)
class SimulatedSet:
    """Simulated crops stored padded: ``crops[i, :sizes[i], :sizes[i]]`` is crop i."""

    crops: np.ndarray  # (N, S, S) uint8, S = max size
    sizes_px: np.ndarray  # (N,) int
    bitrate_kbps: np.ndarray  # (N,) float, 0 for jpeg
    codec: np.ndarray  # (N,) str

    def crop(self, i: int) -> np.ndarray:
        s = int(self.sizes_px[i])
        return self.crops[i, :s, :s]

    def __len__(self) -> int:
        return int(self.sizes_px.shape[0])


def _chunk_job(args: tuple) -> tuple[int, list[np.ndarray], list[int], float, str]:
    idx, faces, ranges, clip_path, seed = args
    rng = np.random.default_rng([seed, idx])
    lo, hi = math.log(ranges.min_size_px), math.log(ranges.max_size_px)
    sizes = [round(math.exp(v)) for v in rng.uniform(lo, hi, len(faces))]
    blur = list(rng.uniform(*ranges.blur_sigma, len(faces)))
    u = rng.random()
    codec: Codec = "jpeg" if u < ranges.jpeg_prob else (
        "hevc" if u < ranges.jpeg_prob + ranges.hevc_prob else "h264")
    bitrate = float(math.exp(rng.uniform(*np.log(ranges.bitrate_kbps))))
    settings = CameraSettings(
        codec=codec, bitrate_kbps=bitrate,
        gop_frames=int(rng.choice(ranges.gop_frames)),
        noise_sigma=float(rng.uniform(*ranges.noise_sigma)),
        jpeg_quality=int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1)),
        crop_hw=ranges.crop_hw)
    crops = simulate_faces(list(faces), sizes, blur, settings, clip_path, [seed, idx, 1])
    return idx, crops, sizes, (0.0 if codec == "jpeg" else bitrate), codec


def _cache_key(images: np.ndarray, ranges: SimRanges, clip_path: Path, seed: int) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).tobytes())
    st = clip_path.stat()
    h.update(repr((asdict(ranges), clip_path.name, st.st_size, seed, SIM_VERSION)).encode())
    return h.hexdigest()[:20]


def simulate_dataset(images: np.ndarray, ranges: SimRanges, clip_path: Path, seed: int,
                     workers: int = 2, cache_dir: Path | None = None) -> SimulatedSet:
    """Simulate every image once through a random camera per chunk of ``ranges.chunk`` faces.

    Chunks run in ``workers`` processes; the result is identical for any worker count. With
    ``cache_dir`` the set is stored as ``.npz`` keyed by the images, ranges, clip and seed.
    """
    clip_path = Path(clip_path)
    if not clip_path.is_file():
        raise SimulatorError(f"background clip: expected a video file, got none at {clip_path}")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"cctvsim_{_cache_key(images, ranges, clip_path, seed)}.npz"
        if cache.is_file():
            z = np.load(cache, allow_pickle=False)
            return SimulatedSet(z["crops"], z["sizes"], z["bitrate"], z["codec"])
    n = len(images)
    jobs = [(i, images[a:a + ranges.chunk], ranges, str(clip_path), seed)
            for i, a in enumerate(range(0, n, ranges.chunk))]
    crops = np.zeros((n, ranges.max_size_px, ranges.max_size_px), np.uint8)
    sizes = np.zeros(n, np.int32)
    bitrate = np.zeros(n, np.float32)
    codec = np.empty(n, dtype="<U4")
    if workers > 1:
        # Fresh interpreters, not fork: a fork taken while OpenCV's thread pool is busy (the
        # parent blurs and resizes too) copies its locks, and a child then waited for ever in
        # its first cv2 call (seen 2026-12-01 under load; another run gave different crops).
        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_chunk_job, jobs))
    else:
        results = [_chunk_job(j) for j in jobs]
    for idx, chunk_crops, chunk_sizes, rate, name in results:
        a = idx * ranges.chunk
        for k, (c, s) in enumerate(zip(chunk_crops, chunk_sizes, strict=True)):
            crops[a + k, :s, :s] = c
            sizes[a + k] = s
            bitrate[a + k] = rate
            codec[a + k] = name
    out = SimulatedSet(crops, sizes, bitrate, codec)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, crops=crops, sizes=sizes, bitrate=bitrate, codec=codec)
        os.replace(tmp, cache)
    return out


def simulate_fixed(images: np.ndarray, size_px: int, settings: CameraSettings,
                   clip_path: Path | None, seed: int, blur_sigma_lr: float = 0.5,
                   chunk: int = 480) -> list[np.ndarray]:
    """Evaluation protocol: every face at one size through one camera setting, in chunks."""
    out: list[np.ndarray] = []
    for i, a in enumerate(range(0, len(images), chunk)):
        part = list(images[a:a + chunk])
        out += simulate_faces(part, [size_px] * len(part), [blur_sigma_lr] * len(part),
                              settings, clip_path, [seed, i])
    return out


def with_bitrate(settings: CameraSettings, kbps: float) -> CameraSettings:
    return replace(settings, bitrate_kbps=float(kbps))
