"""Cluster decisions without Redis: rendezvous hashing, capacity, static shares, the
per-tick plan, worker identity (pipeline/cluster/)."""

from __future__ import annotations

import pytest

from pipeline.cluster.hashing import assign, hrw_score, static_share, worker_ordinal
from pipeline.cluster.modes import resolve_worker_id, startup_cameras
from pipeline.cluster.reconcile import plan_moves
from pipeline.config import CameraConfig, ClusterConfig
from pipeline.errors import ConfigError

CAMERAS = [f"cam-{i:03d}" for i in range(120)]


def test_scores_are_stable_across_processes() -> None:
    # BLAKE2b, not Python's per-process salted hash: every worker ranks alike
    assert hrw_score("cam-1", "w-1") == 5309911382176033188
    assert hrw_score("cam-1", "w-1") == hrw_score("cam-1", "w-1")
    assert hrw_score("cam-1", "w-1") != hrw_score("cam-1", "w-2")


def test_a_joining_worker_takes_about_its_share_and_nothing_else_moves() -> None:
    before = assign(CAMERAS, {"w0": 1000, "w1": 1000, "w2": 1000})
    after = assign(CAMERAS, {"w0": 1000, "w1": 1000, "w2": 1000, "w3": 1000})
    moved = [c for c in CAMERAS if before.owners[c] != after.owners[c]]
    assert all(after.owners[c] == "w3" for c in moved)
    assert 0.15 < len(moved) / len(CAMERAS) < 0.35
    assert before.unassigned == after.unassigned == ()


def test_a_leaving_worker_moves_only_its_own_cameras() -> None:
    before = assign(CAMERAS, {"w0": 1000, "w1": 1000, "w2": 1000})
    after = assign(CAMERAS, {"w0": 1000, "w2": 1000})
    for camera in CAMERAS:
        if before.owners[camera] != "w1":
            assert after.owners[camera] == before.owners[camera]


def test_capacity_is_respected_and_the_rest_reported() -> None:
    result = assign(CAMERAS[:10], {"a": 3, "b": 4})
    counts = {w: list(result.owners.values()).count(w) for w in ("a", "b")}
    assert counts == {"a": 3, "b": 4}
    assert len(result.unassigned) == 3
    assert set(result.unassigned) | set(result.owners) == set(CAMERAS[:10])
    assert assign(CAMERAS[:3], {}).unassigned == tuple(CAMERAS[:3])


def test_static_shares_partition_and_move_about_one_in_n_plus_one() -> None:
    shares3 = [static_share(CAMERAS, i, 3) for i in range(3)]
    assert sorted(c for share in shares3 for c in share) == sorted(CAMERAS)
    shares4 = [static_share(CAMERAS, i, 4) for i in range(4)]
    owner3 = {c: i for i, share in enumerate(shares3) for c in share}
    owner4 = {c: i for i, share in enumerate(shares4) for c in share}
    moved = [c for c in CAMERAS if owner3[c] != owner4[c]]
    assert all(owner4[c] == 3 for c in moved)
    assert 0.15 < len(moved) / len(CAMERAS) < 0.35
    with pytest.raises(ValueError, match=r"expected 0\.\.2, got 3"):
        static_share(CAMERAS, 3, 3)


def _plan(held, holders, owners, capacity=4, settling=False, unassigned=()):
    from pipeline.cluster.hashing import Assignment

    return plan_moves("me", Assignment(owners, tuple(unassigned)), held, holders, capacity,
                      settling=settling)


def test_plan_releases_to_the_live_owner_and_takes_free_cameras() -> None:
    moves = _plan(held=["a", "b"], holders={"a": "me", "b": "me", "c": None, "d": "x"},
                  owners={"a": "me", "b": "x", "c": "me", "d": "me"})
    assert moves.release == ("b",)
    assert moves.acquire == ("c",)  # d: x still holds it; x gives it up itself


def test_plan_keeps_a_camera_nobody_can_take_and_respects_room() -> None:
    moves = _plan(held=["a"], holders={"a": "me", "b": None, "c": None},
                  owners={"b": "me", "c": "me"}, capacity=2, unassigned=["a"])
    assert moves.release == ()
    assert moves.acquire == ("b",)


def test_plan_takes_nothing_while_settling_but_still_releases() -> None:
    moves = _plan(held=["a"], holders={"a": "me", "b": None}, owners={"a": "x", "b": "me"},
                  settling=True)
    assert moves == type(moves)(("a",), ())


def test_plan_takes_over_its_previous_incarnations_lease() -> None:
    moves = _plan(held=[], holders={"a": "me"}, owners={"a": "me"})
    assert moves.acquire == ("a",)


def test_worker_identity_and_startup_cameras() -> None:
    cfg = ClusterConfig()
    assert resolve_worker_id(cfg, None, "cctv-pipeline-2", "host") == "cctv-pipeline-2"
    assert resolve_worker_id(cfg, "w9", "cctv-pipeline-2", "host") == "w9"
    assert resolve_worker_id(cfg, None, None, "host") == "host"
    with pytest.raises(ConfigError, match="--worker-id: worker id 'a b'"):
        resolve_worker_id(cfg, "a b", None, "host")
    assert worker_ordinal("cctv-pipeline-12") == 12 and worker_ordinal("w") is None
    cameras = [CameraConfig(id=c, url="rtsp://10.0.0.1/x") for c in CAMERAS[:9]]
    assert startup_cameras(cfg, cameras, "w") == cameras
    assert startup_cameras(ClusterConfig(mode="leases"), cameras, "w") == []
    static = ClusterConfig(mode="static", worker_count=3)
    shares = [startup_cameras(static, cameras, f"cctv-pipeline-{i}") for i in range(3)]
    assert sorted(c.id for share in shares for c in share) == [c.id for c in cameras]
    with pytest.raises(ConfigError, match="worker_index: static mode needs it"):
        startup_cameras(static, cameras, "worker")
    with pytest.raises(ConfigError, match=r"expected 0..2 \(cluster.worker_count 3\), got 5"):
        startup_cameras(static, cameras, "cctv-pipeline-5")


def test_cluster_config_refuses_a_tick_too_slow_for_the_lease() -> None:
    with pytest.raises(ValueError, match=r"tick_s .* at most a third of cluster\.lease_s"):
        ClusterConfig(mode="leases", lease_s=2.0, tick_s=1.0)
