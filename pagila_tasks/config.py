"""One configuration, read from the environment once, frozen, and validated with clear errors.

Every knob of the project is a ``PAGILA_*`` variable read here and nowhere else, so a worker, the
submit script and the stack agree on what a setting means.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit

from psycopg2.extensions import parse_dsn

from pagila_tasks.base import names
from pagila_tasks.base.errors import ConfigError, UsageError

_TRUE = ("1", "true", "yes")
_BOOLS = (*_TRUE, "0", "false", "no")

DEFAULT_SOURCE_DSN = "postgresql://pagila:pagila_pw@localhost:5433/pagila"
DEFAULT_TARGET_DSN = "postgresql://pagila_tgt:pagila_tgt_pw@localhost:5444/pagila"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_SPOOL_MAX_BYTES = 128 * 1024 * 1024
DEFAULT_SPLIT_BYTES = 128 * 1024 * 1024
"""A table stored larger than this (heap and TOAST) is split: wide rows make few, long units.
The spool cap's default, so a unit's COPY stream (about 0.8 of its heap) stays in memory."""
MIN_RETRIES = 2
"""The Airflow design's guardrail: no task gives up before two retries."""
MIN_SPOOL_BYTES = 64 * 1024
"""The smallest in-memory spool; 0 would mean no cap at all to ``SpooledTemporaryFile``."""
REPLACE_MODES = ("swap", "in-place")
"""How a full replication replaces the target's copy: built beside it and switched in one
transaction (``swap``), or dropped first and rebuilt under the live names (``in-place``)."""
SCHEDULE_JOBS = ("run", "replicate")
"""What a scheduled run does (``PAGILA_SCHEDULE_JOB``)."""


def mask_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (URL and key=value forms)."""
    masked = re.sub(r"(://[^:/@\s]*:)([^@\s]*)(@)", r"\1***\3", dsn)
    masked = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", masked, flags=re.I)
    return masked


def where(dsn: str) -> str:
    """``host:port/database`` of a DSN, for people (no user, no password)."""
    params = parse_dsn(dsn)
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or '?'}"


def mask_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask every DSN password in free text, and any literal secret given."""
    text = mask_dsn(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


SAMPLE_PASSWORD_PREFIX = "change-me"  # noqa: S105 - the marker refused, not a password
"""Every password in ``.env.example`` starts so: a copy of it must not run with them."""


def _set(env: Mapping[str, str], name: str, default: str) -> str:
    """The variable's value, or ``default`` when unset; set but empty is a mistake, not unset."""
    value = env.get(name)
    if value is None:
        return default
    if not value.strip():
        raise ConfigError(name, "is set but empty (unset it to use the default)")
    return value


def _split(name: str, value: str) -> SplitResult:
    """``value`` as URL parts; an unbalanced bracket or a bad port names the variable."""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ConfigError(name, f"has an unbalanced [ or ] in {mask_dsn(value)!r}") from None
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad or out-of-range port
    except ValueError:
        raise ConfigError(name, f"has a bad port (0-65535) in {mask_dsn(value)!r}") from None
    return parts


def _not_sample(name: str, value: str) -> str:
    """Refuse a sample password, in the URL's user part or as a ``?password=`` parameter."""
    parts = _split(name, value)
    passwords = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    if any(password.startswith(SAMPLE_PASSWORD_PREFIX) for password in passwords):
        raise ConfigError(
            name, "uses a sample password from .env.example; set a real one (see its first lines)"
        )
    return value


def _dsn(env: Mapping[str, str], name: str, default: str) -> str:
    value = _set(env, name, default)
    parts = _split(name, value)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ConfigError(
            name,
            f"must be a postgresql://user:password@host:port/dbname URL, got {mask_dsn(value)!r}",
        )
    return _not_sample(name, value)


def _redis_url(env: Mapping[str, str], name: str, default: str) -> str:
    value = _set(env, name, default)
    if _split(name, value).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(name, f"must be a redis:// URL, got {mask_dsn(value)!r}")
    return _not_sample(name, value)


SUPPORT_SCHEMA = "pagila_support"
"""The bookkeeping schema on both servers (the ledgers and the runs' records, read and written
by :mod:`pagila_tasks.pg.support` alone; the one name of it in Python): never loaded over, never
replicated."""


def parse_schemas(raw: str, name: str = "PAGILA_SCHEMAS") -> tuple[str, ...]:
    """Exact schema names from a list (see :mod:`pagila_tasks.base.names` for quoting)."""
    try:
        schemas = names.parse_names(raw, name)
    except UsageError as exc:
        problem = str(exc).removeprefix(f"{name} ").removeprefix(f"{name}: ")
        raise ConfigError(name, problem) from None
    check_schemas(schemas, name)
    return schemas


def check_schemas(schemas: tuple[str, ...], name: str) -> None:
    """Refuse schemas no run may replicate: the ledgers' schema and the runs' own copies (also
    for a run record's schemas, re-checked by the task that acts on them)."""
    if not schemas or not all(isinstance(s, str) and s for s in schemas):
        raise ConfigError(name, "must name at least one schema, each a non-empty name")
    if SUPPORT_SCHEMA in schemas:
        raise ConfigError(name, f"must not name {SUPPORT_SCHEMA}: it holds the audit ledgers")
    if any(s.startswith(STAGING_PREFIXES) for s in schemas):
        prefixes = " or ".join(STAGING_PREFIXES)
        raise ConfigError(name, f"must not name a staging schema of this project ({prefixes}*)")


STAGING_PREFIXES = ("pagila_stage_", "pagila_old_")
"""Schemas named so on the target belong to replication runs (see
:mod:`pagila_tasks.replication.staging`)."""


def _choice(
    env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], empty_ok: bool = True
) -> str:
    """One of ``choices``; empty is the default when ``empty_ok``, else an error (see _set)."""
    raw = (env.get(name) or default) if empty_ok else _set(env, name, default)
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or ("1" if default else "0")).strip().lower()
    if raw not in _BOOLS:
        raise ConfigError(name, f"must be 1 or 0, got {raw!r}")
    return raw in _TRUE


def parse_schedule(raw: str, name: str = "PAGILA_SCHEDULE") -> str | None:
    """A crontab expression (five fields) or a whole number of seconds; empty: no schedule."""
    raw = " ".join(raw.split())
    if not raw:
        return None
    if raw.isdigit():
        if int(raw) < 1:
            raise ConfigError(name, "must be at least 1 second")
        return raw
    fields = raw.split(" ")
    if len(fields) != 5:
        raise ConfigError(name, f"must be a crontab expression (5 fields) or seconds, got {raw!r}")
    from celery.schedules import crontab

    try:
        crontab(*fields).remaining_estimate  # noqa: B018 - parses every field
    except (ValueError, TypeError) as exc:
        raise ConfigError(name, f"is not a valid crontab expression: {exc}") from None
    return raw


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?)b?\s*(?:/\s*s)?\s*$", re.I)
_RATE_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
MIN_RATE = 64_000
"""The lowest cap on a run's source reads (bytes per second)."""


def parse_rate(raw: str, what: str = "--max-rate") -> int:
    """``20MB/s``, ``500kB/s``, ``1.5GiB/s`` or plain bytes per second -> bytes per second.

    Decimal prefixes are powers of 1000, binary ones (``MiB``) of 1024; at least 64 kB/s.
    """
    m = _RATE.match(raw or "")
    if not m:
        raise ConfigError(what, f"must be a rate such as 20MB/s or 500kB/s, got {raw!r}")
    rate = int(float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])
    if rate < MIN_RATE:
        raise ConfigError(what, f"must be at least {MIN_RATE // 1000} kB/s, got {raw!r}")
    return rate


@dataclass(frozen=True)
class Settings:
    """Everything a worker, the submit script or the stack needs; built by :func:`settings`."""

    source_dsn: str = field(repr=False)
    target_dsn: str = field(repr=False)
    redis_url: str = field(repr=False)
    sql_dir: Path | None
    cache_dir: Path
    spool_max_bytes: int
    schemas: tuple[str, ...]
    pg_dump: str | None
    retry_max: int
    retry_delay: float
    lock_ttl: int
    lock_start_grace: int
    max_run_seconds: int
    task_time_limit: int
    visibility_timeout: int
    copy_format: str
    split_rows: int
    split_bytes: int
    statement_timeout_ms: int
    connect_timeout: int
    keepalive_idle: int
    stall_timeout: float
    verify_checksums: bool
    warm_connections: bool
    maintenance_work_mem: str | None
    replace: str = "swap"
    overwrite_target: bool = False
    drop_dependents: bool = False
    switch_lock_ms: int = 200
    copy_start_timeout: int = 600
    schedule: str | None = None
    schedule_job: str = "run"
    given: frozenset[str] = frozenset()
    """The ``PAGILA_*`` variables set (not empty) in the environment read: a submitter's
    ``PAGILA_SCHEMAS`` or ``PAGILA_SQL_DIR`` travels with its run only when it was given."""
    sql_roots: tuple[Path, ...] = ()
    """The folders a run's ``--sql-dir`` may name on this worker (``PAGILA_SQL_ROOTS``)."""
    force_reset: bool = False
    """A submitter's ``PAGILA_FORCE_RESET``: acts as ``--force-reset`` (never a worker's)."""
    resume: bool = True
    """A run that ends without switching keeps its staging copy for the next run to resume."""
    resume_max_age: float = 86400.0
    """A staging copy older than this (seconds) is dropped, not resumed."""
    index_jobs: int = 2
    """At most this many tables' early index and foreign-key builds run at once across all
    workers (``PAGILA_INDEX_JOBS``; 0: none, the callback builds them all after the copies)."""
    changes_in_place: bool = True
    """A refresh whose schemas are unchanged applies the rows that differ to the live copy in
    one transaction instead of copying everything (``PAGILA_CHANGES_IN_PLACE``)."""
    changes_max_share: float = 0.10
    """A table where a larger share of rows differ makes the run a full copy
    (``PAGILA_CHANGES_MAX_SHARE``; see :data:`pagila_tasks.run.changeplan.MAX_SHARE`)."""
    progress_interval: float = 0.1
    """Seconds between a running copy's progress updates in the run record."""
    max_rate: int | None = None
    """A submitter's ``PAGILA_MAX_RATE`` (bytes per second): acts as ``--max-rate``."""
    metrics_file: Path | None = None
    """Where workers rewrite the Prometheus textfile after each run (``PAGILA_METRICS_FILE``)."""

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_dsn", "_url")):
                value = mask_dsn(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def passwords(self) -> tuple[str, ...]:
        """Passwords found in the DSNs, so free text (errors, logs) can be scrubbed of them."""
        found = []
        for dsn in (self.source_dsn, self.target_dsn, self.redis_url):
            parts = urlsplit(dsn)
            for pw in (parts.password, *parse_qs(parts.query).get("password", [])):
                if pw:
                    found.append(pw)
        return tuple(found)

    def scrub(self, text: str) -> str:
        """Mask DSNs and the known passwords in ``text``."""
        return mask_secrets(text, self.passwords)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate settings from ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    sql_dir_raw = _set(env, "PAGILA_SQL_DIR", "") or None
    # Not checked here: a submitter's PAGILA_SQL_DIR names a folder on the workers.
    sql_dir = Path(sql_dir_raw).expanduser() if sql_dir_raw else None
    cache_default = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pagila-tasks"
    cache_dir = Path(env.get("PAGILA_CACHE_DIR") or cache_default)
    copy_format = (env.get("PAGILA_COPY_FORMAT") or "binary").lower()
    if copy_format not in ("binary", "text"):
        raise ConfigError("PAGILA_COPY_FORMAT", f"must be binary or text, got {copy_format!r}")
    mwm = env.get("PAGILA_MAINTENANCE_WORK_MEM", "512MB").strip()
    if mwm and not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB)?", mwm):
        raise ConfigError(
            "PAGILA_MAINTENANCE_WORK_MEM", f"must be a size like 512MB (or empty), got {mwm!r}"
        )
    task_time_limit = _int(env, "PAGILA_TASK_TIME_LIMIT", 3600, minimum=10)
    max_run = _int(env, "PAGILA_MAX_RUN_SECONDS", 4 * 3600, minimum=10)
    visibility = _int(env, "PAGILA_VISIBILITY_TIMEOUT", task_time_limit + 600, minimum=10)
    if visibility <= task_time_limit:
        raise ConfigError(
            "PAGILA_VISIBILITY_TIMEOUT",
            f"({visibility}) must be larger than PAGILA_TASK_TIME_LIMIT ({task_time_limit})",
        )
    return Settings(
        source_dsn=_dsn(env, "PAGILA_SOURCE_DSN", DEFAULT_SOURCE_DSN),
        target_dsn=_dsn(env, "PAGILA_TARGET_DSN", DEFAULT_TARGET_DSN),
        redis_url=_redis_url(env, "PAGILA_REDIS_URL", DEFAULT_REDIS_URL),
        sql_dir=sql_dir,
        cache_dir=cache_dir,
        # 0 would mean "no cap" to SpooledTemporaryFile: the floor keeps the memory promise.
        spool_max_bytes=_int(
            env, "PAGILA_SPOOL_MAX_BYTES", DEFAULT_SPOOL_MAX_BYTES, minimum=MIN_SPOOL_BYTES
        ),
        schemas=parse_schemas(_set(env, "PAGILA_SCHEMAS", "public")),
        pg_dump=env.get("PAGILA_PG_DUMP") or None,
        retry_max=_int(env, "PAGILA_RETRY_MAX", 3, minimum=MIN_RETRIES),
        retry_delay=_float(env, "PAGILA_RETRY_DELAY", 60.0, minimum=0.0),
        lock_ttl=_int(env, "PAGILA_LOCK_TTL", 120, minimum=2),
        lock_start_grace=_int(env, "PAGILA_LOCK_START_GRACE", 600, minimum=0),
        max_run_seconds=max_run,
        task_time_limit=task_time_limit,
        visibility_timeout=visibility,
        copy_format=copy_format,
        split_rows=_int(env, "PAGILA_SPLIT_ROWS", 400_000, minimum=0),
        split_bytes=_int(env, "PAGILA_SPLIT_BYTES", DEFAULT_SPLIT_BYTES, minimum=0),
        statement_timeout_ms=_int(env, "PAGILA_STATEMENT_TIMEOUT_MS", 0, minimum=0),
        connect_timeout=_int(env, "PAGILA_CONNECT_TIMEOUT", 10, minimum=1),
        keepalive_idle=_int(env, "PAGILA_KEEPALIVE_IDLE", 10, minimum=1),
        stall_timeout=_float(env, "PAGILA_STALL_TIMEOUT", 120.0, minimum=1.0),
        verify_checksums=_bool(env, "PAGILA_VERIFY_CHECKSUMS", True),
        warm_connections=_bool(env, "PAGILA_WARM_CONNECTIONS", True),
        maintenance_work_mem=mwm or None,
        replace=_choice(env, "PAGILA_REPLACE", "swap", REPLACE_MODES, empty_ok=False),
        overwrite_target=_bool(env, "PAGILA_OVERWRITE_TARGET", False),
        drop_dependents=_bool(env, "PAGILA_DROP_DEPENDENTS", False),
        switch_lock_ms=_int(env, "PAGILA_SWITCH_LOCK_MS", 200, minimum=0),
        copy_start_timeout=_int(env, "PAGILA_COPY_START_TIMEOUT", 600, minimum=10),
        schedule=parse_schedule(env.get("PAGILA_SCHEDULE") or ""),
        schedule_job=_choice(env, "PAGILA_SCHEDULE_JOB", "run", SCHEDULE_JOBS),
        given=frozenset(k for k, v in env.items() if k.startswith("PAGILA_") and v.strip()),
        sql_roots=parse_sql_roots(env.get("PAGILA_SQL_ROOTS"), sql_dir, cache_dir),
        force_reset=_bool(env, "PAGILA_FORCE_RESET", False),
        progress_interval=_float(env, "PAGILA_PROGRESS_INTERVAL", 0.1, minimum=0.05),
        max_rate=(
            parse_rate(env["PAGILA_MAX_RATE"], "PAGILA_MAX_RATE")
            if (env.get("PAGILA_MAX_RATE") or "").strip()
            else None
        ),
        metrics_file=(
            Path(env["PAGILA_METRICS_FILE"])
            if (env.get("PAGILA_METRICS_FILE") or "").strip()
            else None
        ),
        resume=_bool(env, "PAGILA_RESUME", True),
        resume_max_age=_float(env, "PAGILA_RESUME_MAX_AGE", 86400.0, minimum=0.0),
        index_jobs=_int(env, "PAGILA_INDEX_JOBS", 2, minimum=0),
        changes_in_place=_bool(env, "PAGILA_CHANGES_IN_PLACE", True),
        changes_max_share=_float(env, "PAGILA_CHANGES_MAX_SHARE", 0.10, minimum=0.0),
    )


def parse_sql_roots(raw: str | None, sql_dir: Path | None, cache_dir: Path) -> tuple[Path, ...]:
    """``PAGILA_SQL_ROOTS``: absolute folders separated by ``os.pathsep``; unset, the worker's
    ``PAGILA_SQL_DIR`` (when set) and the download cache."""
    if raw is None:
        return (*((sql_dir,) if sql_dir else ()), cache_dir)
    roots = tuple(Path(p) for p in raw.split(os.pathsep) if p.strip())
    if not roots:
        raise ConfigError("PAGILA_SQL_ROOTS", "is set but empty (unset it to use the default)")
    for root in roots:
        if not root.is_absolute():
            raise ConfigError("PAGILA_SQL_ROOTS", f"must hold absolute folders, got {str(root)!r}")
    return roots


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, built once on first use."""
    return from_env()


STACK_SERVER_MODES = ("auto", "system", "embedded")
"""Where ``pagila-stack`` takes its servers from: the machine's, the ``embedded`` extra's, or
the machine's when present."""


@dataclass(frozen=True)
class StackSettings:
    """What the local stack (``pagila-stack``, not the workers) reads from the environment."""

    state_dir: Path
    servers: str


def stack_settings(env: Mapping[str, str] | None = None) -> StackSettings:
    """``PAGILA_STACK_DIR`` (default ``.stack``) and ``PAGILA_STACK_SERVERS`` (default ``auto``).

    Kept apart from :class:`Settings` because workers never need them, and a bad value here
    must not stop a worker from starting.
    """
    env = os.environ if env is None else env
    servers = (env.get("PAGILA_STACK_SERVERS") or "auto").strip().lower()
    if servers not in STACK_SERVER_MODES:
        raise ConfigError(
            "PAGILA_STACK_SERVERS",
            f"must be one of {', '.join(STACK_SERVER_MODES)}, got {servers!r}",
        )
    return StackSettings(
        state_dir=Path(env.get("PAGILA_STACK_DIR") or ".stack").expanduser(), servers=servers
    )
