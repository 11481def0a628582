"""The Pagila load into the source: fingerprint, skip or reset, apply, stream, check, verify, audit.

Everything from the reset of ``public`` to the success row in the ledger runs in one
transaction, so a failure anywhere leaves the source exactly as it was and a load reported as
loaded is one that committed. A failed load's row is written once per run, when its task finally
fails (:func:`record_failure`), in a transaction of its own after the rollback: "failed" in the
ledger always means "rolled back".
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.base.errors import FinalError, InputError, PagilaError, one_line
from pagila_tasks.config import SUPPORT_SCHEMA, Settings
from pagila_tasks.load import ownership, pagila_files
from pagila_tasks.load.pagila_files import PagilaFiles
from pagila_tasks.load.sqlscript import (
    LOADED_SCHEMA,
    NOT_IN_DATA,
    CopyBlock,
    Statement,
    data_only,
    parse_file,
    schema_only,
    setval_sequence,
)
from pagila_tasks.pg import sqlfiles, support
from pagila_tasks.pg.db import connect, connection
from pagila_tasks.replication import catalog
from pagila_tasks.run import guard, lifecycle
from pagila_tasks.run.context import Context
from pagila_tasks.run.lock import Heartbeat
from pagila_tasks.run.model import LoadOptions, Run, RunState

log = logging.getLogger(__name__)

_OWNER_TO = re.compile(r"\bOWNER\s+TO\s+(\"(?:[^\"]|\"\")+\"|\w+)\s*;?\s*$", re.IGNORECASE)
AUDITED = ("actor", "film", "customer", "rental")


@dataclass
class LoadResult:
    """What a load did: JSON-friendly, no secrets."""

    run_id: str
    status: str  # "loaded" | "skipped" | "failed"
    schema_sha256: str | None
    data_sha256: str | None
    counts: dict[str, int] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    skipped_ownership: int = 0
    reset_dropped: list[str] = field(default_factory=list)
    loaded_at: str | None = None
    duration_s: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def ledger_row(self) -> dict[str, Any]:
        """The load ledger row that records this result (see :func:`support.insert_load`)."""
        return {
            "schema_sha256": self.schema_sha256,
            "data_sha256": self.data_sha256,
            **{name: self.counts.get(name) for name in AUDITED},
            "succeeded": self.status == "loaded",
            "run_id": self.run_id,
            "duration": self.duration_s,
            "error": self.error,
            "table_counts": json.dumps(self.counts) if self.counts else None,
        }


class _Applier:
    """Runs one file's statements and COPY blocks on a cursor, inside the caller's transaction.

    A data file (``data_file``) is held to what a data file may hold (:func:`sqlscript.data_only`:
    COPY into the pinned tables, ``setval`` of the loaded schema's sequences, a few ``SET``s); a
    schema file to what the load's transaction allows (:func:`sqlscript.schema_only`). Each
    parsed statement runs alone, and after each the session must still be in the load's
    transaction, reading the file as the parser did (``standard_conforming_strings``).
    """

    def __init__(
        self, cur: psycopg2.extensions.cursor, path: Path, data_file: bool = False
    ) -> None:
        self.cur = cur
        self.path = path
        self.data_file = data_file
        self.rows: dict[tuple[str, str], int] = {}
        self.sequences_set: set[str] = set()
        self.skipped_ownership = 0
        self._may_own: dict[str, bool] = {}

    def may_own_as(self, role: str) -> bool:
        """True when this login may give objects to ``role`` (it exists and we are a member).

        We never create a role: a missing ``postgres`` role (or one we may not act as) means
        the ownership statement is skipped and the objects stay owned by the loading user.
        """
        if role not in self._may_own:
            self.cur.execute(sqlfiles.query("role_may_own"), {"role": role})
            self._may_own[role] = bool(self.cur.fetchone()[0])
        return self._may_own[role]

    def statement(self, stmt: Statement) -> None:
        if self.data_file and (sequence := setval_sequence(stmt)) is not None:
            self._only_loaded_sequence(sequence, stmt.line)
        owner = _OWNER_TO.search(stmt.text)
        if owner:
            role = owner.group(1)
            role = role[1:-1].replace('""', '"') if role.startswith('"') else role.lower()
            if not self.may_own_as(role):
                self.skipped_ownership += 1
                return
        self._run(stmt.text, stmt.line)

    def copy(self, block: CopyBlock) -> None:
        try:
            self.cur.copy_expert(block.statement.text, block, size=65536)
        except psycopg2.Error as exc:
            raise _located(exc, self.path, block.line, block) from None
        self._still_in_the_load(block.line)
        self.rows[names.split_sql(block.table)] = block.rows

    def _only_loaded_sequence(self, name: str, line: int) -> None:
        """A data file sets only sequences of the loaded schema: a ``setval`` elsewhere (the
        ledgers' schema, another application's schema) would outlive the rollback
        (sequences are not transactional). A name that resolves to nothing runs, and fails."""
        self._run(sqlfiles.query("relation_schema"), line, {"name": name})
        row = self.cur.fetchone()
        if row is None:
            return
        if row[0] != LOADED_SCHEMA or row[2] != "S":
            where = f"is in {SUPPORT_SCHEMA}, the ledger's" if row[0] == SUPPORT_SCHEMA else ""
            where = where or f"is not a sequence of {LOADED_SCHEMA}"
            raise InputError(str(self.path), line, f"{NOT_IN_DATA} ({name[:80]} {where})")
        self.sequences_set.add(names.display(row[0], row[1]))

    def _run(self, text: str, line: int, params: dict[str, Any] | None = None) -> None:
        try:
            self.cur.execute(text, params)
        except psycopg2.Error as exc:
            raise _located(exc, self.path, line, None) from None
        self._still_in_the_load(line)

    def _still_in_the_load(self, line: int) -> None:
        """After each statement: still inside the load's transaction, and the server still reads
        the file as the parser did (quotes, encoding). Client-side facts (no round trip)."""
        conn = self.cur.connection
        if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
            raise InputError(str(self.path), line, "the load's transaction ended here; refused")
        if conn.get_parameter_status("standard_conforming_strings") != "on":
            raise InputError(
                str(self.path), line, "standard_conforming_strings is no longer on; refused"
            )
        if conn.get_parameter_status("client_encoding") != "UTF8":
            raise InputError(str(self.path), line, "client_encoding is no longer UTF8; refused")

    def apply(self, path: Path, on_block: Callable[[CopyBlock], None] | None = None) -> None:
        items = parse_file(path)
        if self.data_file:
            items = data_only(items, str(path), pagila_files.PINNED_COPY_TABLES)
        else:
            items = schema_only(items, str(path))
        for item in items:
            if isinstance(item, CopyBlock):
                self.copy(item)
                if on_block:
                    on_block(item)
            else:
                self.statement(item)


def _located(exc: psycopg2.Error, path: Path, line: int, block: CopyBlock | None) -> InputError:
    """Turn a server error into an :class:`InputError` naming the file and the line."""
    message = (exc.diag.message_primary or str(exc)).strip()
    if block is not None:
        context = exc.diag.context or ""
        m = re.search(r"line (\d+)", context)
        where = line + int(m.group(1)) if m else line
        return InputError(str(path), where, f"COPY into {block.table} failed: {message}")
    return InputError(str(path), line, f"statement failed: {message}")


def _verify(cur: psycopg2.extensions.cursor, rows: dict[tuple[str, str], int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (schema, table), expected in rows.items():
        cur.execute(
            sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
        got = cur.fetchone()[0]
        if got != expected:
            raise PagilaError(
                f"{schema}.{table} holds {got} rows, its COPY block carried {expected}"
            )
        counts[table if schema == "public" else f"{schema}.{table}"] = got
    return counts


def _sequences(cur: psycopg2.extensions.cursor) -> dict[str, int]:
    cur.execute(sqlfiles.query("sequence_values_public"))
    return {name: value for name, value in cur.fetchall()}


def _blocks_needed(cur: psycopg2.extensions.cursor) -> list[str]:
    """The tables of the pinned data file that exist now, i.e. that the schema file created."""
    cur.execute(
        sqlfiles.query("relations_existing"), {"names": list(pagila_files.PINNED_COPY_TABLES)}
    )
    return [name for (name,) in cur.fetchall()]


def _check_complete(path: Path, rows: dict[tuple[str, str], int], needed: list[str]) -> None:
    """Refuse a data file with no COPY block, or none for a table that needs one.

    A file cut short (or empty) parses cleanly; without this it would load as a success with
    tables left empty.
    """
    if not rows:
        raise InputError(str(path), None, "no COPY block at all")
    missing = sorted(name for name in needed if names.split_sql(name) not in rows)
    if missing:
        raise InputError(str(path), None, f"no COPY block for {', '.join(missing)}")


def _check_sequences_set(path: Path, created: set[str], set_: set[str]) -> None:
    """Refuse a data file that leaves a sequence the schema file created unset (a file cut
    after its last COPY block): the next insert would collide with a loaded key."""
    missing = sorted(created - set_)
    if missing:
        raise InputError(str(path), None, f"no setval for {', '.join(missing)}")


def _created_sequences(cur: psycopg2.extensions.cursor) -> set[str]:
    """The loaded schema's sequences, as :func:`names.display` writes them."""
    cur.execute(sqlfiles.query("catalog_sequences"), {"schemas": [LOADED_SCHEMA]})
    return {names.display(schema, name) for schema, name in cur.fetchall()}


class TransactionMark:
    """The load's transaction and user, taken when it opens; :meth:`check` before the commit
    refuses to commit anything but that transaction, as that user."""

    def __init__(self, conn: psycopg2.extensions.connection) -> None:
        self.conn = conn
        with conn.cursor() as cur:
            cur.execute(sqlfiles.query("transaction_identity"))
            self.xact, *self.users = cur.fetchone()

    def check(self) -> None:
        status = self.conn.info.transaction_status
        if status != psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
            raise FinalError("the load's transaction is no longer open; nothing committed")
        with self.conn.cursor() as cur:
            cur.execute(sqlfiles.query("transaction_identity"))
            xact, *users = cur.fetchone()
        if xact != self.xact:
            raise FinalError(
                f"the load's transaction {self.xact} was ended by a file (now {xact}); "
                "nothing more committed"
            )
        if users != self.users:
            raise FinalError(
                f"the load's session changed user to {'/'.join(users)}; nothing committed"
            )


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def run_folder(s: Settings, sql_dir: str | None) -> Path | None:
    """The run's own folder of files (``--sql-dir``), resolved; None when the run names none
    (the worker's ``PAGILA_SQL_DIR`` or the download then serve).

    Only a folder under one of the worker's ``PAGILA_SQL_ROOTS`` is read: the folder and both
    files are resolved (symlinks followed) and must stay under a root; no ``~`` expansion, no
    relative path. Whatever the reason (missing, not a folder, outside the roots, unreadable),
    the refusal is one and the same message, so it never tells whether a path exists.
    """
    if sql_dir is None:
        return None
    refused = InputError(
        f"--sql-dir {sql_dir[:200]}",
        None,
        f"not an allowed folder on worker host {socket.gethostname()} (see PAGILA_SQL_ROOTS)",
    )
    given = Path(sql_dir)
    if sql_dir.startswith("~") or not given.is_absolute():
        raise refused
    roots = [root.resolve() for root in s.sql_roots]
    try:
        folder = given.resolve(strict=True)
        files = [(folder / name).resolve() for name in pagila_files.PINNED_SHA256]
        allowed = folder.is_dir() and all(_within(p, roots) for p in (folder, *files))
    except (OSError, RuntimeError, ValueError):  # ValueError: a NUL byte in the path
        allowed = False
    if not allowed:
        raise refused
    return folder


def run(ctx: Context, run_id: str, options: LoadOptions, worker: str) -> dict[str, Any]:
    """The load task's whole job: locate the files, load them under the lock, end the run.

    The files' fingerprints go into the run record, for :func:`fail` and for readers. The run
    must be one the submitter recorded, with these options (:mod:`pagila_tasks.run.guard`).
    """
    guard.run(ctx, run_id, "load", options)
    ctx.record.running(run_id, worker)
    files = pagila_files.locate(ctx.s, run_folder(ctx.s, options.sql_dir))
    ctx.record.load_files(
        run_id,
        {
            files.schema.name: {"path": str(files.schema), "sha256": files.schema_sha256},
            files.data.name: {"path": str(files.data), "sha256": files.data_sha256},
        },
    )
    with Heartbeat(ctx.lock, run_id):
        result = load(
            ctx.s,
            files,
            run_id,
            options.force,
            before_commit=lambda: guard.before_commit(ctx, run_id),
            force_reset=options.force_reset,
        )
    ctx.record.load_result(run_id, result.as_dict())
    skipped = result.status == "skipped"
    lifecycle.end(ctx, run_id, RunState.SKIPPED if skipped else RunState.SUCCEEDED)
    return result.as_dict()


def fail(ctx: Context, run_id: str, exc: BaseException, sql_dir: str | None = None) -> None:
    """The load's final failure: its one failed ledger row, then the run ended (lock freed)."""
    record_failure(ctx, run_id, exc, sql_dir)
    lifecycle.end(ctx, run_id, RunState.FAILED, str(exc))


def record_failure(
    ctx: Context, run_id: str, exc: BaseException, sql_dir: str | None = None
) -> None:
    """Write the run's one failed ledger row: its task failed for good (after its retries, or at
    once for an error no retry fixes), so every attempt has rolled back.

    Its own transaction; nothing when the run already has a row. Never raises: the source may be
    out of reach, and the caller must still end the run.
    """
    s = ctx.s
    try:
        row = _failed_row(s, run_id, exc, ctx.record.get(run_id), sql_dir)
        with connection(s.source_dsn, s, f"pagila-load {run_id}") as conn:
            support.ensure(conn, "load")
            written = support.insert_load_failed(conn, row)
            conn.commit()
    except Exception as err:  # logged here; the caller records the failure in Redis
        log.error("STEP load %s: failed ledger row not written: %s", run_id, s.scrub(one_line(err)))
        return
    log.info("STEP load %s: failed row %s", run_id, "written" if written else "was already there")


def _failed_row(
    s: Settings, run_id: str, exc: BaseException, found: Run | None, sql_dir: str | None
) -> dict[str, Any]:
    """The failed ledger row: the fingerprints the run record kept, else those of whichever
    file can be read; the duration from the run's start, retries included."""
    files = (found.files if found else None) or {}
    hashes = {name: f["sha256"] for name, f in files.items()}
    if not hashes:
        try:
            hashes = pagila_files.hashes_present(s, run_folder(s, sql_dir))
        except InputError:  # a folder this worker may not read: no fingerprint of it
            hashes = {}
    started = found.started_at if found else None
    elapsed = (
        (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds() if started else 0
    )
    return LoadResult(
        run_id,
        "failed",
        hashes.get("pagila-schema.sql"),
        hashes.get("pagila-data.sql"),
        duration_s=round(elapsed, 3),
        error=s.scrub(str(exc)),
    ).ledger_row()


def load(
    s: Settings,
    files: PagilaFiles,
    run_id: str,
    force: bool,
    before_commit: Callable[[], None],
    on_block: Callable[[CopyBlock], None] | None = None,
    force_reset: bool = False,
) -> LoadResult:
    """Load ``files`` into the source unless an earlier load of the same files succeeded.

    The success row is inserted in the load's transaction, then ``before_commit`` runs (the run
    lock check: a stale holder's load is rolled back), then the commit: data and row commit
    together or not at all. Before the reset, ``public`` must hold only what loads of this
    project created and nothing elsewhere may depend on it (:func:`ownership.check`), unless
    ``force_reset``; the manifest of what this load created commits with its data. On failure
    the transaction is rolled back and the error raised; the failed row is the task's to write,
    once per run (:func:`record_failure`).
    """
    result = LoadResult(run_id, "loaded", files.schema_sha256, files.data_sha256)
    started = time.monotonic()
    conn = connect(s.source_dsn, s, f"pagila-load {run_id}")
    try:
        # The files are UTF-8 (the parser checks it): the server must read them so, whatever
        # the database's encoding; a file may not change it (see _Applier._still_in_the_load).
        conn.set_client_encoding("UTF8")
        support.ensure(conn, "load")
        latest = support.latest_load(conn, files.schema_sha256, files.data_sha256)
        if latest and latest["succeeded"] and not force:
            result.status, result.loaded_at = "skipped", latest["loaded_at"]
            log.info(
                "STEP load %s: skipped, these files were loaded at %s", run_id, latest["loaded_at"]
            )
            return result
        try:
            with conn.cursor() as cur:
                mark = TransactionMark(conn)
                dropped = ownership.check(cur, force_reset)
                if dropped:
                    result.reset_dropped = dropped[: ownership.SHOWN]
                    if len(dropped) > ownership.SHOWN:
                        result.reset_dropped.append(f"... ({len(dropped)} in all)")
                    log.warning(
                        "STEP load %s: --force-reset drops %d objects: %s",
                        run_id,
                        len(dropped),
                        ", ".join(dropped),
                    )
                log.info("STEP load %s: reset public and apply %s", run_id, files.schema.name)
                cur.execute(sqlfiles.query("reset_public"))
                schema = _Applier(cur, files.schema)
                schema.apply(files.schema)
                needed = _blocks_needed(cur)
                created = _created_sequences(cur)
                log.info("STEP load %s: stream %s", run_id, files.data.name)
                data = _Applier(cur, files.data, data_file=True)
                data._may_own = schema._may_own
                data.apply(files.data, on_block)
                _check_complete(files.data, data.rows, needed)
                _check_sequences_set(files.data, created, data.sequences_set)
                log.info("STEP load %s: verify row counts", run_id)
                result.counts = _verify(cur, data.rows)
                result.sequences = _sequences(cur)
                # The data file fills no materialized view; refresh them so the source reads
                # as a loaded Pagila should (and replication carries them over populated).
                for mschema, mview in catalog.matviews(cur, ("public",), only_populated=False):
                    cur.execute(
                        sql.SQL("REFRESH MATERIALIZED VIEW {}").format(
                            sql.Identifier(mschema, mview)
                        )
                    )
                result.skipped_ownership = schema.skipped_ownership + data.skipped_ownership
                ownership.record(cur, run_id)
            result.duration_s = round(time.monotonic() - started, 3)
            result.loaded_at = support.insert_load(conn, result.ledger_row()).isoformat()
            mark.check()
            before_commit()
            conn.commit()
        except Exception as exc:
            conn.rollback()
            log.error("STEP load %s: failed, source left as it was: %s", run_id, s.scrub(str(exc)))
            raise
        log.info("STEP load %s: done in %.2f s %s", run_id, result.duration_s, result.counts)
        return result
    finally:
        conn.close()
