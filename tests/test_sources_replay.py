"""Offline replay with real PyAV-encoded files: every frame, deterministic, bad files named."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import av
import pytest

from pipeline.errors import SourceError
from pipeline.queues import BlockingQueue
from pipeline.records import Frame
from pipeline.sources import list_videos, replay_file, replay_path
from tests.helpers.media import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("replay") / "clip.mp4", count=30, fps=25)


def _signature(frames: list[Frame]) -> list[tuple[int, float, str]]:
    return [(f.index, f.ts_ms, hashlib.sha1(f.image_bgr.tobytes()).hexdigest()) for f in frames]


def test_replay_file_gives_every_frame_in_order(clip: Path) -> None:
    frames = list(replay_file(clip, camera_id="cam1"))
    assert [f.index for f in frames] == list(range(30))
    assert frames[0].ts_ms == 0.0
    assert [round(f.ts_ms) for f in frames] == [40 * i for i in range(30)]
    assert all(f.camera_id == "cam1" and f.size_wh == (160, 120) for f in frames)
    assert frames[0].image_bgr.dtype.name == "uint8"
    # the moving square is bright yellow-ish in BGR (30, 200, 240): check colour order
    assert frames[0].image_bgr[52, 17, 2] > 150 and frames[0].image_bgr[52, 17, 0] < 100


def test_replay_is_deterministic(clip: Path) -> None:
    assert _signature(list(replay_file(clip))) == _signature(list(replay_file(clip)))


def test_realtime_pacing_takes_about_the_clip_duration(clip: Path) -> None:
    started = time.monotonic()
    frames = list(replay_file(clip, realtime=True))
    elapsed = time.monotonic() - started
    assert len(frames) == 30
    assert elapsed >= 0.9 * frames[-1].ts_ms / 1000.0  # 29 frame intervals = 1.16 s


def _faststart_copy(src: Path, dst: Path) -> Path:
    """Remux with the index (moov) first, so a truncated copy still opens."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    return dst


def test_folder_replay_reports_bad_files_and_carries_on(clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    make_clip(folder / "a_good.mp4", count=12)
    (folder / "b_corrupt.mp4").write_bytes(os.urandom(20_000))
    data = clip.read_bytes()
    (folder / "c_truncated.mp4").write_bytes(data[: len(data) // 2])  # index lost
    indexed = _faststart_copy(clip, tmp_path / "indexed.mp4").read_bytes()
    (folder / "d_truncated_indexed.mp4").write_bytes(indexed[: int(len(indexed) * 0.6)])
    make_clip(folder / "sub" / "e_good.mkv", count=8)
    (folder / "notes.txt").write_text("not a video")

    assert [p.name for p in list_videos(folder)] == [
        "a_good.mp4", "b_corrupt.mp4", "c_truncated.mp4", "d_truncated_indexed.mp4",
        "e_good.mkv"]

    out: BlockingQueue[Frame] = BlockingQueue(maxsize=64)
    results = list(replay_path(folder, out.put))
    by_name = {r.path.name: r for r in results}
    assert by_name["a_good.mp4"].ok and by_name["a_good.mp4"].frames_decoded == 12
    assert by_name["e_good.mkv"].ok and by_name["e_good.mkv"].frames_decoded == 8
    for bad in ("b_corrupt.mp4", "c_truncated.mp4"):
        assert not by_name[bad].ok
        assert bad in by_name[bad].error
    # a cut-off file whose index survived is analysed up to the cut and reported as damaged
    cut = by_name["d_truncated_indexed.mp4"]
    assert cut.ok and 0 < cut.frames_decoded < 50
    assert cut.report is not None and "truncated" in (cut.report.ended_early or "")
    frames = []
    while len(out):
        frames.append(out.get(timeout=0))
    good = [f for f in frames if f.camera_id in ("a_good", "e_good")]
    assert [f.index for f in good] == list(range(12)) + list(range(8))


def test_replay_file_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.mkv"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match=r"junk\.mkv"):
        list(replay_file(bad))
    with pytest.raises(SourceError, match="does not exist"):
        list_videos(tmp_path / "missing")


def test_town_centre_replay(town_centre_clip: Path) -> None:
    count = 0
    last_ts = -1.0
    for frame in replay_file(town_centre_clip):
        assert frame.index == count
        assert frame.size_wh == (1920, 1080)
        assert frame.ts_ms > last_ts
        last_ts = frame.ts_ms
        count += 1
    assert count == 96
    assert last_ts == pytest.approx(95 * 40.0, abs=1.0)
