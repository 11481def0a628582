"""A cap on the bytes per second a whole run reads from the source, shared by every worker.

One token bucket per run in Redis (``pagila:rate:<run_id>``): each worker takes the bytes it
is about to read in batches and sleeps for the debt the bucket answers, so the cap holds for
the run as a whole however many worker processes and hosts copy at once (a per-worker sleep
would multiply with the worker count). The bucket's clock is Redis's own (``TIME``): workers'
clocks may disagree. The achieved rate cannot run ahead of the cap by more than what the
bucket saved while nobody read (:data:`BURST_SECONDS`).
"""

from __future__ import annotations

import time
from typing import IO, Any

import redis

_TAKE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(burst, tokens + (now - last) * rate) - n
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 86400)
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
"""
"""Lua: refill the bucket for the time since its last use, take ``n`` bytes (a debt when it
runs dry) and answer the seconds the caller must wait for its bytes to be covered."""

BATCH_MAX = 256 * 1024
"""Bytes a worker takes from the bucket at once (less for low caps: a twentieth of a second)."""


BURST_SECONDS = 1.0
"""What the bucket may save while no copy reads (a worker writing to the target reads nothing):
one second's worth, so brief pauses do not pull the run's average under the cap. It starts
with one batch, never a full burst: over any span the run reads at most the cap's bytes plus
one second's worth saved in that span."""


def batch_for(rate: int) -> int:
    return max(4096, min(BATCH_MAX, rate // 20))


def bucket_key(run_id: str) -> str:
    return f"pagila:rate:{run_id}"


class Bucket:
    """The run's shared budget: :meth:`take` blocks until ``n`` bytes fit under the cap."""

    def __init__(self, client: redis.Redis, run_id: str, rate: int) -> None:
        self.key = bucket_key(run_id)
        self.rate = rate
        self.batch = batch_for(rate)
        self.burst = max(self.batch, int(rate * BURST_SECONDS))
        self._take = client.register_script(_TAKE)
        self.waited = 0.0

    def take(self, n: int) -> float:
        """Take ``n`` bytes; sleep for the debt. The seconds slept."""
        args = [self.rate, self.burst, n, self.batch]
        wait = float(self._take(keys=[self.key], args=args))
        if wait > 0:
            time.sleep(wait)
            self.waited += wait
        return wait


class Throttled:
    """A write-only file wrapper that takes its bytes from a :class:`Bucket` in batches, so a
    ``COPY ... TO STDOUT`` into it reads the source no faster than the run's cap."""

    def __init__(self, inner: IO[bytes], bucket: Bucket) -> None:
        self.inner = inner
        self.bucket = bucket
        self._owed = 0

    def write(self, data: Any) -> int:
        self._owed += len(data)
        if self._owed >= self.bucket.batch:
            self.bucket.take(self._owed)
            self._owed = 0
        return self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
