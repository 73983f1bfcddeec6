"""Lease, heartbeat and shared-cooldown semantics on a real Redis (pipeline/cluster/), and
the shipped ACL letting the pipeline user do exactly that."""

from __future__ import annotations

import time

import pytest
import redis

from pipeline.cluster.cooldowns import RedisCooldowns
from pipeline.cluster.keys import ClusterKeys
from pipeline.cluster.leases import Lease, LeaseStore, Renewal
from pipeline.cluster.membership import Membership
from pipeline.config import RedisConfig
from pipeline.sinks.client import create_redis_client
from tests.helpers.waiting import wait_for
from tests.test_redis_acl import ENV, PIPELINE, acl_server  # noqa: F401 - fixture

KEYS = ClusterKeys.for_station("cctv", "st1")
LEASE_MS = 1000


def test_one_holder_per_camera_with_growing_epochs(redis_client: redis.Redis) -> None:
    store = LeaseStore(redis_client, KEYS, LEASE_MS)
    first = store.acquire("cam", "w1")
    assert first == Lease("cam", "w1", 1)
    assert store.acquire("cam", "w2") is None  # SET NX: held
    assert store.holders(["cam", "other"]) == {"cam": ("w1", 1), "other": None}
    assert 0 < redis_client.pttl(KEYS.lease("cam")) <= LEASE_MS
    # compare-and-delete: a stale token deletes nothing
    assert store.release(Lease("cam", "w1", 99)) is False
    assert store.release(first) is True
    second = store.acquire("cam", "w2")
    assert second is not None and second.epoch == 2


def test_a_lapsed_lease_goes_to_the_next_worker_and_the_old_holder_learns_it(
        redis_client: redis.Redis) -> None:
    store = LeaseStore(redis_client, KEYS, 300)
    old = store.acquire("cam", "w1")
    wait_for(lambda: store.holders(["cam"])["cam"] is None, timeout_s=3)
    new = store.acquire("cam", "w2")
    assert new is not None and new.epoch > old.epoch
    assert store.renew([old]) == {"cam": Renewal.LOST}
    assert store.renew([new]) == {"cam": Renewal.RENEWED}


def test_renew_reasserts_a_vanished_lease_and_keeps_the_epoch_counter_ahead(
        redis_client: redis.Redis) -> None:
    store = LeaseStore(redis_client, KEYS, LEASE_MS)
    for _ in range(3):
        store.release(store.acquire("cam", "w1"))
    held = store.acquire("cam", "w1")
    assert held.epoch == 4
    redis_client.flushall()  # a restart without data: lease and counter gone
    assert store.renew([held]) == {"cam": Renewal.REASSERTED}
    assert store.holders(["cam"])["cam"] == ("w1", 4)
    store.release(held)
    assert store.acquire("cam", "w2").epoch == 5  # never back to 1


def test_a_restarted_worker_takes_over_its_own_previous_lease(
        redis_client: redis.Redis) -> None:
    store = LeaseStore(redis_client, KEYS, 60_000)
    before = store.acquire("cam", "w1")
    assert store.acquire("cam", "w10") is None  # a prefix of the id is not the same worker
    after = store.acquire("cam", "w1")
    assert after is not None and after.epoch == before.epoch + 1
    assert store.renew([before]) == {"cam": Renewal.LOST}


def test_heartbeats_list_live_workers_and_forget_lapsed_ones(
        redis_client: redis.Redis) -> None:
    short = Membership(redis_client, KEYS, 300)
    long = Membership(redis_client, KEYS, 60_000)
    assert long.heartbeat("w1", 2) == {"w1": 2}
    assert short.heartbeat("w2", 3) == {"w1": 2, "w2": 3}
    wait_for(lambda: long.heartbeat("", 0) == {"w1": 2}, timeout_s=3)
    assert redis_client.hgetall(KEYS.capacities) == {b"w1": b"2"}
    long.leave("w1")
    assert long.heartbeat("", 0) == {}


def test_shared_cooldown_fires_once_across_workers_and_never_blocks_on_an_outage(
        redis_client: redis.Redis, redis_server) -> None:
    a = RedisCooldowns(redis_client, KEYS, "w1")
    b = RedisCooldowns(redis_client, KEYS, "w2")
    assert a.claim("fear", "cam", "camera", 0.4) is True
    assert b.claim("fear", "cam", "camera", 0.4) is False  # the failover worker stays quiet
    assert b.claim("fear", "cam", "t-1", 0.4) is True  # another scope
    wait_for(lambda: b.claim("fear", "cam", "camera", 0.4), timeout_s=3)
    redis_server.stop()
    client = create_redis_client(RedisConfig(url=redis_server.url, connect_timeout_s=0.3,
                                             socket_timeout_s=0.3))
    down = RedisCooldowns(client, KEYS, "w3", retry_after_s=60)
    started = time.monotonic()
    assert down.claim("fear", "cam", "camera", 60) is True
    assert down.claim("fear", "cam", "camera", 60) is True  # no second connect attempt
    assert time.monotonic() - started < 2


def test_the_shipped_acl_lets_the_pipeline_user_hold_leases(acl_server) -> None:  # noqa: F811
    client = create_redis_client(RedisConfig(url=acl_server.url, credentials=PIPELINE),
                                 env=ENV)
    store = LeaseStore(client, KEYS, LEASE_MS)
    lease = store.acquire("cam", "w1")
    assert store.renew([lease]) == {"cam": Renewal.RENEWED}
    assert store.holders(["cam"]) == {"cam": ("w1", 1)}
    assert Membership(client, KEYS, LEASE_MS).heartbeat("w1", 2) == {"w1": 2}
    assert RedisCooldowns(client, KEYS, "w1").claim("r", "cam", "camera", 5) is True
    assert store.release(lease) is True
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.delete("cctv:st1:events:cam")  # DEL only on cluster keys
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("cctv:st1:alerts", "x")
