"""``pagila-submit``: trigger loads and replications, follow them, read their history.

Exit codes, for every subcommand: 0 done (a skipped load included), 1 the run failed, 2 usage or
configuration error, 3 another run holds the lock; 130 when Ctrl-C stops the *waiting* (the run
goes on).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import psycopg2
import redis
from kombu.exceptions import OperationalError

from pagila_tasks.base.errors import ConfigError, LockHeld, PagilaError, UsageError, one_line
from pagila_tasks.cli import render
from pagila_tasks.cli.submitter import Submitter
from pagila_tasks.config import Settings, mask_dsn, parse_rate, parse_schemas, settings
from pagila_tasks.pg import support
from pagila_tasks.run import eta, lifecycle, metrics, plan
from pagila_tasks.run.model import LoadOptions, ReplicateOptions, Run, RunOptions, RunState

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def summary(run: Run) -> dict[str, Any]:
    """A run as ``--json`` prints it: its record's summary and its copies' progress."""
    progress = eta.progress(run, time.time())
    return run.summary() | ({"progress": progress.as_json()} if progress else {})


def _finish(sub: Submitter, run: Run) -> int:
    if sub.as_json:
        print(json.dumps(summary(run), default=str))
    else:
        if run.kind == "replicate":
            sub.say(render.replication_summary(run))
        elif run.result:
            sub.say(_load_line(run.result))
        if run.kind == "replicate" and (line := render.target_line(run)):
            sub.say(line)
        error = run.error if run.state != RunState.SUCCEEDED else None
        sub.say(
            f"run {run.run_id}: {run.state}"
            + (f": {render.printable(str(error))}" if error else "")
        )
    return EXIT_OK if run.state in (RunState.SUCCEEDED, RunState.SKIPPED) else EXIT_FAILED


def _load_line(res: dict[str, Any]) -> str:
    """What a load did, from its result (:meth:`pagila_tasks.load.loader.LoadResult.as_dict`)."""
    if res.get("status") == "skipped":
        return f"load skipped: these files were already loaded at {res.get('loaded_at')}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(res.get("counts", {}).items()))
    line = f"loaded in {res.get('duration_s')} s: {counts}"
    if res.get("reset_dropped"):
        dropped = ", ".join(res["reset_dropped"])
        line += f"\n--force-reset dropped: {render.printable(dropped)}"
    return line


def options(s: Settings, kind: str, args: argparse.Namespace) -> RunOptions:
    """A run's options, which travel with it: the flags, else the submitter's own variables
    (``PAGILA_SCHEMAS``, ``PAGILA_SQL_DIR``, ``PAGILA_OVERWRITE_TARGET``,
    ``PAGILA_FORCE_RESET``, ``PAGILA_DROP_DEPENDENTS``) when it set them; left unset, the
    workers' settings apply (:meth:`ReplicateOptions.resolve`, on the workers)."""
    if kind == "load":
        if args.sql_dir is not None and not args.sql_dir.strip():
            raise UsageError("--sql-dir is empty; name a folder on the workers, or leave it out")
        sql_dir = args.sql_dir or (str(s.sql_dir) if "PAGILA_SQL_DIR" in s.given else None)
        force_reset = args.force_reset or (s.force_reset and "PAGILA_FORCE_RESET" in s.given)
        return LoadOptions(bool(args.force), sql_dir, bool(force_reset))
    if args.schemas is not None:
        schemas: tuple[str, ...] | None = parse_schemas(args.schemas, "--schemas")
    else:
        schemas = s.schemas if "PAGILA_SCHEMAS" in s.given else None
    overwrite = args.overwrite_target or (
        s.overwrite_target and "PAGILA_OVERWRITE_TARGET" in s.given
    )
    drop = args.drop_dependents or (s.drop_dependents and "PAGILA_DROP_DEPENDENTS" in s.given)
    tables = plan.parse_table_list(args.tables)
    listed = tuple(tables) if tables is not None else None
    rate = parse_rate(args.max_rate) if args.max_rate is not None else s.max_rate
    return ReplicateOptions(listed, schemas, bool(overwrite), bool(drop), bool(args.full), rate)


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
        run = sub.wait(run_id)
    except KeyboardInterrupt:
        sub.say(
            f"\nstopped waiting; run {run_id} goes on. Follow it: pagila-submit status {run_id}"
            f"; stop it: pagila-submit cancel {run_id}"
        )
        return EXIT_INTERRUPTED
    return _finish(sub, run)


def cmd_run(sub: Submitter, args: argparse.Namespace) -> int:
    """load, then replicate."""
    code = _run_one(sub, "load", args)
    if code != EXIT_OK or args.no_wait:
        return code
    return _run_one(sub, "replicate", args)


def cmd_status(sub: Submitter, args: argparse.Namespace) -> int:
    run = sub.current(args.run_id)
    if run is None:
        raise UsageError(f"no run {args.run_id!r} in Redis")
    if sub.as_json:
        print(json.dumps(summary(run), default=str))
        return EXIT_OK
    since = f" since {run.started_at}" if run.started_at else ""
    sub.say(f"run {args.run_id} ({run.kind}): {run.state}{since}")
    sub.say("  " + render.facts(run.kind, run.seen))
    if line := render.plan_line(run):
        sub.say("  " + line)
    if (progress := eta.progress(run, time.time())) is not None and progress.units:
        sub.say("  progress: " + render.progress_line(progress))
    for name, u in sorted(run.units.items()):
        sub.say("  " + render.unit_line(name, u))
    if run.kind == "replicate" and run.state.terminal:
        sub.say(render.replication_summary(run))
        if line := render.target_line(run):
            sub.say(line)
    if run.error:
        sub.say(f"error: {render.printable(str(run.error))}")
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
    found = [sub.current(r) for r in sub.record.recent(args.limit)]
    runs = [r.summary() for r in found if r]
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
    sub.say(f"\nload ledger (source {support.LEDGERS['load']}):")
    load_cols = ["id", "loaded_at", "run_id", "succeeded", "duration_s", "rental_count", "error"]
    sub.say(
        _ledger(["id", "loaded_at", "run_id", "ok", "seconds", "rental", "error"], load_cols, loads)
    )
    sub.say(f"\nreplication ledger (target {support.LEDGERS['replication']}):")
    rep_cols = ["run_id", "finished_at", "succeeded", "tables", "rows", "error"]
    sub.say(_ledger(["run_id", "finished_at", "ok", "tables", "rows", "error"], rep_cols, reps))
    return EXIT_OK


def _ledger(header: list[str], columns: list[str], rows: list[dict[str, Any]]) -> str:
    """Ledger rows as a text table; the error column cut to 60 characters."""
    cells = [[(r.get(c) or "")[:60] if c == "error" else r.get(c) for c in columns] for r in rows]
    return render.table(header, cells)


def cmd_cancel(sub: Submitter, args: argparse.Namespace) -> int:
    """Cancel a run (see :func:`pagila_tasks.run.lifecycle.cancel`) and wait for it to end."""
    run = sub.current(args.run_id)
    if run is None:
        raise UsageError(f"no run {args.run_id!r} in Redis")
    if run.state.terminal:
        sub.say(f"run {args.run_id} already {run.state}")
        return EXIT_OK
    revoked = lifecycle.cancel(sub.ctx, args.run_id, sub.revoke, sub.send)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not run.state.terminal:
        time.sleep(0.3)
        run = sub.current(args.run_id) or run
    if sub.as_json:
        print(json.dumps({"run_id": args.run_id, "state": str(run.state), "revoked": revoked}))
    else:
        sub.say(f"run {args.run_id}: {run.state} ({revoked} task ids revoked)")
    return EXIT_OK if run.state.terminal else EXIT_FAILED


def cmd_report(sub: Submitter, args: argparse.Namespace) -> int:
    """One run's report (:mod:`pagila_tasks.cli.report`): plain text, or with ``--html`` one
    self-contained page written to FILE."""
    from pagila_tasks.cli import report  # plotly: loaded only for this command

    run = sub.current(args.run_id)
    if run is None:
        raise UsageError(f"no run {args.run_id!r} in Redis")
    if args.html is None:
        sub.say(report.text(run))
        return EXIT_OK
    page = report.page(run, support.history(sub.s, "replication", report.HISTORY_RUNS))
    try:
        with open(args.html, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        raise UsageError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    sub.say(f"report of run {run.run_id} written to {args.html}")
    return EXIT_OK


def cmd_metrics(sub: Submitter, args: argparse.Namespace) -> int:
    """The target's replication ledger as Prometheus text (:mod:`pagila_tasks.run.metrics`):
    on stdout, or written atomically to ``--textfile`` for node_exporter."""
    data = metrics.current(sub.s)
    if args.textfile is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    try:
        metrics.write(Path(args.textfile), data)
    except OSError as exc:
        raise UsageError(f"cannot write {args.textfile}: {exc.strerror or exc}") from None
    return EXIT_OK


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
            sp.add_argument(
                "--full",
                action="store_true",
                help="copy every table, without first proving the live copy already equal to "
                "the source (a proven one is kept as it is)",
            )
            sp.add_argument(
                "--max-rate",
                metavar="RATE",
                help="cap the bytes per second the whole run reads from the source, across "
                "all workers (e.g. 20MB/s, 500kB/s; default: PAGILA_MAX_RATE if set here, "
                "else no cap)",
            )
    sp = common(sub.add_parser("status", help="show one run"))
    sp.add_argument("run_id")
    sp = common(sub.add_parser("history", help="recent runs and both audit ledgers"))
    sp.add_argument("--limit", default="10", help=f"rows per list (1 to {HISTORY_MAX})")
    sp = common(sub.add_parser("cancel", help="cancel a run"))
    sp.add_argument("run_id")
    sp = sub.add_parser("report", help="one run as text, or as a self-contained HTML page")
    sp.set_defaults(json=False)
    sp.add_argument("run_id")
    sp.add_argument(
        "--html",
        metavar="FILE",
        help="write the page (timeline by worker process, slowest units, the ledger's last "
        "runs) to FILE",
    )
    sp = sub.add_parser("metrics", help="the replication ledger as Prometheus text")
    sp.set_defaults(json=False)
    sp.add_argument(
        "--textfile",
        metavar="PATH",
        help="write it atomically to PATH (for node_exporter's textfile collector, a *.prom "
        "file in its --collector.textfile.directory) instead of stdout",
    )
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
        "report": lambda: cmd_report(sub, args),
        "metrics": lambda: cmd_metrics(sub, args),
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


def entry() -> NoReturn:
    """The console script: :func:`main`, its output flushed, then out without the interpreter's
    teardown of the modules Celery, Kombu and redis-py load (measured at 0.1-0.15 s, most of a
    short run's wait after its end). Nothing of ours is left to run: the run is in the workers,
    no thread is running, and sockets are closed by the exit itself."""
    code = main()
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a reader that went away (``| head``): as Python reports it
        code = code or 120
    os._exit(code)


if __name__ == "__main__":
    entry()
