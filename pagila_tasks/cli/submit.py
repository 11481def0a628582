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
from typing import Any

import psycopg2
import redis
from kombu.exceptions import OperationalError

from pagila_tasks.base.errors import ConfigError, LockHeld, PagilaError, UsageError, one_line
from pagila_tasks.cli import render
from pagila_tasks.cli.submitter import Submitter
from pagila_tasks.config import Settings, mask_dsn, parse_schemas, settings
from pagila_tasks.pg import support
from pagila_tasks.run import plan
from pagila_tasks.run.progress import TERMINAL

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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
                if res.get("reset_dropped"):
                    dropped = ", ".join(res["reset_dropped"])
                    sub.say(f"--force-reset dropped: {render.printable(dropped)}")
        if record.get("kind") == "replicate" and (line := render.target_line(record)):
            sub.say(line)
        error = record.get("error") if state != "succeeded" else None
        sub.say(
            f"run {record.get('run_id')}: {state}"
            + (f": {render.printable(str(error))}" if error else "")
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
        "seen",
        "options",
        "target_state",
        "switched_at",
        "switch_ms",
        "later_errors",
    )
    out = {k: record[k] for k in keys if k in record}
    out["units"] = record.get("units", {})
    return out


def options(s: Settings, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """A run's options, which travel with it: the flags, else the submitter's own variables
    (``PAGILA_SCHEMAS``, ``PAGILA_SQL_DIR``, ``PAGILA_OVERWRITE_TARGET``,
    ``PAGILA_FORCE_RESET``) when it set them; left unset, the workers' settings apply."""
    if kind == "load":
        if args.sql_dir is not None and not args.sql_dir.strip():
            raise UsageError("--sql-dir is empty; name a folder on the workers, or leave it out")
        sql_dir = args.sql_dir or (str(s.sql_dir) if "PAGILA_SQL_DIR" in s.given else None)
        force_reset = args.force_reset or (s.force_reset and "PAGILA_FORCE_RESET" in s.given)
        return {"force": bool(args.force), "sql_dir": sql_dir, "force_reset": bool(force_reset)}
    if args.schemas is not None:
        schemas: list[str] | None = list(parse_schemas(args.schemas, "--schemas"))
    else:
        schemas = list(s.schemas) if "PAGILA_SCHEMAS" in s.given else None
    overwrite = args.overwrite_target or (
        s.overwrite_target and "PAGILA_OVERWRITE_TARGET" in s.given
    )
    drop = args.drop_dependents or (s.drop_dependents and "PAGILA_DROP_DEPENDENTS" in s.given)
    return {
        "tables": plan.parse_table_list(args.tables),
        "schemas": schemas,
        "overwrite": bool(overwrite),
        "drop_dependents": bool(drop),
    }


def _run_one(sub: Submitter, kind: str, args: argparse.Namespace) -> int:
    run_options = options(sub.s, kind, args)
    run_id = sub.start(kind, run_options)
    if args.no_wait:
        if sub.as_json:
            print(json.dumps({"run_id": run_id, "kind": kind, "state": "queued"}))
        else:
            sub.say(f"follow it with: pagila-submit status {run_id}")
        return EXIT_OK
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
        sub.say("  " + render.facts(str(record.get("kind")), record.get("seen")))
        for name, u in sorted(record.get("units", {}).items()):
            sub.say("  " + render.unit_line(name, u))
        if record.get("kind") == "replicate" and record.get("state") in TERMINAL:
            sub.say(render.replication_summary(record))
            if line := render.target_line(record):
                sub.say(line)
        if record.get("error"):
            sub.say(f"error: {render.printable(str(record['error']))}")
    return EXIT_OK


HISTORY_MAX = 1000
"""The most rows ``history --limit`` lists (Redis keeps the recent run ids; ledgers grow)."""


def history_limit(raw: str) -> int:
    """``--limit``: a whole number from 1 to :data:`HISTORY_MAX`, else one usage line."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= HISTORY_MAX:
        raise UsageError(f"--limit must be a whole number from 1 to {HISTORY_MAX}, got {raw!r}")
    return value


def cmd_history(sub: Submitter, args: argparse.Namespace) -> int:
    s = sub.s
    args.limit = history_limit(args.limit)
    runs = [sub.progress.get(r) for r in sub.progress.recent(args.limit)]
    runs = [_summary(r) for r in runs if r]
    loads = support.history(s, "load", args.limit)
    reps = support.history(s, "replication", args.limit)
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
    """Cancel a run: one that has not started ends here and now (no worker needed, and its
    first task, delivered later, is refused); a running one is stopped by its errback."""
    from pagila_tasks.app import app

    record = sub.progress.get(args.run_id)
    if record is None:
        raise UsageError(f"no run {args.run_id!r} in Redis")
    if record.get("state") in TERMINAL:
        sub.say(f"run {args.run_id} already {record['state']}")
        return EXIT_OK
    # Only the flag first: every task checks it before it touches anything.
    sub.progress.request_cancel(args.run_id)
    ids = sub.progress.task_ids(args.run_id)
    if ids:
        app.control.revoke(ids, terminate=record.get("kind") == "load", signal="SIGTERM")
    record = sub.progress.get(args.run_id) or record
    if record.get("state") == "queued" or record.get("kind") == "load":
        what = "before it started" if record.get("state") == "queued" else "while loading"
        sub.progress.finish_once(args.run_id, "cancelled", f"cancelled by request {what}")
        sub.lock.release(args.run_id)
    elif record.get("state") not in TERMINAL:
        app.send_task(
            "pagila.fail_replication",
            kwargs={"run_id": args.run_id, "reason": "cancelled by request"},
        )
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
            sp.add_argument(
                "--force-reset",
                action="store_true",
                help="reset the source's public schema even though it holds objects no load of "
                "this project created, or objects elsewhere depend on it (they are dropped)",
            )
            sp.add_argument(
                "--sql-dir",
                help="folder of the two Pagila files, on the workers (default: PAGILA_SQL_DIR "
                "if set here, else the workers' own)",
            )
        if name in ("replicate", "run"):
            sp.add_argument(
                "--tables",
                help='comma-separated [schema.]tables, "quoted" as needed (default: all)',
            )
            sp.add_argument(
                "--schemas",
                help='comma-separated exact schema names, "quoted" as needed (default: '
                "PAGILA_SCHEMAS if set here, else the workers' own)",
            )
            sp.add_argument(
                "--overwrite-target",
                action="store_true",
                help="replace the target's schemas even though it was never a replica",
            )
            sp.add_argument(
                "--drop-dependents",
                action="store_true",
                help="let go what the target's users built that the run cannot keep (named "
                "when refused without it)",
            )
    sp = common(sub.add_parser("status", help="show one run"))
    sp.add_argument("run_id")
    sp = common(sub.add_parser("history", help="recent runs and both audit ledgers"))
    sp.add_argument("--limit", default="10", help=f"rows per list (1 to {HISTORY_MAX})")
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
        print(f"pagila-submit: {render.printable(s.scrub(str(exc)))}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"pagila-submit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (redis.AuthenticationError, redis.ConnectionError, OperationalError) as exc:
        where = mask_dsn(s.redis_url)
        print(f"pagila-submit: cannot use Redis at {where}: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (PagilaError, redis.RedisError, psycopg2.Error) as exc:
        print(f"pagila-submit: {s.scrub(' '.join(str(exc).split()))}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
