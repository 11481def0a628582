"""The run lock on a real Redis: one holder, token-checked extend and release, fencing."""

from __future__ import annotations

import time

import pytest

from pagila_tasks.base.errors import LockHeld, LockLost
from pagila_tasks.run.lock import Heartbeat, RunLock
from pagila_tasks.run.model import RunState
from tests.support import redis_client

# The test process reads the session servers from its environment (the settings,
# tests.support.redis_client): asking for them starts them and resets them per test.
pytestmark = pytest.mark.usefixtures("servers")


def test_one_holder_and_a_named_refusal() -> None:
    """The second taker gets LockHeld naming the holding run, its kind and since when."""
    lock = RunLock(redis_client(), ttl=30)
    lock.acquire("run-a", "load")
    with pytest.raises(LockHeld) as info:
        lock.acquire("run-b", "replicate")
    assert "run-a" in str(info.value) and "load" in str(info.value) and "since" in str(info.value)
    assert lock.release("run-a")
    lock.acquire("run-b", "replicate")


def test_stale_holder_cannot_release_extend_or_write() -> None:
    """A run whose lock expired cannot free, extend or commit under the next run's lock."""
    lock = RunLock(redis_client(), ttl=1)
    lock.acquire("old", "replicate")
    time.sleep(1.2)
    lock.acquire("new", "replicate")
    assert lock.release("old") is False
    assert lock.extend("old") is False
    with pytest.raises(LockLost, match="new holds it now"):
        lock.assert_held("old")
    assert lock.holder()["run_id"] == "new"
    lock.assert_held("new")


def test_heartbeat_keeps_the_lock_past_its_ttl() -> None:
    """While a heartbeat runs, the lock outlives its TTL; after it stops, the lock expires."""
    lock = RunLock(redis_client(), ttl=1)
    lock.acquire("beating", "load")
    with Heartbeat(lock, "beating"):
        time.sleep(2.0)
        assert lock.held_by("beating")
    time.sleep(1.3)
    assert lock.holder() is None


def test_the_first_error_of_a_run_stays_first() -> None:
    """A run's first error is its error; later, different ones are added, never substituted,
    and an unknown run gets no record at all."""
    from pagila_tasks.run.record import RunRecord

    progress = RunRecord(redis_client())
    progress.create("replicate-errors", "replicate", 60)
    progress.note_error("replicate-errors", "foreign key violation on rental")
    progress.note_error("replicate-errors", "cannot drop inherited constraint")
    progress.note_error("replicate-errors", "cannot drop inherited constraint")
    run = progress.get("replicate-errors")
    assert run is not None and run.error == "foreign key violation on rental"
    assert run.later_errors == ("cannot drop inherited constraint",)
    progress.note_error("replicate-nobody", "x")
    assert redis_client().exists("pagila:run:replicate-nobody") == 0


def test_a_runs_end_is_published_once_to_who_follows_it() -> None:
    """The first terminal state is published on the run's channel (a follower wakes at once);
    a second ending changes nothing and publishes nothing."""
    from pagila_tasks.run.record import RunRecord, ended_channel

    client = redis_client()
    progress = RunRecord(client)
    progress.create("replicate-ends", "replicate", 60)
    follower = client.pubsub(ignore_subscribe_messages=True)
    follower.subscribe(ended_channel("replicate-ends"))
    assert follower.get_message(timeout=1.0) is None  # the subscription's confirmation
    assert progress.finish_once("replicate-ends", RunState.SUCCEEDED)
    message = follower.get_message(timeout=2.0)
    assert message is not None and message["data"] == b"succeeded"
    assert not progress.finish_once("replicate-ends", RunState.FAILED, "too late")
    assert follower.get_message(timeout=0.3) is None
    follower.close()
