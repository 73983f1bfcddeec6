"""Cross-camera batching owner (pipeline/batching.py): batches across callers, the stated
overflow policies (live drops the oldest, replay blocks), and per-batch failure isolation.

The owner's ``run_batch`` is held on a gate so each test decides exactly what is queued
while a batch runs; nothing depends on timing except bounded waits for threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from pipeline.batching import CrossCameraBatcher, RequestDropped
from pipeline.errors import ModelError, PipelineError

WAIT_S = 10.0


class GatedModel:
    """``run_batch`` that records each batch and blocks on a gate until released."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, items: Sequence) -> list:
        self.batches.append(list(items))
        self.entered.set()
        assert self.gate.wait(WAIT_S)
        if any(i == "bad" for i in items):
            raise ValueError("bad frame in the batch")
        return [f"faces of {i}" for i in items]


def started(model: GatedModel, **kwargs: object) -> CrossCameraBatcher:
    settings = {"max_batch": 8, "max_wait_s": 0.0, "queue_size": 8, "live": True, **kwargs}
    batcher = CrossCameraBatcher(model, **settings)
    batcher.start()
    return batcher


def hold_first_batch(model: GatedModel, batcher: CrossCameraBatcher):
    """Submit one item and wait until the owner is inside run_batch with it."""
    first = batcher.submit("first")
    assert model.entered.wait(WAIT_S)
    return first


def test_frames_of_several_cameras_share_one_batch() -> None:
    model = GatedModel()
    batcher = started(model)
    first = hold_first_batch(model, batcher)
    futures = {}

    def camera(cam: str) -> None:
        for k in range(2):
            futures[(cam, k)] = batcher.submit(f"{cam}/frame{k}")

    threads = [threading.Thread(target=camera, args=(f"cam{c}",)) for c in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    model.gate.set()
    assert first.result(WAIT_S) == "faces of first"
    for (cam, k), future in futures.items():
        assert future.result(WAIT_S) == f"faces of {cam}/frame{k}"
    batcher.stop()
    assert len(model.batches) == 2
    assert sorted(model.batches[1]) == sorted(f"cam{c}/frame{k}" for c in range(3)
                                              for k in range(2))
    assert batcher.stats.batches == 2 and batcher.stats.items == 7


def test_batches_never_exceed_max_batch() -> None:
    model = GatedModel()
    batcher = started(model, max_batch=4, queue_size=16)
    hold_first_batch(model, batcher)
    futures = [batcher.submit(i) for i in range(10)]
    model.gate.set()
    assert [f.result(WAIT_S) for f in futures] == [f"faces of {i}" for i in range(10)]
    batcher.stop()
    assert [len(b) for b in model.batches] == [1, 4, 4, 2]
    assert model.batches[1:] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # arrival order


def test_live_overflow_drops_the_oldest_and_counts_it() -> None:
    model = GatedModel()
    batcher = started(model, max_batch=2, queue_size=2, live=True)
    hold_first_batch(model, batcher)
    oldest, middle, newest = (batcher.submit(name) for name in ("old", "mid", "new"))
    with pytest.raises(RequestDropped):
        oldest.result(WAIT_S)
    model.gate.set()
    assert (middle.result(WAIT_S), newest.result(WAIT_S)) == ("faces of mid", "faces of new")
    batcher.stop()
    assert batcher.stats.dropped == 1
    assert "old" not in [i for b in model.batches for i in b]


def test_replay_overflow_blocks_the_caller_and_loses_nothing() -> None:
    model = GatedModel()
    batcher = started(model, max_batch=2, queue_size=2, live=False)
    hold_first_batch(model, batcher)
    queued = [batcher.submit(i) for i in range(2)]
    late: list = []
    blocked = threading.Thread(target=lambda: late.append(batcher.submit(2)))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive() and not late  # waiting for room, not dropped
    model.gate.set()
    blocked.join(WAIT_S)
    assert [f.result(WAIT_S) for f in [*queued, *late]] == [f"faces of {i}" for i in range(3)]
    batcher.stop()
    assert batcher.stats.dropped == 0


def test_a_failing_batch_fails_only_its_own_requests() -> None:
    model = GatedModel()
    model.gate.set()
    batcher = started(model, max_batch=1)
    bad, good = batcher.submit("bad"), batcher.submit("good")
    with pytest.raises(ValueError, match="bad frame"):
        bad.result(WAIT_S)
    assert good.result(WAIT_S) == "faces of good"
    batcher.stop()
    assert (batcher.stats.failed_batches, batcher.stats.batches) == (1, 1)


def test_wrong_result_count_is_a_model_error() -> None:
    batcher = CrossCameraBatcher(lambda items: [], max_batch=1, max_wait_s=0.0, queue_size=1,
                                 live=True)
    batcher.start()
    with pytest.raises(ModelError, match="0 results for 1 items"):
        batcher.submit("x").result(WAIT_S)
    batcher.stop()


def test_lifecycle_and_sizes_are_checked() -> None:
    batcher = CrossCameraBatcher(lambda items: list(items), max_batch=2, max_wait_s=0.0,
                                 queue_size=2, live=True)
    with pytest.raises(PipelineError, match="start"):
        batcher.submit(1)
    batcher.start()
    assert batcher.submit(1).result(WAIT_S) == 1
    batcher.stop()
    batcher.stop()
    with pytest.raises(PipelineError):
        batcher.submit(2)
    with pytest.raises(ValueError, match="queue_size"):
        CrossCameraBatcher(list, max_batch=4, max_wait_s=0.0, queue_size=2, live=True)
    with pytest.raises(ValueError, match="max_batch"):
        CrossCameraBatcher(list, max_batch=0, max_wait_s=0.0, queue_size=2, live=True)
