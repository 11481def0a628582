"""The checks a run passes before it takes the lock, answered by a worker.

The workers hold the deployment's settings (DSNs, credentials); the person submitting a run
may hold only the Redis URL. So ``pagila-submit`` asks a worker (``pagila.preflight``, control
queue) to check the run's options against the servers the workers use, and to say what they
see: source and target (host, port, database; never a password), schemas, and for a load the
two files with their sha256. A refusal is one line, and the run never starts: no lock, no
record, no snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from pagila_tasks.base import names
from pagila_tasks.base.errors import PagilaError, UsageError, one_line
from pagila_tasks.config import Settings, where
from pagila_tasks.load import loader, ownership, pagila_files
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.db import CATALOG_PATH
from pagila_tasks.replication import catalog, extensions, keep, keepplan, protect
from pagila_tasks.run.model import LoadOptions, ReplicateOptions, Resolved, RunOptions


@contextmanager
def _connect(s: Settings, which: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the source or target, the worker process's warm one if it still
    answers (the checks come ahead of every run; a new connection costs several
    milliseconds); one that cannot open says which, on one line."""
    dsn = s.source_dsn if which == "source" else s.target_dsn
    with ExitStack() as stack:
        try:
            conn = stack.enter_context(
                warm.borrow(dsn, s, "pagila-preflight", search_path=CATALOG_PATH)
            )
        except psycopg2.OperationalError as exc:
            at = where(dsn)
            raise UsageError(f"cannot connect to the {which} ({at}): {one_line(exc)}") from None
        yield conn


def replicate(s: Settings, options: Resolved) -> dict[str, Any]:
    """Refuse what prepare would refuse, before any lock: unknown schemas or tables, a target
    schema that is the source's or was never a replica, an extension the target cannot have,
    something the target's users built that the run could not keep."""
    chosen, tables = options.schemas, options.tables
    kept = keepplan.KeepPlan()
    with (
        _connect(s, "source") as src,
        _connect(s, "target") as tgt,
        src.cursor() as scur,
        tgt.cursor() as tcur,
    ):
        catalog.require_schemas(scur, chosen)
        if tables is not None:
            picked = catalog.select_tables(scur, chosen, list(tables))
            missing = [t.qualified for t in picked if not catalog.table_exists(tcur, t.key)]
            if missing:
                raise UsageError(
                    f"the target has no table {', '.join(missing)}: run a full replicate first"
                )
        protect.check(scur, tcur, chosen, options.overwrite)
        if tables is None:
            extensions.check_target(tcur, extensions.needed(scur, chosen), chosen)
            swap = s.replace == "swap"
            mine = protect.replaceable(tcur, chosen, options.overwrite)
            incoming = keep.source_manifest(scur, chosen)
            kept = keep.assess(tcur, incoming, chosen, swap, "preflight", mine)
            keepplan.check(kept, options.drop_dependents, keepplan.how_lost(swap))
    return {
        "source": where(s.source_dsn),
        "target": where(s.target_dsn),
        "schemas": [names.printable(names.quote(x)) for x in chosen],
        "replace": "in place (--tables)" if tables is not None else s.replace,
        "keeps": len(kept.kept),
        "drops": list(kept.lost),
    }


def load(
    s: Settings, sql_dir: str | None, force: bool = False, force_reset: bool = False
) -> dict[str, Any]:
    """The files a load would read (as this worker finds them, with their sha256); refused when
    its reset of ``public`` would drop what no load of this project created
    (:func:`ownership.check`), unless the load would be skipped or ``force_reset``."""
    files = pagila_files.locate(s, loader.run_folder(s, sql_dir))
    with _connect(s, "source") as conn:
        if not force_reset and (force or not _loaded_already(conn, files)):
            with conn.cursor() as cur:
                ownership.check(cur, False)
    return {
        "source": where(s.source_dsn),
        "files": [
            {"path": str(files.schema), "sha256": files.schema_sha256},
            {"path": str(files.data), "sha256": files.data_sha256},
        ],
    }


def _loaded_already(conn: psycopg2.extensions.connection, files: pagila_files.PagilaFiles) -> bool:
    """True when a plain load of ``files`` would be skipped (they were loaded; read only)."""
    with conn.cursor() as cur:
        if not support.load_state(cur)[1]:
            return False
    latest = support.latest_load(conn, files.schema_sha256, files.data_sha256)
    return bool(latest and latest["succeeded"])


def check(s: Settings, kind: str, options: RunOptions) -> dict[str, Any]:
    """What the workers see for a run of ``kind`` with ``options``; a refusal is one line."""
    try:
        if kind == "load" and isinstance(options, LoadOptions):
            return load(s, options.sql_dir, options.force, options.force_reset)
        if kind == "replicate" and isinstance(options, ReplicateOptions):
            return replicate(s, options.resolve(s))
        raise UsageError(f"no run of kind {kind!r}")
    except (PagilaError, psycopg2.Error) as exc:
        raise UsageError(s.scrub(one_line(exc))) from None
