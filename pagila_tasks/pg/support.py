"""The bookkeeping schema (:data:`pagila_tasks.config.SUPPORT_SCHEMA`): the one module that
reads and writes its tables.

The schema sits on both servers and no load or replication touches it except through here:

- the ledgers: ``pagila_load_audit`` on the source, ``replication_audit`` on the target, each
  beside the data it speaks for;
- the load manifest (``load_manifest``, source): what loads created in ``public``;
- the replication working tables (target): the registry of schemas runs created
  (``replication_schemas``), the finishing steps done (``replication_steps``), the live schemas
  runs switched in (``replication_live``), what the last switch owns in them
  (``replication_manifest``), the schema fingerprints of the last switch
  (``replication_fingerprint``), the staging copies a later run may resume (``staged_runs``,
  ``staged_units``) and the plans of what runs keep of the target's users' work
  (``kept_objects``).

Every statement is a named file in ``sql/`` but a few one-liners written here. Callers keep the
logic (what a row means, when to write it); they pass and get plain values. The large-object
stage (``large_object_stage``) is a copy's data, not bookkeeping: :mod:`.largeobjects
<pagila_tasks.replication.largeobjects>` runs its statements.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, NamedTuple

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.config import SUPPORT_SCHEMA, Settings
from pagila_tasks.pg import sqlfiles
from pagila_tasks.pg.db import connection

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor
Ledger = Literal["load", "replication"]
LEDGERS: dict[str, str] = {
    "load": f"{SUPPORT_SCHEMA}.pagila_load_audit",
    "replication": f"{SUPPORT_SCHEMA}.replication_audit",
}
"""Each ledger's table, as people read it (on the source, on the target)."""
Object = tuple[str, str]


def _table(name: str) -> sql.Identifier:
    """A bookkeeping table, for the one-line statements written here (the rest are sql/ files)."""
    return sql.Identifier(SUPPORT_SCHEMA, name)


def _exists(cur: Cursor, table: str) -> bool:
    """Whether the bookkeeping table exists (a target or source an earlier version wrote, or
    none, may lack it; these probes create nothing)."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SUPPORT_SCHEMA}.{table}",))
    return bool(cur.fetchone()[0])


# -- the ledgers -------------------------------------------------------------------------------


def ensure(conn: Connection, ledger: Ledger) -> None:
    """Create the ledger (and the schema) if missing, committed on its own."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query(f"{ledger}_audit_ddl"))
    conn.commit()


def latest_load(conn: Connection, schema_sha256: str, data_sha256: str) -> dict[str, Any] | None:
    """The newest load ledger row for these fingerprints, or None."""
    with conn.cursor() as cur:
        cur.execute(
            sqlfiles.query("load_audit_latest"),
            {"schema_sha256": schema_sha256, "data_sha256": data_sha256},
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return None
    return {"id": row[0], "loaded_at": row[1].isoformat(), "succeeded": row[2], "run_id": row[3]}


def insert_load(conn: Connection, row: dict[str, Any]) -> datetime:
    """Insert one load ledger row (in the caller's transaction); returns its ``loaded_at``, the
    clock time of the insert (the load's transaction began long before)."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("load_audit_insert"), row)
        return cur.fetchone()[1]


def insert_load_failed(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a run's failed load row (in the caller's transaction); False if the run had a row."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("load_audit_insert_failed"), row)
        return cur.fetchone() is not None


def replication_entry(
    run_id: str,
    started_at: str | None,
    succeeded: bool,
    counts: tuple[int, int, int],
    error: str | None,
    detail: list[dict[str, Any]],
    target_state: str | None = None,
) -> dict[str, Any]:
    """A replication ledger row: ``counts`` are tables, rows and bytes; the switch adds when
    the copy went live and how long it held (:func:`insert_replication`)."""
    tables, rows, size = counts
    return {
        "run_id": run_id,
        "started_at": started_at,
        "succeeded": succeeded,
        "tables": tables,
        "rows": rows,
        "bytes": size,
        "error": error,
        "detail": json.dumps(detail),
        "switched_at": None,
        "switch_ms": None,
        "target_state": target_state,
    }


def insert_replication(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a run's replication ledger row (in the caller's transaction); False if it had one."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("replication_audit_insert"), row)
        return cur.fetchone() is not None


def set_switch_ms(cur: Cursor, run_id: str, held_ms: float) -> None:
    """Correct the run's ``switch_ms`` once its commit is done: the row, written inside the
    switch's transaction, could not time the commit itself."""
    cur.execute(
        sql.SQL("UPDATE {} SET switch_ms = %s WHERE run_id = %s").format(
            _table("replication_audit")
        ),
        (held_ms, run_id),
    )


def replication_row(conn: Connection, run_id: str) -> tuple[Any, ...] | None:
    """The run's ledger row (succeeded, target_state, switched_at, switch_ms, error), or None."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("replication_audit_row"), {"run_id": run_id})
        row = cur.fetchone()
    conn.commit()
    return row


def history(s: Settings, ledger: Ledger, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of a ledger, as dicts; ``[{"error": ...}]`` when unreachable."""
    dsn = s.source_dsn if ledger == "load" else s.target_dsn
    try:
        with connection(dsn, s, "pagila-submit") as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SUPPORT_SCHEMA,))
            if not cur.fetchone()[0]:
                return []
            try:
                cur.execute(sqlfiles.query(f"{ledger}_audit_history"), {"limit": limit})
            except psycopg2.errors.UndefinedTable:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except psycopg2.OperationalError as exc:
        return [{"error": s.scrub(str(exc).strip())}]


def replication_summary(s: Settings, application: str) -> dict[str, Any]:
    """The replication ledger in one row, for the metrics: ``runs``, ``failed``,
    ``last_success_at``, and the last run's ``last_finished_at``, ``last_duration_s``,
    ``last_succeeded``, ``last_rows``, ``last_bytes`` (None without a run); no runs on a target
    no run wrote to. Raises :class:`psycopg2.Error` when the target cannot be read."""
    with connection(s.target_dsn, s, application) as conn, conn.cursor() as cur:
        if not _exists(cur, "replication_audit"):
            return {"runs": 0, "failed": 0}
        cur.execute(sqlfiles.query("replication_audit_metrics"))
        names = [d.name for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


def is_replica(cur: Cursor) -> bool:
    """Whether the target has a replication ledger: some run (of any version) wrote to it."""
    return _exists(cur, "replication_audit")


def last_verified_tables(cur: Cursor) -> list[str]:
    """The tables (``schema.table`` as written in the ledger) the last successful run verified;
    empty when the ledger is too old to say (no ``detail``). For a target an earlier version
    replicated before live schemas were recorded; the ledger must exist."""
    cur.execute(sqlfiles.query("replication_audit_has_detail"))
    if not cur.fetchone()[0]:
        return []
    cur.execute(sqlfiles.query("replication_audit_last_tables"))
    return [t for (t,) in cur.fetchall() if t]


# -- the replication working tables (target) -------------------------------------------------


def ensure_work(cur: Cursor) -> None:
    """Create the replication working tables if missing (in the caller's transaction)."""
    cur.execute(sqlfiles.query("replication_work_ddl"))


def register(cur: Cursor, name: str, kind: str, live: str, run_id: str) -> None:
    """Register a schema a run created (``kind`` ``stage`` or ``old``), in the transaction that
    created it: only registered schemas are ever dropped as leftovers."""
    cur.execute(
        sqlfiles.query("replication_schemas_register"),
        {"name": name, "kind": kind, "live": live, "run_id": run_id},
    )


def unregister(cur: Cursor, name: str) -> None:
    """Forget a registered schema, in the transaction that dropped or renamed it to a live name."""
    query = sql.SQL("DELETE FROM {} WHERE name = %s").format(_table("replication_schemas"))
    cur.execute(query, (name,))


def registered(cur: Cursor, kind: str, run_id: str | None = None) -> list[str]:
    """Registered schemas of ``kind`` (of one run, or of every run), oldest first."""
    cur.execute(sqlfiles.query("replication_schemas_of_kind"), {"kind": kind, "run_id": run_id})
    return [name for (name,) in cur.fetchall()]


def registered_any(cur: Cursor) -> list[str]:
    """Every registered schema, of any kind and run; none on a target without the registry."""
    if not _exists(cur, "replication_schemas"):
        return []
    cur.execute(sql.SQL("SELECT name FROM {}").format(_table("replication_schemas")))
    return [name for (name,) in cur.fetchall()]


def register_live(cur: Cursor, schemas: Iterable[str], run_id: str) -> None:
    """Record the live schemas a run switched in (or replaced in place) as the project's, so a
    later run replaces them without ``--overwrite-target``."""
    cur.execute(
        sqlfiles.query("replication_live_register"), {"schemas": list(schemas), "run_id": run_id}
    )


def live_schemas(cur: Cursor) -> set[str]:
    """The live schemas runs switched in; none on a target without the record."""
    if not _exists(cur, "replication_live"):
        return set()
    cur.execute(sql.SQL("SELECT name FROM {}").format(_table("replication_live")))
    return {name for (name,) in cur.fetchall()}


def step_done(cur: Cursor, run_id: str, step: str) -> bool:
    """Whether the run committed this finishing step (a redelivered callback skips it)."""
    cur.execute(
        sql.SQL("SELECT 1 FROM {} WHERE run_id = %s AND step = %s").format(
            _table("replication_steps")
        ),
        (run_id, step),
    )
    return cur.fetchone() is not None


def record_step(cur: Cursor, run_id: str, step: str) -> None:
    """Record a finishing step in the transaction that did it, so it is done exactly once."""
    cur.execute(
        sql.SQL("INSERT INTO {} (run_id, step) VALUES (%s, %s)").format(
            _table("replication_steps")
        ),
        (run_id, step),
    )


def _schema_set(schemas: Iterable[str]) -> str:
    return json.dumps(sorted(schemas))


class Fingerprint(NamedTuple):
    """What the last run that made the live copy equal to the source recorded for the next
    run's proof: the schemas' fingerprints and the source snapshot's xmin (None: unknown)."""

    run_id: str
    source_sha256: str
    target_sha256: str
    horizon: int | None
    measures: str | None
    """Both sides' measures and from when they hold (JSON: :mod:`pagila_tasks.run.recorded`)."""


def fingerprint(cur: Cursor, schemas: Iterable[str]) -> Fingerprint | None:
    """The :class:`Fingerprint` recorded for exactly this set of schemas by the last run that
    switched it in; None when none was (or a run since switched without it)."""
    if not _exists(cur, "replication_fingerprint"):
        return None
    query = sql.SQL(
        "SELECT run_id, source_sha256, target_sha256, source_horizon, measures FROM {} "
        "WHERE schemas = %s"
    ).format(_table("replication_fingerprint"))
    cur.execute(query, (_schema_set(schemas),))
    row = cur.fetchone()
    if not row:
        return None
    return Fingerprint(str(row[0]), str(row[1]), str(row[2]), _int_or_none(row[3]), row[4])


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def save_fingerprint(
    cur: Cursor,
    schemas: Iterable[str],
    run_id: str,
    shas: tuple[str, str],
    horizon: int | None,
    measures: str | None,
) -> None:
    """Record the schema fingerprints (source's, target's) of the copy a run just switched in,
    the xmin of the source snapshot it holds and both sides' measures (JSON)."""
    cur.execute(
        sqlfiles.query("replication_fingerprint_save"),
        {
            "schemas": _schema_set(schemas),
            "run_id": run_id,
            "source_sha256": shas[0],
            "target_sha256": shas[1],
            "source_horizon": horizon,
            "measures": measures,
        },
    )


def save_measures(
    cur: Cursor, schemas: Iterable[str], horizon: int | None, measures: str | None
) -> None:
    """A run that proved or made the live copy equal to the source without a new copy (its
    schemas as recorded): the xmin of the snapshot it holds now and both sides' measures (JSON),
    for the next run's proof and comparison."""
    cur.execute(
        sql.SQL("UPDATE {} SET source_horizon = %s, measures = %s WHERE schemas = %s").format(
            _table("replication_fingerprint")
        ),
        (horizon, measures, _schema_set(schemas)),
    )


def forget_fingerprint(cur: Cursor, schemas: Iterable[str]) -> None:
    """Drop the fingerprints of ``schemas`` in the transaction that replaces their copy."""
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE schemas = %s").format(_table("replication_fingerprint")),
        (_schema_set(schemas),),
    )


def save_staged_run(
    cur: Cursor, run_id: str, schemas: Iterable[str], fingerprint: str, units: str
) -> None:
    """Record the plan a swap run builds its staging copy for, with its pre-data."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (run_id, schemas, fingerprint, units) VALUES (%s, %s, %s, %s)"
        ).format(_table("staged_runs")),
        (run_id, _schema_set(schemas), fingerprint, units),
    )


def staged_run(cur: Cursor, schemas: Iterable[str]) -> tuple[Any, ...] | None:
    """The newest staging copy not switched in for this set of schemas: run id, fingerprint,
    units (JSON), age in seconds, whether it began finishing, committed units (JSON)."""
    if not _exists(cur, "staged_runs"):
        return None
    cur.execute(sqlfiles.query("staged_run_latest"), {"schemas": _schema_set(schemas)})
    return cur.fetchone()


def note_staged_unit(cur: Cursor, run_id: str, unit: str, rows: int) -> None:
    """A unit committed into the run's staging copy (in the copy's transaction)."""
    cur.execute(sqlfiles.query("staged_unit_note"), {"run_id": run_id, "unit": unit, "rows": rows})


def claim_unit(cur: Cursor, run_id: str, unit: str) -> bool:
    """Claim a unit for this copy's transaction: False when a copy of it committed already (a
    concurrent one waits here for the first to end)."""
    cur.execute(sqlfiles.query("staged_unit_claim"), {"run_id": run_id, "unit": unit})
    return cur.fetchone() is not None


def forget_unit(cur: Cursor, run_id: str, unit: str) -> None:
    """A committed unit no longer counts (its table is emptied to be copied again)."""
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE run_id = %s AND unit = %s").format(_table("staged_units")),
        (run_id, unit),
    )


def adopt_staged(cur: Cursor, old_run: str, new_run: str) -> None:
    """Make an earlier run's staging copy (plan, units, schemas) the new run's."""
    cur.execute(sqlfiles.query("staged_run_adopt"), {"old_run": old_run, "new_run": new_run})


def forget_staged(cur: Cursor, keep_run: str | None = None) -> None:
    """Forget every staging copy's plan and units but ``keep_run``'s (their schemas are being
    dropped, or went live)."""
    if not _exists(cur, "staged_runs"):
        return
    for table in ("staged_units", "staged_runs"):
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE run_id IS DISTINCT FROM %s").format(_table(table)),
            (keep_run,),
        )


def manifest_rows(cur: Cursor, schemas: Iterable[str]) -> list[tuple[str, str, str]]:
    """(kind, key, value) of what the last switch recorded as the project's in ``schemas``;
    none on a target without the record."""
    if not _exists(cur, "replication_manifest"):
        return []
    cur.execute(sqlfiles.query("manifest_read"), {"schemas": list(schemas)})
    return [(kind, key, value) for kind, key, value in cur.fetchall()]


def write_manifest(
    cur: Cursor, schemas: Iterable[str], rows: list[tuple[str, str, str, str]]
) -> None:
    """Replace what the project owns in ``schemas`` by ``rows`` (schema, kind, key, value), in
    the switch's transaction, so the next run knows the rest is the target's users'."""
    cur.execute(
        sqlfiles.query("manifest_write"),
        {
            "schemas": list(schemas),
            "schema_names": [r[0] for r in rows],
            "kinds": [r[1] for r in rows],
            "keys": [r[2] for r in rows],
            "values": [r[3] for r in rows],
        },
    )


def save_kept(cur: Cursor, run_id: str, plan: str) -> None:
    """Keep a run's plan (JSON) on the target, in the transaction that starts carrying it out,
    so its errback or the next run can put back what it took down."""
    cur.execute(sqlfiles.query("kept_save"), {"run_id": run_id, "plan": plan})


def kept(cur: Cursor, run_id: str) -> str | None:
    """The run's kept plan (JSON), or None (also on a target that never had the table: an
    errback may run before any run made it)."""
    if not _exists(cur, "kept_objects"):
        return None
    query = sql.SQL("SELECT plan FROM {} WHERE run_id = %s").format(_table("kept_objects"))
    cur.execute(query, (run_id,))
    row = cur.fetchone()
    return row[0] if row else None


def pending_kept(cur: Cursor, run_id: str) -> list[tuple[str, str]]:
    """(run_id, plan JSON) of other runs' plans still on the target, oldest first."""
    cur.execute(sqlfiles.query("kept_pending"), {"run_id": run_id})
    return [(r, p) for r, p in cur.fetchall()]


def forget_kept(cur: Cursor, run_id: str) -> None:
    """Let a run's plan go (it switched, or what it took down is back)."""
    query = sql.SQL("DELETE FROM {} WHERE run_id = %s").format(_table("kept_objects"))
    cur.execute(query, (run_id,))


# -- the load manifest (source) --------------------------------------------------------------


def load_state(cur: Cursor) -> tuple[bool, bool]:
    """(the load manifest exists, the load ledger exists); read only, nothing is created."""
    cur.execute(sqlfiles.query("load_manifest_state"))
    has_manifest, has_ledger = cur.fetchone()
    return bool(has_manifest), bool(has_ledger)


def load_manifest(cur: Cursor) -> set[Object]:
    """(type, identity) of what the last successful load created in ``public``."""
    cur.execute(sqlfiles.query("load_manifest_rows"))
    return {(kind, identity) for kind, identity in cur.fetchall()}


def any_load_succeeded(cur: Cursor) -> bool:
    """Whether the load ledger has a successful row (a source an earlier version loaded)."""
    cur.execute(sqlfiles.query("load_audit_any_success"))
    return bool(cur.fetchone()[0])


def record_load(cur: Cursor, run_id: str, objects: list[Object]) -> None:
    """Replace the load manifest by ``objects`` (type, identity), in the load's transaction."""
    cur.execute(sqlfiles.query("load_manifest_clear"))
    cur.execute(
        sqlfiles.query("load_manifest_insert"),
        {
            "types": [kind for kind, _ in objects],
            "identities": [identity for _, identity in objects],
            "run_id": run_id,
        },
    )
