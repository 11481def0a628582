"""What ``pagila-submit`` does for one run: check it can be served, have a worker check it,
start it, follow it.

Before the lock is taken, a run must find a live consumer on every queue it needs (Celery's
``inspect active_queues``) and pass the workers' checks (``pagila.preflight``); either refusal
is one line and exit status 2, with nothing recorded, locked or started. The checks are sent
first and the consumers looked for while a worker answers them (each costs a round trip of a
few tens of milliseconds, ahead of every run); checks nobody answered expire unrun.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from pagila_tasks.base.errors import UsageError
from pagila_tasks.cli import render
from pagila_tasks.config import Settings
from pagila_tasks.run import lifecycle, record, shadow
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import Run, RunOptions, RunState

QUEUES = {"load": ("control",), "replicate": ("control", "copy")}
"""The queues each kind of run needs a consumer on."""
INSPECT_TIMEOUT = 1.5
"""Seconds to wait for workers to say which queues they consume."""
PREFLIGHT_TIMEOUT = 60.0
"""Seconds to wait for a worker's checks (it connects to both servers, bounded by
``PAGILA_CONNECT_TIMEOUT`` each)."""
STALL_WARNING_SECONDS = 10.0
"""A unit queued this long with no consumer on its queue gets one warning line."""
POLL_SECONDS = 0.2
"""How often the run's record is read while following it (the live view's pace). Its end is
not waited for: it is published (:func:`record.ended_channel`), and the follower wakes at once.
Each read decodes the whole record: at 0.05 s the follower took 1.6 s of CPU in a 22 s run on
two cores (x100), CPU the run's servers then lacked."""
JSON_POLL_SECONDS = 1.0
"""The same with ``--json``: no view to redraw, only the deadline and the stall warning."""


def _app() -> Any:
    from pagila_tasks.app import app

    return app


class _Enough(Exception):
    """Every queue asked about has a consumer: stop waiting for more workers to answer."""


def consumers(needed: tuple[str, ...] = (), timeout: float = INSPECT_TIMEOUT) -> set[str]:
    """The queues some live worker consumes now (Celery's ``active_queues`` broadcast).

    A broadcast cannot know how many workers will answer, so it waits its whole timeout;
    once the answers cover every queue in ``needed``, there is nothing left to wait for.
    """
    seen: set[str] = set()

    def on_reply(reply: dict[str, Any]) -> None:
        for queues in reply.values():
            seen.update(q["name"] for q in queues or [])
        if needed and set(needed) <= seen:
            raise _Enough

    with contextlib.suppress(_Enough):
        _app().control.broadcast("active_queues", reply=True, timeout=timeout, callback=on_reply)
    return seen


def start_command(queue: str) -> str:
    return f"celery -A pagila_tasks worker -Q {queue} (or `celery -A pagila_tasks worker` for all)"


class Submitter:
    """Starts runs and waits for them; one per command invocation."""

    def __init__(self, s: Settings, as_json: bool) -> None:
        self.s = s
        self.as_json = as_json
        self.ctx = Context(s)
        self.redis = self.ctx.redis
        self.lock = self.ctx.lock
        self.record = self.ctx.record

    def say(self, text: str) -> None:
        """Human lines go to stderr when --json owns stdout."""
        print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def require_consumers(self, kind: str) -> None:
        """Refuse a run some queue of which has no live consumer (it would wait forever)."""
        live = consumers(QUEUES[kind])
        for queue in QUEUES[kind]:
            if queue not in live:
                raise UsageError(
                    f"no worker consumes the {queue} queue; start one with: {start_command(queue)}"
                )

    def check(self, kind: str, options: RunOptions) -> dict[str, Any]:
        """The workers' checks of the run (see :mod:`pagila_tasks.submission.preflight`), once
        every queue the run needs has a live consumer (looked for while a worker checks)."""
        from celery.exceptions import TimeoutError as NoAnswer

        kwargs = {"kind": kind, "options": options.as_kwargs()}
        result = _app().send_task("pagila.preflight", kwargs=kwargs, expires=PREFLIGHT_TIMEOUT)
        try:
            self.require_consumers(kind)
            return dict(result.get(timeout=PREFLIGHT_TIMEOUT, propagate=True))
        except NoAnswer:
            raise UsageError(
                f"no worker answered the checks within {PREFLIGHT_TIMEOUT:.0f} s"
            ) from None
        except UsageError:
            raise
        except Exception as exc:  # a worker-side error: one line, what the worker said
            raise UsageError(" ".join(str(exc).split()) or type(exc).__name__) from None
        finally:
            result.forget()

    def start(self, kind: str, options: RunOptions) -> str:
        """Check, take the lock, record, send (see :func:`pagila_tasks.run.lifecycle.start`)."""
        seen = self.check(kind, options)
        run_id = lifecycle.start(self.ctx, kind, options, self.send, seen)
        self.say(render.started_line(run_id, kind, seen))
        return run_id

    @staticmethod
    def send(name: str, kwargs: dict[str, Any]) -> str:
        """Send one task by its wire name; its id."""
        return str(_app().send_task(name, kwargs=kwargs, shadow=shadow.for_task(name, kwargs)).id)

    @staticmethod
    def revoke(ids: list[str], terminate: bool) -> None:
        """Revoke tasks still queued (and, ``terminate``, stop one that runs)."""
        _app().control.revoke(ids, terminate=terminate, signal="SIGTERM")

    def current(self, run_id: str) -> Run | None:
        """The run now, ended first if it is past its deadline (see :func:`lifecycle.settle`)."""
        return lifecycle.current(self.ctx, run_id)

    def wait(self, run_id: str) -> Run:
        """Follow the run's record until it ends; warn once about a starved queue."""
        view = render.LiveView()
        try:
            return self._follow(run_id, view)
        finally:
            view.close()

    def _follow(self, run_id: str, view: render.LiveView) -> Run:
        with contextlib.closing(self.redis.pubsub(ignore_subscribe_messages=True)) as ended:
            ended.subscribe(record.ended_channel(run_id))  # before the first read: none missed
            return self._follow_until(run_id, view, ended)

    def _follow_until(self, run_id: str, view: render.LiveView, ended: Any) -> Run:
        since = time.monotonic()
        warned = False
        while True:
            run = self.current(run_id) or Run(
                run_id, "?", RunState.FAILED, error="the run record was lost from Redis"
            )
            if not self.as_json:
                view.update(run)
            if run.state.terminal:
                return run
            units = run.units.values()
            busy = any(u.state != "queued" for u in units)
            if busy or not units:
                since = time.monotonic()
            elif (
                not warned
                and time.monotonic() - since > STALL_WARNING_SECONDS
                and "copy" not in consumers(("copy",))
            ):
                warned = True
                print(
                    f"warning: units of run {run_id} are queued and no worker consumes the "
                    f"copy queue; start one with: {start_command('copy')}",
                    file=sys.stderr,
                    flush=True,
                )
            pace = JSON_POLL_SECONDS if self.as_json else POLL_SECONDS
            ended.get_message(timeout=pace)  # the run's end, or the next read
