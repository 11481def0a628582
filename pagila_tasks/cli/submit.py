"""``pagila-submit``: trigger loads and replications, follow them, read their history.

Exit codes, for every subcommand: 0 done (a skipped load included), 1 the run failed, 2 usage or
configuration error, 3 another run holds the lock; 130 when Ctrl-C stops the *waiting* (the run
goes on).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import psycopg2
import redis

from pagila_tasks import audit, catalog, plan
from pagila_tasks.cli import render
from pagila_tasks.config import Settings, settings
from pagila_tasks.db import connection
from pagila_tasks.errors import ConfigError, LockHeld, PagilaError, UsageError
from pagila_tasks.lock import RunLock
from pagila_tasks.progress import TERMINAL, Progress

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Submitter:
    """Starts runs and waits for them; one per command invocation."""

    def __init__(self, s: Settings, as_json: bool) -> None:
        self.s = s
        self.as_json = as_json
        self.redis = redis.Redis.from_url(s.redis_url)
        self.lock = RunLock(self.redis, s.lock_ttl, s.lock_start_grace)
        self.progress = Progress(self.redis)

    def say(self, text: str) -> None:
        """Human lines go to stderr when --json owns stdout."""
        print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def start(self, kind: str, task: str, kwargs: dict[str, Any], **fields: Any) -> str:
        """Take the lock, record the run, send its first task; raises LockHeld."""
        from pagila_tasks.app import app

        run_id = f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.lock.acquire(run_id, kind)
        try:
            self.progress.create(run_id, kind, self.s.max_run_seconds, **fields)
            result = app.send_task(task, kwargs={"run_id": run_id, **kwargs})
            self.progress.add_task_ids(run_id, [result.id])
        except Exception:
            self.lock.release(run_id)
            raise
        return run_id

    def wait(self, run_id: str) -> dict[str, Any]:
        """Follow the run's progress record until it ends."""
        view = render.LiveView()
        while True:
            record = self.progress.get(run_id) or {
                "state": "failed",
                "error": "record lost",
                "units": {},
            }
            if not self.as_json:
                view.update(record)
            if record.get("state") in TERMINAL:
                return record
            time.sleep(0.1)


def _validate_tables(s: Settings, raw: str | None) -> list[str] | None:
    """Refuse an empty list or names that are not plain existing tables, before any lock."""
    requested = plan.parse_table_list(raw)
    if requested is not None:
        with connection(s.source_dsn, s, "pagila-submit") as conn, conn.cursor() as cur:
            catalog.select_tables(cur, s.schemas, requested)
    return requested


def _finish(sub: Submitter, record: dict[str, Any]) -> int:
    state = record.get("state")
    if sub.as_json:
        print(json.dumps(_summary(record), default=str))
    else:
        if record.get("kind") == "replicate":
            sub.say(render.replication_summary(record))
        elif record.get("result"):
            res = record["result"]
            if res.get("status") == "skipped":
                sub.say(f"load skipped: these files were already loaded at {res.get('loaded_at')}")
            else:
                counts = ", ".join(f"{k} {v}" for k, v in sorted(res.get("counts", {}).items()))
                sub.say(f"loaded in {res.get('duration_s')} s: {counts}")
        sub.say(
            f"run {record.get('run_id')}: {state}"
            + (f": {record['error']}" if record.get("error") and state != "succeeded" else "")
        )
    return EXIT_OK if state in ("succeeded", "skipped") else EXIT_FAILED


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "run_id",
        "kind",
        "state",
        "submitted_at",
        "started_at",
        "finished_at",
        "error",
        "result",
        "verification",
        "tables",
    )
    out = {k: record[k] for k in keys if k in record}
    out["units"] = record.get("units", {})
    return out


def _run_one(sub: Submitter, kind: str, args: argparse.Namespace) -> int:
    if kind == "load":
        run_id = sub.start("load", "pagila.load", {"force": bool(args.force)})
    else:
        tables = _validate_tables(sub.s, args.tables)
        run_id = sub.start("replicate", "pagila.replicate", {"tables": tables}, requested=tables)
    if args.no_wait:
        if sub.as_json:
            print(json.dumps({"run_id": run_id, "kind": kind, "state": "queued"}))
        else:
            sub.say(f"run {run_id} submitted; follow it with: pagila-submit status {run_id}")
        return EXIT_OK
    sub.say(f"run {run_id} ({kind}) started")
    try:
        record = sub.wait(run_id)
    except KeyboardInterrupt:
        sub.say(
            f"\nstopped waiting; run {run_id} goes on. Follow it: pagila-submit status {run_id}"
            f"; stop it: pagila-submit cancel {run_id}"
        )
        return EXIT_INTERRUPTED
    return _finish(sub, record)


def cmd_run(sub: Submitter, args: argparse.Namespace) -> int:
    """load, then replicate."""
    code = _run_one(sub, "load", args)
    if code != EXIT_OK or args.no_wait:
        return code
    return _run_one(sub, "replicate", args)


def cmd_status(sub: Submitter, args: argparse.Namespace) -> int:
    record = sub.progress.get(args.run_id)
    if record is None:
        raise UsageError(f"no run {args.run_id!r} in Redis")
    if sub.as_json:
        print(json.dumps(_summary(record), default=str))
    else:
        sub.say(
            f"run {args.run_id} ({record.get('kind')}): {record.get('state')}"
            + (f" since {record.get('started_at')}" if record.get("started_at") else "")
        )
        for name, u in sorted(record.get("units", {}).items()):
            sub.say("  " + render.unit_line(name, u))
        if record.get("kind") == "replicate" and record.get("state") in TERMINAL:
            sub.say(render.replication_summary(record))
        if record.get("error"):
            sub.say(f"error: {record['error']}")
    return EXIT_OK


def cmd_history(sub: Submitter, args: argparse.Namespace) -> int:
    s = sub.s
    runs = [sub.progress.get(r) for r in sub.progress.recent(args.limit)]
    runs = [_summary(r) for r in runs if r]
    loads = audit.history(s, "load", args.limit)
    reps = audit.history(s, "replication", args.limit)
    if sub.as_json:
        print(
            json.dumps({"runs": runs, "load_audit": loads, "replication_audit": reps}, default=str)
        )
        return EXIT_OK
    sub.say("recent runs (Redis):")
    sub.say(
        render.table(
            ["run_id", "kind", "state", "submitted", "finished"],
            [
                [
                    r["run_id"],
                    r["kind"],
                    r["state"],
                    r.get("submitted_at", ""),
                    r.get("finished_at", ""),
                ]
                for r in runs
            ],
        )
    )
    sub.say("\nload ledger (source pagila_support.pagila_load_audit):")
    sub.say(
        render.table(
            ["id", "loaded_at", "run_id", "ok", "seconds", "rental", "error"],
            [
                [
                    r.get("id"),
                    r.get("loaded_at"),
                    r.get("run_id"),
                    r.get("succeeded"),
                    r.get("duration_s"),
                    r.get("rental_count"),
                    (r.get("error") or "")[:60],
                ]
                for r in loads
            ],
        )
    )
    sub.say("\nreplication ledger (target pagila_support.replication_audit):")
    sub.say(
        render.table(
            ["run_id", "finished_at", "ok", "tables", "rows", "error"],
            [
                [
                    r.get("run_id"),
                    r.get("finished_at"),
                    r.get("succeeded"),
                    r.get("tables"),
                    r.get("rows"),
                    (r.get("error") or "")[:60],
                ]
                for r in reps
            ],
        )
    )
    return EXIT_OK


def cmd_cancel(sub: Submitter, args: argparse.Namespace) -> int:
    """Revoke the run's queued tasks and let the errback record the cancellation."""
    from pagila_tasks.app import app

    record = sub.progress.get(args.run_id)
    if record is None:
        raise UsageError(f"no run {args.run_id!r} in Redis")
    if record.get("state") in TERMINAL:
        sub.say(f"run {args.run_id} already {record['state']}")
        return EXIT_OK
    # Only the flag: rewriting the state here could undo a finish that lands meanwhile.
    sub.progress.request_cancel(args.run_id)
    ids = sub.progress.task_ids(args.run_id)
    if ids:
        app.control.revoke(ids, terminate=record.get("kind") == "load", signal="SIGTERM")
    if record.get("kind") == "replicate":
        app.send_task(
            "pagila.fail_replication",
            kwargs={"run_id": args.run_id, "reason": "cancelled by request"},
        )
    else:
        sub.progress.finish_once(args.run_id, "cancelled", "cancelled by request")
        sub.lock.release(args.run_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = sub.progress.get(args.run_id) or {}
        if record.get("state") in TERMINAL:
            break
        time.sleep(0.3)
    state = record.get("state")
    if sub.as_json:
        print(json.dumps({"run_id": args.run_id, "state": state, "revoked": len(ids)}))
    else:
        sub.say(f"run {args.run_id}: {state} ({len(ids)} task ids revoked)")
    return EXIT_OK if state in TERMINAL else EXIT_FAILED


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {raw!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pagila-submit", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
        return sp

    for name, help_ in (
        ("load", "load Pagila into the source"),
        ("replicate", "replicate the source into the target"),
        ("run", "load, then replicate"),
    ):
        sp = common(sub.add_parser(name, help=help_))
        sp.add_argument("--no-wait", action="store_true", help="submit and return at once")
        if name in ("load", "run"):
            sp.add_argument("--force", action="store_true", help="load even if already loaded")
        if name in ("replicate", "run"):
            sp.add_argument("--tables", help="comma-separated tables (default: all)")
    sp = common(sub.add_parser("status", help="show one run"))
    sp.add_argument("run_id")
    sp = common(sub.add_parser("history", help="recent runs and both audit ledgers"))
    sp.add_argument("--limit", type=_positive_int, default=10, help="rows per list (1+)")
    sp = common(sub.add_parser("cancel", help="cancel a run"))
    sp.add_argument("run_id")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pagila-submit``."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        s = settings()
    except ConfigError as exc:
        print(f"pagila-submit: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sub = Submitter(s, args.json)
    handlers = {
        "load": lambda: _run_one(sub, "load", args),
        "replicate": lambda: _run_one(sub, "replicate", args),
        "run": lambda: cmd_run(sub, args),
        "status": lambda: cmd_status(sub, args),
        "history": lambda: cmd_history(sub, args),
        "cancel": lambda: cmd_cancel(sub, args),
    }
    try:
        return handlers[args.command]()
    except LockHeld as exc:
        print(f"pagila-submit: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"state": "locked", "holder": exc.holder}))
        return EXIT_LOCKED
    except UsageError as exc:
        print(f"pagila-submit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PagilaError, redis.RedisError, psycopg2.Error) as exc:
        print(f"pagila-submit: {s.scrub(str(exc).strip())}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
