"""The target's schema, taken from the source itself with pg_dump, in two sections.

The dump (schema only, owners and privileges left out) is taken inside the run's snapshot, so
schema and data agree. pg_restore turns a section of it into SQL text (``-f -``, no connection)
and the run executes that text in a transaction of its own: pre-data before any copy, post-data
after all of them, each all or nothing, and each able to run *as live* (see
:mod:`.staging`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from pathlib import Path

import psycopg2
import psycopg2.extensions

from pagila_tasks.base import names
from pagila_tasks.base.errors import SchemaScriptError
from pagila_tasks.config import Settings
from pagila_tasks.pg import pgtools

log = logging.getLogger(__name__)

_RESTRICT = re.compile(r"\\(un)?restrict [A-Za-z0-9]+")
"""psql meta-commands pg_dump 17.6+ wraps scripts in; the server does not know them."""


def tools(s: Settings, source_version: int) -> tuple[Path, Path]:
    """pg_dump at least as new as the source, and the pg_restore beside it (same archive format)."""
    pg_dump = pgtools.find_tool("pg_dump", source_version // 10000, s.pg_dump)
    pg_restore = pg_dump.with_name("pg_restore")
    if not pg_restore.exists():
        pg_restore = pgtools.find_tool("pg_restore", source_version // 10000)
    return pg_dump, pg_restore


def _dump_args(
    pg_dump: Path, conninfo: str, schemas: tuple[str, ...], snapshot_id: str | None
) -> list[str]:
    """pg_dump's arguments for a schema-only, owner- and privilege-free dump of ``schemas``.

    Each name goes to pg_dump double-quoted, so it matches that one schema: never lower-cased,
    never split on a dot, never a wildcard; ``--strict-names`` makes a missing one an error.
    """
    args = [str(pg_dump), "--schema-only", "--no-owner", "--no-privileges", "--strict-names"]
    args += ["-d", conninfo, *(f"--schema={names.dump_pattern(name)}" for name in schemas)]
    return args + ([f"--snapshot={snapshot_id}"] if snapshot_id else [])


def dump(
    s: Settings, schemas: tuple[str, ...], snapshot_id: str | None, source_version: int
) -> bytes:
    """A custom-format dump of exactly the source's ``schemas`` (see :func:`_dump_args`)."""
    pg_dump, _ = tools(s, source_version)
    conninfo, env = pgtools.conninfo_and_env(s.source_dsn)
    with tempfile.TemporaryDirectory(prefix="pagila-dump-") as tmp:
        out = Path(tmp) / "schema.dump"
        args = [*_dump_args(pg_dump, conninfo, schemas, snapshot_id), "-Fc", "-f", str(out)]
        pgtools.run(args, env, f"pg_dump ({pg_dump})", s.scrub)
        return out.read_bytes()


def archive_fingerprint(s: Settings, archive: bytes, source_version: int) -> str:
    """sha256 of a :func:`dump` archive's whole script (the archive itself holds its date)."""
    _, pg_restore = tools(s, source_version)
    _, env = pgtools.conninfo_and_env(s.source_dsn)
    with tempfile.TemporaryDirectory(prefix="pagila-restore-") as tmp:
        path = Path(tmp) / "schema.dump"
        path.write_bytes(archive)
        args = [str(pg_restore), "--no-owner", "--no-privileges", "-f", "-", str(path)]
        text = pgtools.run(args, env, "pg_restore", s.scrub)
    return _digest(text)


def _digest(text: str) -> str:
    """sha256 of a schema script without the random key of its ``\\restrict`` lines."""
    lines = [ln for ln in text.splitlines() if not _RESTRICT.fullmatch(ln)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def live_fingerprint(s: Settings, schemas: tuple[str, ...], target_version: int) -> str:
    """sha256 of the target's live ``schemas`` dumped as :func:`dump` dumps the source's: what
    its users built there (an index, a comment) included, so any change to them shows."""
    pg_dump = pgtools.find_tool("pg_dump", target_version // 10000, s.pg_dump)
    conninfo, env = pgtools.conninfo_and_env(s.target_dsn)
    text = pgtools.run(
        [*_dump_args(pg_dump, conninfo, schemas, None), "-Fp"], env, "pg_dump (target)", s.scrub
    )
    return _digest(text)


def _entry(line: str) -> list[str]:
    """The fields of a ``pg_restore -l`` line after its dump id: oids, type words, names."""
    return line.split(";", 1)[-1].split()


def listing(toc: str, foreign_keys: bool) -> str:
    """A ``pg_restore -l`` listing without the entries the run does itself.

    Schemas are created by the run (a staging copy needs them under its own name first);
    foreign keys, when ``foreign_keys`` is false, are added by :mod:`.fkeys`.
    """
    kept = []
    for line in toc.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        fields = _entry(line)
        if fields[2:4] == ["SCHEMA", "-"]:
            continue
        if not foreign_keys and fields[2:4] == ["FK", "CONSTRAINT"]:
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def script(
    s: Settings,
    archive: bytes,
    section: str,
    source_version: int,
    target_version: int,
    foreign_keys: bool = True,
) -> str:
    """The SQL of one section of a :func:`dump` archive, ready to run on the target."""
    _, pg_restore = tools(s, source_version)
    _, env = pgtools.conninfo_and_env(s.target_dsn)
    with tempfile.TemporaryDirectory(prefix="pagila-restore-") as tmp:
        path = Path(tmp) / "schema.dump"
        path.write_bytes(archive)
        toc = pgtools.run([str(pg_restore), "-l", str(path)], env, "pg_restore -l", s.scrub)
        entries = Path(tmp) / "entries.list"
        entries.write_text(listing(toc, foreign_keys))
        text = pgtools.run(
            [
                str(pg_restore),
                "--no-owner",
                "--no-privileges",
                f"--section={section}",
                "-L",
                str(entries),
                "-f",
                "-",
                str(path),
            ],
            env,
            f"pg_restore --section={section}",
            s.scrub,
        )
    lines = [ln for ln in text.splitlines() if not _RESTRICT.fullmatch(ln)]
    if target_version < 170000:  # pg_dump 17+ sets a parameter older servers do not have
        lines = [ln for ln in lines if ln != "SET transaction_timeout = 0;"]
    return "\n".join(lines) + "\n"


def failed_object(script_text: str, position: int | None) -> str | None:
    """The ``-- Name: ...; Type: ...`` header of the entry at ``position`` in a script, if any."""
    if not position:
        return None
    head = script_text[: position - 1]
    found = re.findall(r"^-- Name: (.*); Type: ([^;]*);", head, re.M)
    return f"{found[-1][1].lower()} {found[-1][0]}" if found else None


def run(cur: psycopg2.extensions.cursor, text: str) -> None:
    """Execute a section's script in the caller's transaction; a failure names its object."""
    try:
        cur.execute(text)
    except psycopg2.Error as exc:
        position = getattr(exc.diag, "statement_position", None)
        where = failed_object(text, int(position) if position else None)
        message = " ".join((exc.diag.message_primary or str(exc)).split())
        raise SchemaScriptError(message + (f" (in {where})" if where else ""), exc.pgcode) from exc


_ENTRY = re.compile(r"^(--\n-- Name: .*?; Type: ([^;\n]*); Schema: [^\n]*\n--\n)", re.M)
_ON_TABLE = (
    r"^(?P<head>CREATE (?:UNIQUE )?INDEX \S+ ON (?:ONLY )?|ALTER TABLE ONLY )"
    r"(?P<schema>{schemas})\.(?P<rest>.*;)\s*$"
)


def split_post_data(text: str, targets: dict[str, str]) -> tuple[list[str], str]:
    """The post-data statements that name no object but their own table (most indexes and
    primary keys), rewritten to the table's build schema, apart from the rest of the script.

    pg_dump qualifies every name it writes, so a statement whose only replicated-schema name
    is the table it builds on resolves the same under the build's name: it can run outside the
    *as live* transaction, in parallel sessions. Anything else (a function in an expression, an
    index attached to a partitioned one, a trigger, a policy) stays in the script for the
    as-live transaction; a statement this test cannot be sure of is never taken out.
    """
    prefixes = {names.quote(live): build for live, build in targets.items()}
    table = re.compile(_ON_TABLE.format(schemas="|".join(re.escape(p) for p in prefixes)), re.S)
    parts = _ENTRY.split(text)
    rest = [parts[0]]
    taken: list[str] = []
    for header, kind, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.startswith("SET ")]
        statement = "\n".join(lines).strip()
        hit = table.match(statement) if kind in ("INDEX", "CONSTRAINT") else None
        if hit and sum(statement.count(f"{p}.") for p in prefixes) == 1:
            build = names.quote(prefixes[hit["schema"]])
            taken.append(f"{hit['head']}{build}.{hit['rest']}")
        else:
            rest.append(header + body)
    return taken, "".join(rest)
