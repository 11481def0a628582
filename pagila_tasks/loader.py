"""The Pagila load into the source: fingerprint, skip or reset, apply, stream, verify, audit.

Everything from the reset of ``public`` to the last ``setval`` runs in one transaction, so a
failure anywhere leaves the source exactly as it was; the ledger row of a failed load is
written afterwards in its own transaction.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks import audit, catalog, pagila_files, sqlfiles
from pagila_tasks.config import Settings
from pagila_tasks.context import Context
from pagila_tasks.db import connect, connection
from pagila_tasks.errors import InputError, PagilaError
from pagila_tasks.lock import Heartbeat
from pagila_tasks.pagila_files import PagilaFiles
from pagila_tasks.sqlscript import CopyBlock, Statement, parse_file

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
    loaded_at: str | None = None
    duration_s: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def ledger_row(self) -> dict[str, Any]:
        """The load ledger row that records this result (see :func:`audit.insert_load`)."""
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


def split_qualified(name: str) -> tuple[str, str]:
    """Split ``schema.table`` (either part possibly double-quoted) into its unquoted parts."""
    parts = re.findall(r'"((?:[^"]|"")+)"|([^."]+)', name)
    names = [q.replace('""', '"') if q else p for q, p in parts]
    if len(names) == 1:
        return "public", names[0]
    if len(names) != 2:
        raise ValueError(f"not a table name: {name!r}")
    return names[0], names[1]


class _Applier:
    """Runs one file's statements and COPY blocks on a cursor, inside the caller's transaction."""

    def __init__(self, cur: psycopg2.extensions.cursor, path: Path) -> None:
        self.cur = cur
        self.path = path
        self.rows: dict[tuple[str, str], int] = {}
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
        self.rows[split_qualified(block.table)] = block.rows

    def _run(self, text: str, line: int) -> None:
        try:
            self.cur.execute(text)
        except psycopg2.Error as exc:
            raise _located(exc, self.path, line, None) from None

    def apply(self, path: Path, on_block: Callable[[CopyBlock], None] | None = None) -> None:
        for item in parse_file(path):
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


def record_unreadable(s: Settings, run_id: str, error: InputError, hashes: dict[str, str]) -> None:
    """Write the failed ledger row of a load whose files could not even be fingerprinted."""
    result = LoadResult(
        run_id,
        "failed",
        hashes.get("pagila-schema.sql"),
        hashes.get("pagila-data.sql"),
        error=s.scrub(str(error)),
    )
    with connection(s.source_dsn, s, f"pagila-load {run_id}") as conn:
        audit.ensure(conn, "load")
        audit.insert_load(conn, result.ledger_row())
        conn.commit()


def run(ctx: Context, run_id: str, force: bool, worker: str) -> dict[str, Any]:
    """The load task's whole job: locate the files, load them under the lock, record the end."""
    ctx.progress.set_state(run_id, "running", worker=worker)
    try:
        files = pagila_files.locate(ctx.s)
    except InputError as exc:
        record_unreadable(ctx.s, run_id, exc, pagila_files.hashes_present(ctx.s))
        raise
    with Heartbeat(ctx.lock, run_id):
        result = load(
            ctx.s, files, run_id, force, before_commit=lambda: ctx.lock.assert_held(run_id)
        )
    ctx.progress.set_state(run_id, "running", result=result.as_dict())
    ctx.progress.finish_once(run_id, "skipped" if result.status == "skipped" else "succeeded")
    ctx.lock.release(run_id)
    return result.as_dict()


def load(
    s: Settings,
    files: PagilaFiles,
    run_id: str,
    force: bool,
    before_commit: Callable[[], None],
    on_block: Callable[[CopyBlock], None] | None = None,
) -> LoadResult:
    """Load ``files`` into the source unless an earlier load of the same files succeeded.

    ``before_commit`` runs just before the commit (the run lock check: a stale holder's load is
    rolled back). Raises on failure after recording it in the ledger.
    """
    result = LoadResult(run_id, "loaded", files.schema_sha256, files.data_sha256)
    started = time.monotonic()
    conn = connect(s.source_dsn, s, f"pagila-load {run_id}")
    try:
        audit.ensure(conn, "load")
        latest = audit.latest_load(conn, files.schema_sha256, files.data_sha256)
        if latest and latest["succeeded"] and not force:
            result.status, result.loaded_at = "skipped", latest["loaded_at"]
            log.info(
                "STEP load %s: skipped, these files were loaded at %s", run_id, latest["loaded_at"]
            )
            return result
        try:
            with conn.cursor() as cur:
                log.info("STEP load %s: reset public and apply %s", run_id, files.schema.name)
                cur.execute(sqlfiles.query("reset_public"))
                schema = _Applier(cur, files.schema)
                schema.apply(files.schema)
                log.info("STEP load %s: stream %s", run_id, files.data.name)
                data = _Applier(cur, files.data)
                data._may_own = schema._may_own
                data.apply(files.data, on_block)
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
            before_commit()
            conn.commit()
        except Exception as exc:
            conn.rollback()
            result.status = "failed"
            result.counts = {}
            result.error = s.scrub(str(exc))
            result.duration_s = round(time.monotonic() - started, 3)
            audit.insert_load(conn, result.ledger_row())
            conn.commit()
            log.error("STEP load %s: failed, source left as it was: %s", run_id, result.error)
            raise
        result.duration_s = round(time.monotonic() - started, 3)
        result.loaded_at = audit.insert_load(conn, result.ledger_row()).isoformat()
        conn.commit()
        log.info("STEP load %s: done in %.2f s %s", run_id, result.duration_s, result.counts)
        return result
    finally:
        conn.close()
